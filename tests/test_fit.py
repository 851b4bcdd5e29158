"""What a Fit offers, on the shared fitted models."""

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import FAST, notes_example1_matrices, quiet_fit

import bayes_lmm as bl


def test_idata_has_named_dims(seedling_fit):
    post = seedling_fit.idata.posterior
    assert list(post["beta"].coords["coef"].values) == ["Intercept", "genotype[1]", "genotype[2]"]
    assert list(post["sigma"].coords["component"].values) == ["1|pot", "Residual"]
    assert list(post["u"].coords["u_index"].values) == ["pot[11]", "pot[12]", "pot[21]", "pot[22]"]
    assert {"posterior", "sample_stats", "observed_data"} <= set(seedling_fit.idata.groups())
    np.testing.assert_allclose(seedling_fit.idata.observed_data["y"].values, seedling_fit.design.y)


def test_fixed_effects_table(seedling_fit):
    fe = seedling_fit.fixed_effects(prob=0.9)
    assert list(fe.index) == ["Intercept", "genotype[1]", "genotype[2]"]
    for col in ("mean", "sd", "median", "lower", "upper", "ess_bulk", "r_hat"):
        assert col in fe.columns
    assert (fe["lower"] < fe["median"]).all() and (fe["median"] < fe["upper"]).all()
    assert not fe["estimable"].any()  # full coding: no single coefficient is estimable


def test_notes_estimable_functions_as_contrasts(seedling_fit):
    table = seedling_fit.contrast({"mu+g1": "Intercept + genotype[1]", "mu+g2": "Intercept + genotype[2]",
                                   "g1-g2": "genotype[1] - genotype[2]"}, prob=0.95)
    assert list(table.index) == ["mu+g1", "mu+g2", "g1-g2"]
    for col in ("mean", "median", "sd", "lower", "upper", "prob_positive"):
        assert col in table.columns
    # cell means sit near the observed genotype means
    obs = seedling_fit.design.y
    assert table.loc["mu+g1", "lower"] < obs[:5].mean() < table.loc["mu+g1", "upper"]
    assert table.loc["mu+g2", "lower"] < obs[5:].mean() < table.loc["mu+g2", "upper"]
    # the contrast is the difference of the draws
    beta = seedling_fit.draws("beta")
    assert table.loc["g1-g2", "mean"] == pytest.approx((beta[:, 1] - beta[:, 2]).mean())
    with pytest.raises(bl.EstimabilityError, match="genotype\\[1\\]"):
        seedling_fit.contrast("genotype[1]")


def test_contrasts_stored_for_arviz(seedling_fit):
    seedling_fit.contrast({"d": [0, 1, -1]}, store=True)
    seedling_fit.contrast(np.array([[1.0, 1, 0]]), store=True)
    post = seedling_fit.idata.posterior
    assert "contrasts" in post and "d" in list(post["contrasts"].coords["contrast"].values)
    summary = az.summary(seedling_fit.idata, var_names=["contrasts"])
    assert len(summary) >= 2


def test_hdi_and_rope(seedling_fit):
    eti = seedling_fit.contrast("genotype[1] - genotype[2]", prob=0.5)
    hdi = seedling_fit.contrast("genotype[1] - genotype[2]", prob=0.5, interval="hdi", rope=(-0.5, 0.5))
    assert (hdi["upper"] - hdi["lower"]).iloc[0] <= (eti["upper"] - eti["lower"]).iloc[0] + 1e-9
    assert 0 <= hdi["prob_in_rope"].iloc[0] <= 1


def test_pairwise_and_marginal_means(litter_fit):
    mm = litter_fit.marginal_means("treatment")
    assert list(mm.index) == ["1", "2", "3", "4"]
    pw = litter_fit.contrast(pairwise="treatment")
    assert len(pw) == 6 and pw.index[0] == "treatment[1] - treatment[2]"
    beta = litter_fit.draws("beta")
    assert pw["mean"].iloc[0] == pytest.approx((beta[:, 1] - beta[:, 2]).mean())


def test_variance_components_table(litter_fit):
    vc = litter_fit.variance_components(prob=0.9)
    assert list(vc.index) == ["1|litter", "1|litter:animal", "Residual"]
    for col in ("sd_median", "sd_lower", "sd_upper", "variance_median", "variance_lower", "variance_upper"):
        assert col in vc.columns
    np.testing.assert_allclose(vc["variance_median"], np.median(litter_fit.draws("sigma") ** 2, axis=0))
    assert vc["fraction_mean"].sum() == pytest.approx(1.0)


def test_icc_of_nested_design_matches_notes_blocks(litter_fit):
    icc = litter_fit.icc()
    s2 = litter_fit.draws("sigma") ** 2
    total = s2.sum(axis=1)
    assert icc.loc["1|litter", "mean"] == pytest.approx((s2[:, 0] / total).mean())
    assert icc.loc["1|litter:animal", "mean"] == pytest.approx(((s2[:, 0] + s2[:, 1]) / total).mean())
    ratio = litter_fit.variance_ratio()
    assert ratio.loc["1|litter", "mean"] == pytest.approx((s2[:, 0] / s2[:, 2]).mean())


