"""Graph structure: variable names, dims, shapes and a finite log-density (no sampling)."""

import numpy as np
import pytest

import bayes_lmm as bl
from bayes_lmm.spec import ModelSpec


def build(design, **kw):
    return bl.build(ModelSpec(**kw), design)


@pytest.mark.parametrize("param", ["noncentered", "centered"])
def test_example2_graph(litter, param):
    design = bl.design_from_formula("response ~ treatment + (1|litter/animal)", litter,
                                    coding="full", factors=["treatment"])
    model, priors, used = build(design, parameterization=param)
    assert used == param
    assert model.named_vars_to_dims["beta"] == ("coef",)
    assert model.named_vars_to_dims["sigma"] == ("component",)
    assert model.named_vars_to_dims["u"] == ("u_index",)
    assert list(model.coords["component"]) == ["1|litter", "1|litter:animal", "Residual"]
    assert len(model.coords["u_index"]) == 4 + 16
    point = model.initial_point()
    assert np.isfinite(model.compile_logp()(point))
    import pymc as pm
    assert pm.draw(model["u"], random_seed=1).shape == (20,)
    free = {v.name for v in model.free_RVs}
    expected_u = {"z_litter", "z_litter_animal"} if param == "noncentered" else {"u_litter", "u_litter_animal"}
    assert expected_u <= free


def test_correlated_graph_has_lkj_and_correlation(sleepstudy):
    design = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleepstudy)
    model, _, _ = build(design, parameterization="noncentered")
    # 2×2: r = 2·Beta(η, η) − 1, which is LKJ(η) exactly (test below)
    assert "corr_Subject_beta" in {v.name for v in model.free_RVs}
    assert list(model.coords["correlation_pair"]) == ["(1,Days)|Subject"]
    assert model.named_vars_to_dims["z_Subject"] == ("Subject__level", "Subject__coef")
    assert np.isfinite(model.compile_logp()(model.initial_point()))


@pytest.mark.parametrize("param", ["noncentered", "centered"])
@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Days||Subject)",
                                     "Reaction ~ Days + (1|Subject) + (0 + Days|Subject)"])
def test_blocks_sharing_a_factor_get_their_own_names(sleepstudy, formula, param):
    """Two blocks of one grouping factor used to collide on ``z_Subject`` / ``Subject__coef``."""
    design = bl.design_from_formula(formula, sleepstudy)
    assert len(design.blocks) == 2 and design.blocks[0].group == design.blocks[1].group == "Subject"
    model, _, _ = build(design, parameterization=param)
    prefix = "z" if param == "noncentered" else "u"
    latent = [v.name for v in model.free_RVs if v.name.startswith(prefix + "_")]
    assert len(latent) == 2 and len(set(latent)) == 2
    for name, blk in zip(latent, design.blocks):
        level, coef = model.named_vars_to_dims[name]
        assert list(model.coords[level]) == list(blk.levels)
        assert list(model.coords[coef]) == list(blk.coef_names)
    assert len(model.coords["u_index"]) == sum(b.n_levels * b.n_coefs for b in design.blocks)
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_inverse_gamma_prior_sits_on_variance(seedling):
    design = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling)
    model, priors, _ = build(design, priors=(("1|pot", bl.InverseGamma(2, 1)),))
    assert "var_1_pot_std" in {v.name for v in model.free_RVs}
    assert priors.table().loc["1|pot", "parameter"] == "σ²"


def test_default_priors_are_scaled_to_the_data(seedling):
    design = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling, factors=["genotype"])
    _, priors, _ = build(design)
    assert design.x_names == ("Intercept", "genotype[2]")
    s_y = np.std(seedling.weight)
    assert priors.beta[1].kwargs()["sigma"] == pytest.approx(2.5 * s_y)
    assert priors.component("1|pot").kwargs()["sigma"] == pytest.approx(s_y)
    assert priors.residual.kwargs()["lam"] == pytest.approx(1 / s_y)
    # scaling y by 1000 scales every prior scale by 1000
    big = seedling.assign(weight=seedling.weight * 1000)
    _, priors_big, _ = build(bl.design_from_formula("weight ~ genotype + (1|pot)", big))
    assert priors_big.component("1|pot").kwargs()["sigma"] == pytest.approx(1000 * s_y)


def test_overrides_by_column_group_and_default_keys(seedling):
    design = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling)
    _, priors, _ = build(design, priors=(("pot", bl.HalfStudentT(3, 2.0)), ("fixed", bl.Normal(0, 7)),
                                         ("Residual", bl.HalfCauchy(1.0))))
    assert priors.component("1|pot") == bl.HalfStudentT(3, 2.0)
    assert all(p == bl.Normal(0, 7) for p in priors.beta)
    assert priors.residual.family == "HalfCauchy"


@pytest.mark.parametrize("eta", [1.0, 2.0, 5.0])
def test_two_by_two_correlation_prior_is_lkj(eta):
    """The density of r = 2b − 1, b ~ Beta(η, η), has the shape of PyMC's LKJCorr(n=2, η)
    (compared up to the normalising constant, which PyMC's LKJCorr gets wrong for n = 2)."""
    import pymc as pm
    import scipy.stats as st

    def beta_density(r):
        return st.beta(eta, eta).logpdf((r + 1) / 2) - np.log(2)

    def lkj(r):
        return float(pm.logp(pm.LKJCorr.dist(n=2, eta=eta), np.array([r])).eval())

    for r in (-0.9, -0.3, 0.5, 0.95):
        assert lkj(r) - lkj(0.0) == pytest.approx(beta_density(r) - beta_density(0.0), abs=1e-5)
    # and the Beta form is a proper density on (-1, 1)
    grid = np.linspace(-1, 1, 20001)[1:-1]
    assert np.trapezoid(np.exp(beta_density(grid)), grid) == pytest.approx(1.0, abs=2e-3)


def test_three_correlated_coefficients_use_lkj_through_partial_correlations(sleepstudy):
    """k = 3: the correlation is three scalar Betas (the CPCs of :mod:`bayes_lmm.lkj`), and the
    traced correlations are the upper triangle of LL' built from them."""
    from bayes_lmm import lkj

    data = sleepstudy.assign(Days2=sleepstudy["Days"] ** 2)
    design = bl.design_from_formula("Reaction ~ Days + (Days + Days2|Subject)", data)
    model, _, _ = build(design, parameterization="noncentered")
    cpcs = [f"corr_Subject_cpc_{i}_{j}" for i, j in lkj.cpc_pairs(3)]
    assert set(cpcs) <= {v.name for v in model.free_RVs}
    assert len(model.coords["correlation_pair"]) == 3
    point = model.initial_point()
    rng = np.random.default_rng(0)
    for name in cpcs:
        point[f"{name}_logodds__"] = rng.normal(0.0, 1.5)
    corr = model.compile_fn(model.replace_rvs_by_values([model["correlation"]])[0], inputs=model.value_vars,
                            on_unused_input="ignore")(point)
    z = np.array([2.0 / (1.0 + np.exp(-point[f"{name}_logodds__"])) - 1.0 for name in cpcs])
    L = lkj.cholesky_from_cpc(z, 3)
    np.testing.assert_allclose(corr, (L @ L.T)[np.triu_indices(3, 1)], rtol=1e-12)
    assert np.isfinite(model.compile_logp()(point))
