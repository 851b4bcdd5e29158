"""The blocked Gibbs sampler, sampled (recovery and reference tiers): its posterior is the
exact form's (NUTS on the compiled kernel) where both apply, it recovers known parameters and
contains the REML estimates on a crossed design with many levels, its draws depend on the seed
only (not on threads), and its fits read back, predict and compare like any other."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl
from bayes_lmm.gibbs_sampling import gibbs_model, sample_gibbs
from bayes_lmm.priors import resolve_priors

FAST = dict(draws=500, tune=300, chains=2, progressbar=False)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _crossed(seed, n, levels_a, levels_b, sd_a=0.6, sd_b=0.9, sd_e=1.0):
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"a": rng.integers(0, levels_a, n), "b": rng.integers(0, levels_b, n),
                         "x": rng.normal(size=n)})
    data["y"] = (5.0 + 0.5 * data["x"] + rng.normal(0, sd_a, levels_a)[data["a"]]
                 + rng.normal(0, sd_b, levels_b)[data["b"]] + rng.normal(0, sd_e, n))
    return data.astype({"a": str, "b": str})


@pytest.fixture(scope="module")
def small_crossed():
    return _crossed(1, 400, 25, 15)


@pytest.fixture(scope="module")
def wide():
    """400 × 250 crossed levels, 6,000 rows: 251 coefficients left after solving out 'a'."""
    return _crossed(2, 6000, 400, 250)


@pytest.fixture(scope="module")
def wide_fit(wide):
    return _quiet(bl.fit, "y ~ x + (1|a) + (1|b)", wide, random_seed=5, **FAST)


def test_gibbs_and_the_exact_form_give_the_same_posterior(small_crossed):
    """Means of β and the σ's from the Gibbs sampler and from NUTS on the compiled kernel
    (u integrated out) agree within 4 Monte Carlo standard errors of their difference."""
    formula = "y ~ x + (1|a) + (1|b)"
    gibbs = _quiet(bl.fit, formula, small_crossed, sampler="gibbs", random_seed=1, **(FAST | {"draws": 1500}))
    exact = _quiet(bl.fit, formula, small_crossed, random_seed=2, **(FAST | {"draws": 1500}))
    assert gibbs.sampler == "gibbs" and exact.parameterization == "marginal"
    for var in ("beta", "sigma"):
        a, b = gibbs.idata.posterior[var], exact.idata.posterior[var]
        ess_a = np.array([float(x) for x in az.ess(gibbs.idata.posterior[[var]])[var].values.ravel()])
        ess_b = np.array([float(x) for x in az.ess(exact.idata.posterior[[var]])[var].values.ravel()])
        se = np.sqrt(a.var(("chain", "draw")).values / ess_a + b.var(("chain", "draw")).values / ess_b)
        gap = np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values)
        assert np.all(gap < 4 * se), (var, gap, se)


def test_auto_samples_a_wide_crossed_design_by_gibbs_and_recovers_the_truth(wide_fit):
    fit = wide_fit
    assert fit.sampler == "gibbs" and fit.parameterization == "centered"
    assert fit.idata.posterior.attrs["log_density"] == "Gibbs conditionals of the PyMC graph"
    d = fit.diagnostics()
    assert d.max_rhat < 1.01 and d.min_ess_bulk > 200 and d.divergences == 0
    vc = fit.variance_components()
    for name, value in {"1|a": 0.6, "1|b": 0.9, "Residual": 1.0}.items():
        assert vc.loc[name, "sd_lower"] <= value <= vc.loc[name, "sd_upper"], name
    fe = fit.fixed_effects()
    assert fe.loc["x", "lower"] <= 0.5 <= fe.loc["x", "upper"]
    text = fit.summary()
    assert "why this form: no exact form is cheap for NUTS" in text and "blocked Gibbs" in text
    assert "no divergent transitions to count" in text and "target_accept" not in text
    assert fit.idata.posterior["u"].shape[-1] == 650
    assert fit.idata.posterior["u_a"].dims[2:] == ("a__level", "a__coef")


def test_the_reml_estimates_lie_inside_the_gibbs_intervals(wide, wide_fit):
    reml = bl.reml("y ~ x + (1|a) + (1|b)", wide)
    vc, rv = wide_fit.variance_components(), reml.variance_components
    for name in ("1|a", "1|b", "Residual"):
        assert vc.loc[name, "sd_lower"] <= rv.loc[name, "sd"] <= vc.loc[name, "sd_upper"], name
    fe = wide_fit.fixed_effects()
    for name in ("Intercept", "x"):
        assert fe.loc[name, "lower"] <= reml.fixed_effects.loc[name, "estimate"] <= fe.loc[name, "upper"]


def test_gibbs_draws_depend_on_the_seed_not_on_the_threads(small_crossed):
    design = bl.design_from_formula("y ~ x + (1|a) + (1|b)", small_crossed)
    model = gibbs_model(design, resolve_priors({}, design))
    one = sample_gibbs(model, draws=30, tune=10, chains=3, random_seed=9, cores=1)
    two = sample_gibbs(model, draws=30, tune=10, chains=3, random_seed=9, cores=2)
    other = sample_gibbs(model, draws=30, tune=10, chains=3, random_seed=10, cores=2)
    for var in ("beta", "sigma", "u"):
        assert np.array_equal(one.posterior[var].values, two.posterior[var].values)
    assert not np.array_equal(one.posterior["sigma"].values, other.posterior["sigma"].values)
    # chains start apart (R-hat can see a chain that has not forgotten its start)
    first = one.posterior["sigma"].values[:, 0, -1]
    assert len(np.unique(first)) == 3


def test_a_gibbs_fit_reads_back_predicts_and_compares(tmp_path, wide_fit, wide):
    path = tmp_path / "gibbs.nc"
    wide_fit.save(path)
    back = bl.load(path)
    assert back.sampler == "gibbs" and back.form.reason == wide_fit.form.reason
    assert np.array_equal(back.idata.posterior["sigma"].values, wide_fit.idata.posterior["sigma"].values)
    pred = wide_fit.predict(wide.head(5), kind="mean")
    assert len(pred) == 5 and np.all(np.isfinite(pred["mean"]))
    loo = _quiet(wide_fit.loo)
    assert np.isfinite(loo.elpd_loo)
    # the Gibbs sampler's own record: log joint density and the sampler in the trace's attrs
    assert "lp" in wide_fit.idata.sample_stats and "diverging" not in wide_fit.idata.sample_stats


def test_a_singular_location_step_is_a_clear_error(small_crossed, monkeypatch):
    """A chain that meets a singular system stops every chain and names the σ's it was at."""
    import bayes_lmm.gibbs_sampling as gs

    design = bl.design_from_formula("y ~ x + (1|a) + (1|b)", small_crossed)
    model = gibbs_model(design, resolve_priors({}, design))
    calls = []

    def singular(*args, **kwargs):
        calls.append(1)
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(gs, "sweep", singular)
    with pytest.raises(bl.SpecificationError, match=r"singular system at 1\|a = .*, Residual = .*tighter prior"):
        sample_gibbs(model, draws=50, tune=50, chains=4, random_seed=1, cores=2)
    assert len(calls) <= 4