def test_var_y_matches_design_formula(litter_fit):
    vy = litter_fit.var_y(rows=range(4))
    s2 = litter_fit.draws("sigma") ** 2
    assert vy.mean.iloc[0, 0] == pytest.approx(s2.sum(axis=1).mean())
    assert vy.mean.iloc[0, 1] == pytest.approx((s2[:, 0] + s2[:, 1]).mean())
    assert vy.mean.iloc[0, 2] == pytest.approx(s2[:, 0].mean())
    assert (vy.lower.to_numpy() <= vy.upper.to_numpy()).all()


def test_diagnostics_and_summary(seedling_fit):
    d = seedling_fit.diagnostics()
    assert d.divergences >= 0 and d.draws == 1000 and d.chains == 2
    text = seedling_fit.summary()
    assert "weight ~ genotype + (1|pot)" in text and "1|pot" in text and "divergences" in text
    assert "priors" not in seedling_fit.priors.columns and "1|pot" in seedling_fit.priors.index


def test_random_effect_correlation_reported(sleep_fit):
    corr = sleep_fit.random_effect_correlations()
    assert list(corr.index) == ["(1,Days)|Subject"]
    assert -1 <= corr["lower"].iloc[0] < corr["upper"].iloc[0] <= 1


def test_same_seed_same_posterior_pymc(seedling):
    X, Z = notes_example1_matrices()
    kw = dict(draws=100, tune=100, chains=2, random_seed=5, progressbar=False, sampler="pymc")
    a = quiet_fit(bl.fit_matrices, seedling.weight, X, {"pot": Z}, **kw)
    b = quiet_fit(bl.fit_matrices, seedling.weight, X, {"pot": Z}, **kw)
    np.testing.assert_array_equal(a.draws("beta"), b.draws("beta"))
    # the formula path builds the same X and Z, so the same seed gives the same posterior
    c = quiet_fit(bl.fit, "weight ~ genotype + (1|pot)", seedling, coding="full", factors=["genotype"], **kw)
    np.testing.assert_allclose(a.draws("sigma"), c.draws("sigma"))


def test_same_seed_same_posterior_nutpie(dyestuff):
    """nutpie seeds each chain from the seed, and u after a marginal fit has its own stream."""
    kw = dict(FAST, chains=4, random_seed=7)
    a = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **kw)
    b = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **kw)
    np.testing.assert_array_equal(a.draws("sigma"), b.draws("sigma"))
    np.testing.assert_array_equal(a.draws("u"), b.draws("u"))
    c = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **dict(kw, random_seed=8))
    assert not np.array_equal(a.draws("sigma"), c.draws("sigma"))


def test_divergences_are_reported_not_hidden(seedling):
    X, Z = notes_example1_matrices()
    with pytest.warns(UserWarning, match="divergence"):
        bl.fit_matrices(seedling.weight, X, {"pot": Z}, parameterization="centered",
                        target_accept=0.6, draws=300, tune=100, chains=2, random_seed=2,
                        progressbar=False, sampler="nutpie",
                        priors={"pot": bl.HalfCauchy(5.0)})


def test_predict(sleep_fit, sleepstudy):
    seen = sleepstudy.iloc[[0, 9]]
    fitted = sleep_fit.predict(seen)
    u = sleep_fit.random_effects()
    beta = sleep_fit.fixed_effects()["mean"]
    expect = beta["Intercept"] + u.loc["Subject[308, 1]", "mean"] + 9 * (beta["Days"] + u.loc["Subject[308, Days]", "mean"])
    assert fitted["mean"].iloc[1] == pytest.approx(expect, rel=1e-3)
    new = pd.DataFrame({"Days": [0, 9], "Subject": ["999", "999"]})
    a = sleep_fit.predict(new, random_seed=3)
    b = sleep_fit.predict(new, random_seed=3)
    pd.testing.assert_frame_equal(a, b)
    width_new = (a["upper"] - a["lower"]).to_numpy()
    width_seen = (fitted["upper"] - fitted["lower"]).to_numpy()
    assert (width_new > width_seen).all()
    zero = sleep_fit.predict(new, new_groups="zero")
    assert zero["mean"].iloc[0] == pytest.approx(beta["Intercept"], rel=1e-6)
    resp = sleep_fit.predict(seen, kind="response", random_seed=1)
    assert (resp["upper"] - resp["lower"] > width_seen).all()
    with pytest.raises(bl.DataError, match="999"):
        sleep_fit.predict(new, new_groups="error")


