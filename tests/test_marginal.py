"""u integrated out: exact likelihood, same posterior as the latent forms, u drawn afterwards."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from conftest import FAST, quiet_fit

import bayes_lmm as bl
from bayes_lmm.api import resolve_parameterization
from bayes_lmm.graph import build_model
from bayes_lmm.priors import resolve_priors
from bayes_lmm.spec import normalize_priors
from bayes_lmm.variance import var_y_draws

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days|Subject)"),   # one block, k = 2, correlated
    ("sleepstudy", "Reaction ~ Days + (Days||Subject)"),  # two blocks: dense path
    ("litter", "response ~ treatment + (1|litter/animal)"),  # nested: level-by-level closed form
    ("three_level", "y ~ x + (1|a/b/c)"),  # nested, three levels, unbalanced
    ("three_level", "y ~ x + (1|a) + (1|d)"),  # crossed intercepts: a solved out, d left
    ("three_level", "y ~ x + (1|a:b:c) + (x|d)"),  # crossed, the block left is correlated, k = 2
    ("three_level", "y ~ x + (x|a) + (x||d)"),  # crossed: (0 + x|d) has per-row values, not 1s
    ("three_level", "y ~ x + (x|a) + (x|d)"),  # dense: no block of one coefficient per level
    ("seedling", "weight ~ genotype + (1|pot)"),  # one block, k = 1
]


@pytest.fixture(scope="module")
def three_level():
    """Unbalanced three-level nesting a/b/c plus a crossed factor d."""
    rng = np.random.default_rng(3)
    rows = []
    for a in range(3):
        for b in range(rng.integers(1, 4)):
            for c in range(rng.integers(1, 3)):
                for _ in range(rng.integers(1, 4)):
                    rows.append((a, b, c))
    data = pd.DataFrame(rows, columns=["a", "b", "c"])
    data["d"] = rng.integers(0, 3, len(data))
    data["x"] = rng.normal(size=len(data))
    data["y"] = data["a"] * 0.5 + rng.normal(size=len(data))
    return data


def test_nesting_chain_is_recognised(three_level, litter):
    from bayes_lmm import marginal

    nested = bl.design_from_formula("y ~ x + (1|a/b/c)", three_level)
    assert marginal.marginal_kind(nested) == "nested"
    chain, parents = marginal.nesting_chain(nested)
    assert [nested.blocks[j].group for j in chain] == ["a", "a:b", "a:b:c"]
    crossed = bl.design_from_formula("y ~ x + (1|a) + (1|d)", three_level)
    assert marginal.marginal_kind(crossed) == "crossed"
    slope = bl.design_from_formula("y ~ x + (1|a) + (0 + x|a:b)", three_level)
    assert marginal.marginal_kind(slope) == "crossed"
    assert slope.blocks[marginal.eliminated_block(slope)].group == "a:b"  # the larger factor
    assert marginal.describe(slope) == "'a:b' solved out, Cholesky of the rest"
    dense = bl.design_from_formula("y ~ x + (x|a) + (x|d)", three_level)
    assert marginal.marginal_kind(dense) == "dense"


@pytest.mark.parametrize("formula, gram_max", [
    ("y ~ x + (1|a/b/c)", None),  # nested closed form
    ("y ~ x + (1|a:b:c) + (x|d)", None),  # crossed, Gram matrices by row count
    ("y ~ x + (1|a:b:c) + (x|d)", 0),  # crossed, per-level products
    ("y ~ x + (1|a:b:c)", None),  # one block of one coefficient: elementwise
])
def test_closed_form_u_draws_match_dense_conditional(three_level, formula, gram_max):
    from bayes_lmm.likelihood import GRAM_NUMBERS_MAX, exact_form
    from bayes_lmm.likelihood.dense import DenseForm

    design = bl.design_from_formula(formula, three_level)
    form = exact_form(design, gram_numbers_max=GRAM_NUMBERS_MAX if gram_max is None else gram_max)
    closed = form.stats
    assert closed.kind == ("nested" if "/" in formula else "crossed" if "(x|d)" in formula else "grouped")
    if closed.kind == "crossed":
        assert (closed.groups is None) == (gram_max == 0)
    dense = DenseForm.from_design(design)  # the q×q form applies to any design
    S = 4000
    beta = np.tile([0.3, -0.2], (S, 1))
    sigma = np.tile([0.8, 0.6, 0.4, 0.7][-len(design.blocks) - 1 - ("(x|d)" in formula):], (S, 1))
    corr = np.full((S, 1), -0.4) if "(x|d)" in formula else None
    a = form.draw_u(beta, sigma, corr, np.random.default_rng(1))
    b = dense.draw_u(beta, sigma, corr, np.random.default_rng(2))
    se = np.sqrt(a.var(axis=0) / S + b.var(axis=0) / S)
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 5 * se)
    np.testing.assert_allclose(np.cov(a.T), np.cov(b.T), atol=0.06)


@pytest.mark.parametrize("dataset, formula, gram_max", [(*case, None) for case in CASES]
                         + [("three_level", "y ~ x + (1|a:b:c) + (x|d)", 0),  # per-level crossed sums
                            ("seedling", "weight ~ genotype + (1|pot)", 0),  # per-level k = 1 sums
                            # p = 5: β's p×p system by LAPACK, not written out (p ≤ 4)
                            ("three_level", "y ~ x + a + b + c + (1|d)", None)])
def test_marginal_loglik_equals_dense_mvn(dataset, formula, gram_max, request):
    """With β sampled the potential is log N(y | Xβ, V); with β integrated out it is
    log N(y | Xμ, V + X S₀ X') and the conditional of β is the dense Gaussian one."""
    from bayes_lmm.graph import BETA_CHOL, BETA_MEAN
    from bayes_lmm.likelihood import GRAM_NUMBERS_MAX, choose

    data = request.getfixturevalue(dataset)
    design = bl.design_from_formula(formula, data)
    form = choose(design, "marginal", gram_numbers_max=GRAM_NUMBERS_MAX if gram_max is None else gram_max)
    priors = resolve_priors({}, design)
    rng = np.random.default_rng(0)
    for integrate in (False, True):
        model = build_model(design, priors, form=form, integrate_beta=integrate)
        names = ["y_marginal", "sigma", *(["correlation"] if "correlation" in model.named_vars else []),
                 *([BETA_MEAN, BETA_CHOL] if integrate else ["beta"])]
        fn = model.compile_fn(model.replace_rvs_by_values([model[n] for n in names]), inputs=model.value_vars)
        point = {k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in model.initial_point().items()}
        val, sigma, *rest = fn(point)
        corr = rest.pop(0) if "correlation" in model.named_vars else None
        V = var_y_draws(design, sigma[None], None if corr is None else corr[None], list(range(design.n)))[0]
        X, y = design.X, design.y
        if not integrate:
            (beta,) = rest
            assert float(val) == pytest.approx(st.multivariate_normal(X @ beta, V).logpdf(y), rel=1e-9)
            continue
        mean, chol = rest
        mu = np.array([dict(p.params)["mu"] for p in priors.beta])
        s = np.array([dict(p.params)["sigma"] for p in priors.beta])
        expected = st.multivariate_normal(X @ mu, V + (X * s**2) @ X.T).logpdf(y)
        assert float(val) == pytest.approx(expected, rel=1e-9)
        precision = X.T @ np.linalg.solve(V, X) + np.diag(s**-2.0)
        cov = np.linalg.inv(precision)
        np.testing.assert_allclose(mean, cov @ (X.T @ np.linalg.solve(V, y) + mu / s**2), rtol=1e-7, atol=1e-9)
        # β = mean + s ∘ L⁻ᵀε: covariance diag(s) (LL')⁻¹ diag(s)
        np.testing.assert_allclose(s[:, None] * np.linalg.inv(chol @ chol.T) * s[None, :], cov, rtol=1e-7, atol=1e-12)


def test_beta_integrated_only_with_normal_priors(seedling):
    from bayes_lmm.graph import BETA_MEAN, integrates_beta

    design = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling)
    normal = resolve_priors({}, design)
    student = resolve_priors(dict(normalize_priors({"genotype": bl.StudentT(nu=3, mu=0, sigma=2)})), design)
    assert integrates_beta(design, normal, "marginal")
    assert not integrates_beta(design, normal, "noncentered")
    assert not integrates_beta(design, student, "marginal")
    assert BETA_MEAN in build_model(design, normal, parameterization="marginal").named_vars
    kept = build_model(design, student, parameterization="marginal")
    assert "beta" in kept.named_vars and BETA_MEAN not in kept.named_vars
    with pytest.raises(ValueError, match="Normal priors"):
        build_model(design, student, parameterization="marginal", integrate_beta=True)


