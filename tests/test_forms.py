"""Each likelihood form on its own (no sampling): its log-density with β sampled equals the
dense log N(y | Xβ, ZGZ' + σ²I), with β integrated out log N(y | Xμ, V + X S₀ X'), and its
exact draws of β and u have the dense conditional moments; the registry picks forms by rule."""

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats as st

import bayes_lmm as bl
from bayes_lmm.likelihood import choose, exact_form
from bayes_lmm.likelihood.crossed import CrossedForm
from bayes_lmm.likelihood.dense import DenseForm
from bayes_lmm.likelihood.grouped import GroupedForm
from bayes_lmm.likelihood.latent import Centered, NonCentered, PerFactor, information_ratio
from bayes_lmm.likelihood.nested import NestedForm
from bayes_lmm.likelihood.registry import EXACT_FORMS, exact_form_class


@pytest.fixture(scope="module")
def unbalanced():
    """Unbalanced nesting a/b, a crossed factor d, and covariates x, z."""
    rng = np.random.default_rng(8)
    rows = [(a, b) for a in range(4) for b in range(rng.integers(1, 4)) for _ in range(rng.integers(1, 5))]
    data = pd.DataFrame(rows, columns=["a", "b"])
    data["d"] = rng.integers(0, 3, len(data))
    data["x"] = rng.normal(size=len(data))
    data["z"] = rng.normal(size=len(data))
    data["y"] = 3.0 + data["a"] * 0.5 + data["x"] + rng.normal(size=len(data))
    return data


# (formula, the form the registry picks, gram_numbers_max)
CASES = [
    ("y ~ x + (1|a:b)", GroupedForm, 4_000_000),  # k = 1, sums by row count
    ("y ~ x + (1|a:b)", GroupedForm, 0),  # k = 1, sums over levels
    ("y ~ x + (x|a)", GroupedForm, 4_000_000),  # k = 2, written out
    ("y ~ x + (x + z|a:b)", GroupedForm, 4_000_000),  # k = 3, batched Cholesky
    ("y ~ x + (1|a/b)", NestedForm, 4_000_000),
    ("y ~ x + (1|a:b) + (1|d)", CrossedForm, 4_000_000),
    ("y ~ x + (1|a:b) + (x|d)", CrossedForm, 0),  # per-level sums, correlated rest
    ("y ~ z + (x|a) + (x||d)", CrossedForm, 4_000_000),  # (0 + x|d) has per-row values
    ("y ~ x + (x|a) + (x|d)", DenseForm, 4_000_000),
    ("y ~ x + (x + z + x:z|a)", GroupedForm, 4_000_000),  # k = 4
    ("y ~ x + (x + z|a) + (x|d)", DenseForm, 4_000_000),  # crossed 3×3 and 2×2 blocks
]


def _parameters(design, rng):
    """Random SDs, correlations (−0.4) and the matching Λ_b, G and V = ZGZ' + σ_e² I."""
    sds, corrs, lambdas, G_blocks = [], [], [], []
    for blk in design.blocks:
        k = blk.n_coefs
        sd = rng.uniform(0.4, 1.2, k)
        R = np.eye(k)
        if blk.correlated:
            R = np.full((k, k), -0.4) + 1.4 * np.eye(k) if k == 2 else 0.3 * np.ones((k, k)) + 0.7 * np.eye(k)
            corrs.extend(R[np.triu_indices(k, 1)])
        lam = sd[:, None] * np.linalg.cholesky(R)
        sds.extend(sd)
        lambdas.append(lam)
        G_blocks.append(np.kron(np.eye(blk.n_levels), lam @ lam.T))
    sigma_e = 0.7
    q = sum(g.shape[0] for g in G_blocks)
    G, at = np.zeros((q, q)), 0
    for g in G_blocks:
        G[at:at + len(g), at:at + len(g)] = g
        at += len(g)
    Z = design.Z
    V = Z @ G @ Z.T + sigma_e**2 * np.eye(design.n)
    sigma = np.array(sds + [sigma_e])
    corr = np.array(corrs) if corrs else None
    return lambdas, sigma_e, sigma, corr, G, V