def test_example2_formula_and_matrix_paths_same_posterior(litter):
    from conftest import notes_example2_matrices
    X, Z_l, Z_a = notes_example2_matrices()
    kw = dict(draws=100, tune=100, chains=2, random_seed=8, progressbar=False, sampler="pymc")
    a = quiet_fit(bl.fit_matrices, litter.response, X, {"litter": Z_l, "animal": Z_a}, **kw)
    b = quiet_fit(bl.fit, "response ~ treatment + (1|litter/animal)", litter, coding="full",
                  factors=["treatment"], **kw)
    np.testing.assert_allclose(a.draws("sigma"), b.draws("sigma"))
    np.testing.assert_allclose(a.draws("u"), b.draws("u"))


def test_save_and_load_round_trip(sleep_fit, tmp_path, sleepstudy):
    path = sleep_fit.save(tmp_path / "sleep.nc")
    back = bl.load(path)
    pd.testing.assert_frame_equal(back.fixed_effects(), sleep_fit.fixed_effects())
    pd.testing.assert_frame_equal(back.variance_components(), sleep_fit.variance_components())
    new = pd.DataFrame({"Days": [3], "Subject": ["308"]})
    pd.testing.assert_frame_equal(back.predict(new, random_seed=1), sleep_fit.predict(new, random_seed=1))
    assert back.contrast("Days")["mean"].iloc[0] == pytest.approx(sleep_fit.contrast("Days")["mean"].iloc[0])


def test_save_and_load_matrix_fit(seedling, tmp_path):
    X, Z = notes_example1_matrices()
    fit = quiet_fit(bl.fit_matrices, seedling.weight, X, {"pot": Z}, x_names=["mu", "g1", "g2"],
                    random_seed=3, **FAST)
    back = bl.load(fit.save(tmp_path / "m.nc"))
    np.testing.assert_array_equal(back.design.Z, Z)
    pd.testing.assert_frame_equal(back.contrast({"d": [0, 1, -1]}), fit.contrast({"d": [0, 1, -1]}))


def test_load_rejects_foreign_and_corrupt_files(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not a netcdf file at all")
    with pytest.raises(bl.FileFormatError):
        bl.load(bad)
    foreign = tmp_path / "foreign.nc"
    az.from_dict(posterior={"x": np.zeros((1, 5))}).to_netcdf(str(foreign))
    with pytest.raises(bl.FileFormatError, match="not a bayes_lmm fit"):
        bl.load(foreign)
    with pytest.raises(bl.FileFormatError, match="no file"):
        bl.load(tmp_path / "missing.nc")


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_sampling_runs_with_one_blas_thread(sampler, monkeypatch):
    """Parallel chains each call LAPACK inside the gradient (crossed and dense forms): with
    BLAS's own threads on top, a 144-row crossed fit took 229 s with PyMC instead of 11.5 s."""
    import nutpie
    import pymc as pm
    from threadpoolctl import threadpool_info

    from bayes_lmm import sampling

    seen = []

    def record(*args, **kwargs):
        seen.extend(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")
        return "sampled"

    monkeypatch.setattr(nutpie, "sample", record)
    monkeypatch.setattr(pm, "sample", record)
    monkeypatch.setattr(sampling, "_compiled_nutpie", lambda model, key, note=None: None)
    with pm.Model() as model:
        pm.Normal("x")
    out = sampling.sample(model, sampler=sampler, draws=10, tune=10, chains=2, random_seed=1,
                          target_accept=0.8, progressbar=False)
    assert out == "sampled" and seen and set(seen) == {1}


def test_numpyro_sampler_agrees_with_nutpie_and_is_seeded(dyestuff, dyestuff_fit):
    """sampler="numpyro": NumPyro's NUTS through PyMC's JAX backend, on the marginal graph."""
    kw = dict(draws=500, tune=500, chains=2, random_seed=3, progressbar=False, sampler="numpyro")
    a = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **kw)
    b = quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, **kw)
    assert a.sampler == "numpyro" and a.parameterization == "marginal"
    assert {"beta", "sigma", "u"} <= set(a.idata.posterior.data_vars)
    assert a.diagnostics().divergences == 0
    np.testing.assert_array_equal(a.draws("sigma"), b.draws("sigma"))
    np.testing.assert_array_equal(a.draws("u"), b.draws("u"))
    for name in ("beta", "sigma"):
        x, y = a.draws(name), dyestuff_fit.draws(name)
        se = np.sqrt(x.var(axis=0) / 200 + y.var(axis=0) / 200)  # conservative ESS of 200
        assert np.all(np.abs(np.median(x, axis=0) - np.median(y, axis=0)) < 4 * se), name


def test_numpyro_without_jax_is_a_clear_error(dyestuff, monkeypatch):
    from bayes_lmm import sampling

    monkeypatch.setattr(sampling, "numpyro_available", lambda: False)
    with pytest.raises(bl.SpecificationError, match="pip install jax numpyro"):
        bl.fit("Yield ~ 1 + (1|Batch)", dyestuff, sampler="numpyro", draws=10, tune=10)