def test_auto_picks_marginal_where_cheap(sleepstudy):
    one = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleepstudy)
    assert resolve_parameterization("auto", one) == "marginal"
    rng = np.random.default_rng(1)
    big = pd.DataFrame({"y": rng.normal(size=400), "a": rng.integers(0, 100, 400),
                        "b": rng.integers(0, 100, 400), "c": rng.integers(0, 100, 400)})
    # a solved out, 100 coefficients of b left to the Cholesky
    crossed = bl.design_from_formula("y ~ 1 + (1|a) + (1|b)", big)
    assert resolve_parameterization("auto", crossed) == "marginal"
    three = bl.design_from_formula("y ~ 1 + (1|a) + (1|b) + (1|c)", big)  # 200 left: too many
    assert resolve_parameterization("auto", three) == "noncentered"


def close(a, b, se):
    return abs(a - b) <= 4 * se


@pytest.mark.slow
@pytest.mark.parametrize("formula, data_name, factors", [
    ("weight ~ genotype + (1|pot)", "seedling", ["genotype"]),
    ("response ~ treatment + (1|litter/animal)", "litter", ["treatment"]),
    ("y ~ x + (1|a) + (1|b)", "crossed", []),
])
def test_marginal_and_latent_agree(formula, data_name, factors, request):
    if data_name == "crossed":
        rng = np.random.default_rng(5)
        a, b = np.repeat(np.arange(24), 6), np.tile(np.arange(6), 24)
        data = pd.DataFrame({"a": a, "b": b, "x": rng.normal(size=144)})
        data["y"] = 1 + 0.5 * data.x + rng.normal(0, 1, 24)[a] + rng.normal(0, 0.7, 6)[b] + rng.normal(size=144)
    else:
        data = request.getfixturevalue(data_name)
    kw = dict(FAST, draws=1000, chains=2, factors=factors, coding="full" if factors else "treatment")
    fits = {p: quiet_fit(bl.fit, formula, data, parameterization=p, random_seed=4, **kw)
            for p in ("marginal", "noncentered", "centered")}
    ref = fits["marginal"]
    assert "u" in ref.idata.posterior and ref.parameterization == "marginal"
    if data_name == "crossed":
        assert "parameterization marginal (u and β integrated out; 'a' solved out" in ref.summary()
    assert "beta_conditional_mean" not in ref.idata.posterior  # β drawn, its conditional dropped
    for p in ("noncentered", "centered"):
        for name in ("beta", "sigma", "u"):
            a, b = ref.draws(name), fits[p].draws(name)
            se = np.sqrt(a.var(axis=0) / 300 + b.var(axis=0) / 300)  # conservative ESS of 300
            assert np.all(close(np.median(a, axis=0), np.median(b, axis=0), se)), (p, name)