@pytest.mark.parametrize("formula, cls, gram_max", CASES)
def test_form_log_densities_equal_the_dense_gaussian(unbalanced, formula, cls, gram_max):
    design = bl.design_from_formula(formula, unbalanced)
    assert exact_form_class(design) is cls and cls.applies(design)
    form = cls.from_design(design, gram_numbers_max=gram_max)
    rng = np.random.default_rng(1)
    lambdas, sigma_e, _, _, _, V = _parameters(design, rng)
    X, y = design.X, design.y
    beta = rng.normal(size=design.p)
    mu, s = rng.normal(size=design.p), rng.uniform(0.5, 3.0, design.p)
    with pm.Model():
        t = form.tensors()
    lam_t = [pt.constant(lam) for lam in lambdas]
    sampled = form.loglik(t, pt.constant(beta), lam_t, pt.constant(sigma_e))
    integrated = form.loglik_beta_integrated(t, pt.constant(mu), pt.constant(s), lam_t, pt.constant(sigma_e))
    sampled, value, mean, chol = pytensor.function([], [sampled, *integrated])()  # one compilation
    assert float(sampled) == pytest.approx(st.multivariate_normal(X @ beta, V).logpdf(y), rel=1e-9, abs=1e-9)
    expected = st.multivariate_normal(X @ mu, V + (X * s**2) @ X.T).logpdf(y)
    assert float(value) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # β | y, θ: precision X'V⁻¹X + S₀⁻¹; the form carries its mean and the factor of its precision
    cov = np.linalg.inv(X.T @ np.linalg.solve(V, X) + np.diag(s**-2.0))
    np.testing.assert_allclose(mean, cov @ (X.T @ np.linalg.solve(V, y) + mu / s**2), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(s[:, None] * np.linalg.inv(chol @ chol.T) * s[None, :], cov, rtol=1e-7, atol=1e-12)
    draws = form.draw_beta(np.tile(mean, (4000, 1)), np.tile(chol, (4000, 1, 1)), s, np.random.default_rng(2))
    np.testing.assert_allclose(np.cov(draws.T), cov, rtol=0.1, atol=0.02 * np.abs(cov).max())


@pytest.mark.parametrize("formula, cls, gram_max", CASES + [("y ~ x + (1|a/b)", DenseForm, 0)])
def test_form_u_draws_have_the_dense_conditional_moments(unbalanced, formula, cls, gram_max):
    """u | y, β, θ ~ N(GZ'V⁻¹(y − Xβ), G − GZ'V⁻¹ZG); the dense form applies to any design."""
    design = bl.design_from_formula(formula, unbalanced)
    form = cls.from_design(design, gram_numbers_max=gram_max)
    rng = np.random.default_rng(3)
    _, _, sigma, corr, G, V = _parameters(design, rng)
    beta = rng.normal(size=design.p)
    Z, r = design.Z, design.y - design.X @ beta
    mean = G @ Z.T @ np.linalg.solve(V, r)
    cov = G - G @ Z.T @ np.linalg.solve(V, Z @ G)
    S = 4000
    u = form.draw_u(np.tile(beta, (S, 1)), np.tile(sigma, (S, 1)), None if corr is None else np.tile(corr, (S, 1)),
                    np.random.default_rng(4))
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(u.mean(axis=0) - mean) < 5 * se + 1e-12)
    np.testing.assert_allclose(np.cov(u.T), cov, atol=0.08 * np.abs(cov).max())


def test_registry_lists_each_form_once_and_dense_last():
    assert EXACT_FORMS[-1] is DenseForm and len(set(EXACT_FORMS)) == len(EXACT_FORMS)
    assert {cls.name for cls in EXACT_FORMS} == {"grouped", "nested", "crossed", "dense"}


def test_choose_takes_its_thresholds_as_arguments(unbalanced):
    """No module threshold to patch: ``dense_q_max`` and ``gram_numbers_max`` are arguments."""
    crossed = bl.design_from_formula("y ~ x + (1|a:b) + (x|d)", unbalanced)  # 6 coefficients left
    assert isinstance(choose(crossed, "auto"), CrossedForm)
    assert isinstance(choose(crossed, "auto", dense_q_max=5), PerFactor)
    assert isinstance(choose(crossed, "marginal", dense_q_max=5), CrossedForm)  # asked for: always exact
    assert choose(crossed, "marginal", gram_numbers_max=0).stats.groups is None
    assert choose(crossed, "marginal").stats.groups is not None
    assert isinstance(choose(crossed, "centered"), Centered)
    wide = bl.design_from_formula("y ~ x + (x + z + a + d|b)", unbalanced)  # k = 5: latent under auto
    latent = choose(wide, "auto")  # k = 5 coefficients: never centered by auto
    assert isinstance(latent, PerFactor) and latent.centered == (False,) and latent.parameterization == "noncentered"
    assert isinstance(choose(wide, "marginal"), GroupedForm)
    fixed_only = bl.design_from_formula("y ~ x", unbalanced)
    assert isinstance(choose(fixed_only, "marginal"), NonCentered)
    with pytest.raises(ValueError, match="unknown parameterization"):
        choose(crossed, "sideways")


