"""Hostile input: random frames either build a design or raise a bayes_lmm error; data unchanged."""

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, quiet_fit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayes_lmm as bl

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([1e-8, 1e8, -1e8, 0.0, 1.0]),
    st.text(max_size=3),
    st.none(),
)


@st.composite
def frames(draw):
    n = draw(st.integers(0, 12))
    cols = draw(st.lists(st.sampled_from(["y", "x", "g", "h"]), min_size=1, max_size=5))
    data = {}
    for i, c in enumerate(cols):
        kind = draw(st.sampled_from(["float", "int", "levels", "mixed", "constant"]))
        if kind == "float":
            col = draw(st.lists(st.floats(-1e8, 1e8), min_size=n, max_size=n))
        elif kind == "int":
            col = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
        elif kind == "levels":
            col = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=n, max_size=n))
        elif kind == "mixed":
            col = draw(st.lists(values, min_size=n, max_size=n))
        else:
            col = [1.0] * n
        data[f"{c}__{i}"] = col
    frame = pd.DataFrame(data)
    # duplicated column names on purpose
    frame.columns = [c.split("__")[0] for c in frame.columns]
    return frame


FORMULAS = ["y ~ x + (1|g)", "y ~ 1 + (1|g) + (1|h)", "y ~ x + (x|g)", "y ~ g * x + (1|h)",
            "y ~ x + (1|g/h)", "log(y) ~ x + (1|g)"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), formula=st.sampled_from(FORMULAS), coding=st.sampled_from(["treatment", "full"]))
def test_formula_design_fits_or_raises_a_clear_error(frame, formula, coding):
    before = frame.copy(deep=True)
    try:
        design = bl.design_from_formula(formula, frame, coding=coding)
    except bl.BayesLMMError as exc:
        assert str(exc)
    else:
        assert np.all(np.isfinite(design.X)) and np.all(np.isfinite(design.y))
        assert design.X.shape[0] == design.n == len(frame)
    pd.testing.assert_frame_equal(frame, before)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, 8), p=st.integers(0, 3), q=st.integers(0, 4),
       scale=st.sampled_from([1e-8, 1.0, 1e8]), poison=st.sampled_from([None, np.nan, np.inf]))
def test_matrix_design_fits_or_raises_a_clear_error(n, p, q, scale, poison):
    rng = np.random.default_rng(n * 100 + p * 10 + q)
    y = rng.normal(size=n) * scale
    X = rng.normal(size=(n, p))
    Z = (rng.integers(0, 2, size=(n, q))).astype(float)
    if poison is not None and n:
        y[0] = poison
    copies = (y.copy(), X.copy(), Z.copy())
    try:
        bl.design_from_matrices(y, X, {"g": Z})
    except bl.BayesLMMError as exc:
        assert str(exc)
    np.testing.assert_array_equal(y, copies[0])
    np.testing.assert_array_equal(X, copies[1])
    np.testing.assert_array_equal(Z, copies[2])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames(), formula=st.sampled_from(FORMULAS))
def test_every_design_that_builds_has_a_finite_log_density(frame, formula):
    """Past the design stage nothing may fail: the model builds and its log-density is finite."""
    try:
        design = bl.design_from_formula(formula, frame)
    except bl.BayesLMMError:
        return
    from bayes_lmm.api import resolve_parameterization
    from bayes_lmm.graph import build_model
    from bayes_lmm.priors import resolve_priors

    priors = resolve_priors({}, design)
    param = resolve_parameterization("auto", design)
    model = build_model(design, priors, parameterization=param)
    logp = model.compile_logp()(model.initial_point())
    assert np.isfinite(logp), (param, design.n)


@pytest.mark.slow
@pytest.mark.parametrize("scale, shift", [(1e-8, 0.0), (1e8, 0.0), (1.0, 1e8)])
def test_extreme_magnitudes_fit_like_the_unscaled_data(dyestuff, dyestuff_fit, scale, shift):
    """Priors scale with the data and the marginal statistics are centred, so y·1e±8 (or
    y + 1e8) gives the same posterior in the data's units."""
    data = dyestuff.assign(Yield=dyestuff["Yield"] * scale + shift)
    before = data.copy()
    fit = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", data, random_seed=11, **FAST)
    pd.testing.assert_frame_equal(data, before)
    ref = dyestuff_fit.variance_components()["sd_median"]
    got = fit.variance_components()["sd_median"] / scale
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=0.25)
    assert fit.diagnostics().divergences <= 5


@pytest.mark.slow
def test_covariate_at_1e8_scale(sleepstudy, sleep_fit):
    data = sleepstudy.assign(Days=sleepstudy["Days"] * 1e8)
    fit = quiet_fit(bl.fit, "Reaction ~ Days + (Days|Subject)", data, random_seed=2, **FAST)
    slope = fit.fixed_effects().loc["Days", "median"] * 1e8
    ref = sleep_fit.fixed_effects().loc["Days", "median"]
    assert slope == pytest.approx(ref, rel=0.1)
