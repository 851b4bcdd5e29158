"""Predictive checks, LOO, simulation and plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, quiet_fit

import bayes_lmm as bl


@pytest.fixture(scope="session")
def dyestuff_no_batch(dyestuff):
    return quiet_fit(bl.fit, "Yield ~ 1", dyestuff, random_seed=21, **FAST)


def test_check_flags_missing_random_factor(dyestuff_fit, dyestuff_no_batch):
    full = dyestuff_fit.check(random_seed=1)
    assert list(full.columns) == ["statistic", "group", "observed", "replicated_mean", "p_value"]
    assert set(full["statistic"]) == {"mean", "sd", "sd_group_means", "max_group_mean",
                                      "min_group_mean", "within_group_sd"}
    p_full = full.set_index(["statistic", "group"]).loc[("sd_group_means", "Batch"), "p_value"]
    assert 0.1 < p_full < 0.9
    reduced = dyestuff_no_batch.check(statistics=["sd_group_means"], groups=["Batch"], random_seed=1)
    p_reduced = reduced["p_value"].iloc[0]
    assert p_reduced < 0.05 or p_reduced > 0.95


def test_check_unknown_names(dyestuff_fit):
    with pytest.raises(bl.SpecificationError, match="unknown statistics"):
        dyestuff_fit.check(statistics=["kurtosis"])
    with pytest.raises(bl.SpecificationError, match="'Plant'"):
        dyestuff_fit.check(groups=["Plant"])


def test_posterior_predictive_stored(dyestuff_fit):
    idata = dyestuff_fit.posterior_predictive(random_seed=3)
    assert idata.posterior_predictive["y"].shape[-1] == 30
    a = dyestuff_fit.posterior_predictive(new_groups=True, random_seed=3).posterior_predictive["y"].values
    b = dyestuff_fit.posterior_predictive(new_groups=True, random_seed=3).posterior_predictive["y"].values
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_loo_prefers_random_slopes(sleepstudy, sleep_fit):
    intercept_only = quiet_fit(bl.fit, "Reaction ~ Days + (1|Subject)", sleepstudy, random_seed=31,
                               **{**FAST, "draws": 1000})
    with pytest.warns(UserWarning, match="Pareto k"):
        sleep_fit.loo()
    table = bl.compare({"slopes": sleep_fit, "intercepts": intercept_only})
    assert table.index[0] == "slopes"
    assert "log_likelihood" in sleep_fit.idata.groups()


def test_prior_predictive_and_sample_prior(seedling_fit, seedling):
    prior = seedling_fit.prior_predictive(draws=50, random_seed=1)
    assert prior.prior_predictive["y"].shape == (1, 50, 10)
    assert "sigma" in prior.prior
    again = bl.sample_prior("weight ~ genotype + (1|pot)", seedling, draws=50, random_seed=1,
                            coding="full", factors=["genotype"])
    np.testing.assert_allclose(again.prior["sigma"].values, prior.prior["sigma"].values)


def test_simulate_and_recover(seedling):
    template = pd.DataFrame({"g": np.repeat(np.arange(30), 8), "x": np.tile(np.arange(8.0), 30)})
    params = {"beta": {"Intercept": 5.0, "x": 0.5}, "sd": {"g": 1.2}, "Residual": 0.6}
    sim = bl.simulate("y ~ x + (1|g)", params, random_seed=9, data=template)
    assert "y" not in template.columns  # the template is untouched
    again = bl.simulate("y ~ x + (1|g)", params, random_seed=9, data=template)
    pd.testing.assert_frame_equal(sim, again)
    fit = quiet_fit(bl.fit, "y ~ x + (1|g)", sim, random_seed=2, **FAST)
    fe, vc = fit.fixed_effects(), fit.variance_components()
    assert fe.loc["Intercept", "lower"] < 5.0 < fe.loc["Intercept", "upper"]
    assert fe.loc["x", "lower"] < 0.5 < fe.loc["x", "upper"]
    assert vc.loc["1|g", "sd_lower"] < 1.2 < vc.loc["1|g", "sd_upper"]
    assert vc.loc["Residual", "sd_lower"] < 0.6 < vc.loc["Residual", "sd_upper"]
    with pytest.raises(bl.SpecificationError, match="missing"):
        bl.simulate("y ~ x + (1|g)", {"beta": {}, "Residual": 1.0}, random_seed=1, data=template)


def test_simulate_from_matrices():
    X = np.ones((12, 1))
    Z = np.kron(np.eye(3), np.ones((4, 1)))
    sim = bl.simulate((X, {"block": Z}), {"beta": [2.0], "sd": {"block": 0.0}, "Residual": 1e-9},
                      random_seed=0)
    np.testing.assert_allclose(sim["y"], 2.0, atol=1e-6)


PLOTS = [
    ("plot_ppc", {"random_seed": 1}), ("plot_variance_components", {"random_seed": 1}),
    ("plot_forest", {}), ("plot_shrinkage", {}), ("plot_var_y", {"rows": list(range(6))}),
    ("plot_diagnostics", {"kind": "trace"}), ("plot_diagnostics", {"kind": "rank"}),
    ("plot_check", {"random_seed": 1}),
]


@pytest.mark.parametrize("name, kwargs", PLOTS, ids=[f"{n}-{list(k.values())}" for n, k in PLOTS])
def test_every_plot_renders(dyestuff_fit, tmp_path, name, kwargs):
    import matplotlib.pyplot as plt

    fig = getattr(dyestuff_fit, name)(**kwargs)
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    plt.close("all")
    assert path.stat().st_size > 5000
