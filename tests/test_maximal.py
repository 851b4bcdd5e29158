"""Correlated blocks of 3 and 4 coefficients and per-factor centering, sampled (recovery tier).

Data come from ``bl.simulate`` with known β, σ's and correlations; short seeded fits at the
library's defaults otherwise must put every true value inside its 95% interval, without
divergences, on the compiled kernel for the exact forms.
"""

import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl

FAST = dict(draws=500, tune=500, chains=2, progressbar=False, random_seed=3)


def _inside(table, truth, lower="lower", upper="upper"):
    for name, value in truth.items():
        row = table.loc[name]
        assert row[lower] <= value <= row[upper], (name, value, row[lower], row[upper])


@pytest.fixture(scope="module")
def k3_fit():
    rows = [{"g": f"g{g:02d}", "m": m} for g in range(30) for m in "ABC" for _ in range(3)]
    template = pd.DataFrame(rows).assign(y=np.arange(len(rows), dtype=float))  # replaced by simulate
    params = {"beta": {"Intercept": 10.0, "m[B]": 2.0, "m[C]": -1.0},
              "sd": {"1|g": 2.0, "m[B]|g": 1.0, "m[C]|g": 1.5}, "Residual": 0.5,
              "correlation": {"(1,m[B])|g": 0.5, "(1,m[C])|g": -0.3, "(m[B],m[C])|g": 0.2}}
    data = bl.simulate("y ~ m + (m|g)", params, data=template, random_seed=11)
    return bl.fit("y ~ m + (m|g)", data, **FAST), params


def test_a_3x3_block_samples_on_the_kernel_and_recovers_the_truth(k3_fit):
    fit, params = k3_fit
    assert fit.parameterization == "marginal"
    assert fit.idata.posterior.attrs["log_density"] == "compiled kernel"
    assert "grouped form is cheap (one block of 3 coefficients" in fit.form.reason
    d = fit.diagnostics()
    assert d.divergences == 0 and d.max_rhat < 1.02
    _inside(fit.fixed_effects(), params["beta"])
    _inside(fit.variance_components(), params["sd"] | {"Residual": params["Residual"]}, "sd_lower", "sd_upper")
    corr = fit.random_effect_correlations()
    assert list(corr.index) == ["(1,m[B])|g", "(1,m[C])|g", "(m[B],m[C])|g"]
    _inside(corr, params["correlation"])
    assert "why this form: u integrated out" in fit.summary()


def test_the_kernel_and_the_pymc_graph_give_the_same_posterior_for_k3(k3_fit):
    """The same model sampled on the PyMC graph (sampler="pymc", non-centered u): the
    posterior medians of the σ's agree within 4 Monte Carlo SEs of their difference."""
    fit, _ = k3_fit
    data = fit.design.data
    other = bl.fit("y ~ m + (m|g)", data, sampler="pymc", parameterization="noncentered",
                   **(FAST | {"draws": 1000, "tune": 1000}))
    a, b = fit.idata.posterior["sigma"], other.idata.posterior["sigma"]
    ma, mb = a.mean(("chain", "draw")).values, b.mean(("chain", "draw")).values
    se = np.sqrt(a.var(("chain", "draw")).values / 300 + b.var(("chain", "draw")).values / 300)
    assert np.all(np.abs(ma - mb) < 4 * se), (ma, mb, se)


def test_a_4x4_block_recovers_the_truth():
    rng = np.random.default_rng(5)
    rows = [{"g": f"g{g:02d}", "x": float(rng.normal()), "z": float(rng.normal()), "w": float(rng.normal())}
            for g in range(40) for _ in range(10)]
    template = pd.DataFrame(rows).assign(y=np.arange(len(rows), dtype=float))
    params = {"beta": {"Intercept": 1.0, "x": 0.5, "z": -0.5, "w": 0.2},
              "sd": {"1|g": 1.0, "x|g": 0.8, "z|g": 0.6, "w|g": 0.7}, "Residual": 0.3,
              "correlation": {"(1,x)|g": 0.4, "(1,z)|g": 0.0, "(1,w)|g": -0.2, "(x,z)|g": 0.3,
                              "(x,w)|g": 0.1, "(z,w)|g": -0.4}}
    data = bl.simulate("y ~ x + z + w + (x + z + w|g)", params, data=template, random_seed=2)
    fit = bl.fit("y ~ x + z + w + (x + z + w|g)", data, **FAST)
    assert fit.idata.posterior.attrs["log_density"] == "compiled kernel"
    assert fit.diagnostics().divergences == 0
    _inside(fit.variance_components(), params["sd"] | {"Residual": 0.3}, "sd_lower", "sd_upper")
    _inside(fit.random_effect_correlations(), params["correlation"])


def test_per_factor_centering_samples_both_factors_back():
    """A factor with 50 rows per level and σ = 2 is centered, one with 4 rows per level and
    σ = 0.3 is not ("mixed", with the exact forms ruled out by a small ``dense_q_max``); its
    graph samples both σ's back."""
    import pymc as pm

    from bayes_lmm.graph import build_model
    from bayes_lmm.likelihood import choose
    from bayes_lmm.priors import resolve_priors

    rng = np.random.default_rng(0)
    a, b = np.repeat(np.arange(12), 50), rng.permutation(np.repeat(np.arange(150), 4))
    template = pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b],
                             "y": np.arange(len(a), dtype=float)})
    params = {"beta": {"Intercept": 3.0}, "sd": {"a": 2.0, "b": 0.3}, "Residual": 1.0}
    data = bl.simulate("y ~ 1 + (1|a) + (1|b)", params, data=template, random_seed=4)
    design = bl.design_from_formula("y ~ 1 + (1|a) + (1|b)", data)
    form = choose(design, "auto", dense_q_max=5)
    assert form.parameterization == "mixed" and form.centered == (True, False)
    with build_model(design, resolve_priors({}, design), form=form):
        idata = pm.sample(draws=500, tune=500, chains=2, random_seed=1, progressbar=False, compute_convergence_checks=False)
    assert int(idata.sample_stats["diverging"].sum()) == 0
    sigma = idata.posterior["sigma"].stack(s=("chain", "draw")).values
    lo, hi = np.quantile(sigma, [0.025, 0.975], axis=1)
    assert np.all((lo <= [2.0, 0.3, 1.0]) & ([2.0, 0.3, 1.0] <= hi)), (lo, hi)