def test_signature_ignores_dynamic_level_counts_only(unbalanced):
    """Levels of a single block (or of the factor solved out) are data shapes; other levels,
    the form and its structure are part of the compile-cache signature."""
    more = unbalanced.assign(b=unbalanced["b"] + 10 * (unbalanced.index % 2))
    one, two = (exact_form(bl.design_from_formula("y ~ x + (1|a:b)", d)) for d in (unbalanced, more))
    assert one.design.blocks[0].n_levels != two.design.blocks[0].n_levels
    assert one.signature() == two.signature()
    nested = exact_form(bl.design_from_formula("y ~ x + (1|a/b)", unbalanced))
    nested_more = exact_form(bl.design_from_formula("y ~ x + (1|a/b)", more))
    assert nested.signature() != nested_more.signature()
    design = bl.design_from_formula("y ~ x + (1|a) + (1|d)", unbalanced)
    assert choose(design, "marginal").signature() != choose(design, "marginal", gram_numbers_max=0).signature()
    assert NonCentered(design).signature() != Centered(design).signature()


def test_summary_words_come_from_the_form(unbalanced):
    words = {formula: exact_form(bl.design_from_formula(formula, unbalanced)).describe()
             for formula, _, _ in CASES}
    assert words["y ~ x + (1|a:b)"] == "per-level closed form"
    assert words["y ~ x + (1|a/b)"] == "nested closed form"
    assert words["y ~ x + (1|a:b) + (1|d)"] == "'a:b' solved out, Cholesky of the rest"
    assert words["y ~ x + (x|a) + (x|d)"] == "q×q Cholesky"


def test_the_compile_cache_key_is_the_forms_signature(unbalanced):
    """nutpie's cache key (graph.model_signature) takes the design's part from the form: two
    designs whose form signatures agree share a key, and the key names the form's structure."""
    from bayes_lmm.graph import model_signature
    from bayes_lmm.priors import resolve_priors

    more = unbalanced.assign(b=unbalanced["b"] + 10 * (unbalanced.index % 2))
    designs = [bl.design_from_formula("y ~ x + (1|a:b)", d) for d in (unbalanced, more)]
    forms = [choose(d, "auto") for d in designs]
    keys = [model_signature(d, resolve_priors({}, d), f) for d, f in zip(designs, forms)]
    assert keys[0][0] == forms[0].signature() and keys[0] == keys[1]
    assert model_signature(designs[0], resolve_priors({}, designs[0]), "marginal") == keys[0]
    latent = model_signature(designs[0], resolve_priors({}, designs[0]), NonCentered(designs[0]))
    assert latent != keys[0] and latent[0] == NonCentered(designs[0]).signature()


def test_auto_centers_the_factors_whose_levels_carry_much_data():
    """Crossed intercepts a (40 levels × 50 rows, σ_a = 2) and b (500 levels × 4 rows, σ_b = 0.3),
    σ_e = 1: n_l σ²/σ² is about 200 for a and 0.4 for b, so a is centered and b is not; the
    graph then samples u_a directly and z_b, and the summary's reason names both."""
    rng = np.random.default_rng(0)
    n = 2000
    a, b = np.repeat(np.arange(40), 50), rng.permutation(np.repeat(np.arange(500), 4))
    y = rng.normal(0, 2.0, 40)[a] + rng.normal(0, 0.3, 500)[b] + rng.normal(size=n)
    design = bl.design_from_formula("y ~ 1 + (1|a) + (1|b)", pd.DataFrame({"y": y, "a": a, "b": b}))
    ratios = [information_ratio(design, j) for j in range(2)]
    assert ratios[0] > 50 and ratios[1] < 1
    form = choose(design, "auto", dense_q_max=10)
    assert isinstance(form, PerFactor) and form.centered == (True, False) and form.parameterization == "mixed"
    assert "'a' centered" in form.reason and "'b' non-centered" in form.reason and "more than 10" in form.reason
    from bayes_lmm.graph import build_model
    from bayes_lmm.priors import resolve_priors

    model = build_model(design, resolve_priors({}, design), form=form)
    assert {"u_a", "z_b"} <= {v.name for v in model.free_RVs}
    assert form.signature() != PerFactor(design, (False, False)).signature()


def test_every_choice_says_why(unbalanced):
    grouped = choose(bl.design_from_formula("y ~ x + (x|a)", unbalanced))
    assert grouped.reason == "u integrated out: the exact grouped form is cheap (one block of 2 coefficients per level)"
    assert choose(bl.design_from_formula("y ~ x + (x|a)", unbalanced), "centered").reason == \
        "parameterization='centered' was requested"
    crossed = bl.design_from_formula("y ~ x + (x|a) + (x|d)", unbalanced)
    on_kernel = choose(crossed, "auto", dense_q_max=6, kernel_evaluates=True)
    assert isinstance(on_kernel, DenseForm) and "solving out 'a' level by level" in on_kernel.reason
    assert isinstance(choose(crossed, "auto", dense_q_max=5), PerFactor)