def test_compiled_model_is_reused_with_new_data_and_labels():
    from bayes_lmm import sampling

    def data(seed, prefix):
        rng = np.random.default_rng(seed)
        g = rng.integers(0, 8, 80)
        return pd.DataFrame({"y": 100 * seed + rng.normal(0, 1, 8)[g] + rng.normal(size=80),
                             "grp": [f"{prefix}{v}" for v in g]})

    kw = dict(FAST, draws=200, tune=200, random_seed=3)
    first = quiet_fit(bl.fit, "y ~ 1 + (1|grp)", data(1, "a"), **kw)
    size = len(sampling._COMPILED)
    second = quiet_fit(bl.fit, "y ~ 1 + (1|grp)", data(2, "b"), **kw)
    assert len(sampling._COMPILED) == size  # same structure: no new compilation
    assert first.fixed_effects().loc["Intercept", "median"] == pytest.approx(100, abs=3)
    assert second.fixed_effects().loc["Intercept", "median"] == pytest.approx(200, abs=3)
    assert list(second.idata.posterior["u"].coords["u_index"].values)[0] == "grp[b0]"


@pytest.mark.parametrize("formula", ["y ~ x + (1|grp)", "y ~ x + (1|grp) + (1|other)"])
def test_one_compiled_model_serves_any_number_of_groups(formula):
    """Levels of a single block, or of the factor the crossed form solves out, are data shapes:
    the model compiled for 8 groups fits 13 without compiling again, and fits them right."""
    from bayes_lmm import sampling

    def data(groups, seed):
        rng = np.random.default_rng(seed)
        g = np.repeat(np.arange(groups), 12)
        other = np.tile(np.arange(4), 3 * groups)
        x = rng.normal(size=g.size)
        y = 5.0 + 2.0 * x + rng.normal(0, 1.5, groups)[g] + rng.normal(0, 1, 4)[other] + rng.normal(size=g.size)
        return pd.DataFrame({"y": y, "x": x, "grp": g, "other": other})

    kw = dict(FAST, draws=300, tune=300, random_seed=5)
    quiet_fit(bl.fit, formula, data(8, 1), **kw)
    size = len(sampling._COMPILED)
    fit = quiet_fit(bl.fit, formula, data(13, 2), **kw)
    assert len(sampling._COMPILED) == size
    assert fit.parameterization == "marginal"
    assert fit.idata.posterior["u"].shape[-1] == 13 + (4 if "other" in formula else 0)
    slope = fit.fixed_effects().loc["x"]
    assert slope["lower"] < 2.0 < slope["upper"]
    reference = quiet_fit(bl.fit, formula, data(13, 2), **dict(kw, parameterization="noncentered", draws=1000))
    np.testing.assert_allclose(fit.fixed_effects()["median"], reference.fixed_effects()["median"], atol=0.15)


def test_100k_rows_never_form_a_dense_z():
    """Design, sufficient statistics and the marginal graph of 100,000 rows × 2,000 groups stay
    far below the 1.6 GB a dense n × q Z would take."""
    import tracemalloc

    rng = np.random.default_rng(0)
    g = rng.integers(0, 2000, 100_000)
    data = pd.DataFrame({"y": rng.normal(size=100_000) + rng.normal(size=2000)[g],
                         "x": rng.normal(size=100_000), "g": g})
    tracemalloc.start()
    design = bl.design_from_formula("y ~ x + (1|g)", data)
    model = build_model(design, resolve_priors({}, design), parameterization="marginal")
    logp = model.compile_logp()(model.initial_point())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(logp)
    assert peak < 250e6, f"peak {peak / 1e6:.0f} MB"
