"""The blocked Gibbs sampler's pieces without sampling (structural tier): the joint draw of
(β, u) given θ has the dense Gaussian conditional's mean and covariance, every one-dimensional conditional is the PyMC graph's joint density as a
function of that σ, the slice sampler leaves a known density invariant, and ``auto`` picks the
Gibbs sampler where it should and says why."""

import math

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import scipy.stats as st

import bayes_lmm as bl
from bayes_lmm import gibbs_steps as steps
from bayes_lmm.gibbs_sampling import gibbs_model, unavailable
from bayes_lmm.likelihood import choose, kernel, lapack
from bayes_lmm.likelihood.gibbs import GibbsForm, remainder
from bayes_lmm.likelihood.gibbs_system import LocationSystem
from bayes_lmm.likelihood.latent import PerFactor
from bayes_lmm.pipeline import build_with_form
from bayes_lmm.priors import resolve_priors


@pytest.fixture(scope="module")
def crossed():
    """Unbalanced crossed a × b with an uncorrelated slope on b, y far from 0, an empty
    level of a (its category kept by the Categorical) and rows with x = 0."""
    rng = np.random.default_rng(5)
    n = 70
    data = pd.DataFrame({"a": rng.integers(0, 8, n), "b": rng.integers(0, 5, n), "x": rng.normal(size=n)})
    data.loc[::9, "x"] = 0.0
    data["y"] = 1e4 + 2 * data["x"] + rng.normal(size=8)[data["a"]] + rng.normal(size=n)
    data["a"], data["b"] = data["a"].map("a{}".format), data["b"].map("b{}".format)
    return data


FORMULAS = ["y ~ x + (1|a) + (1|b) + (0 + x||b)", "y ~ x + (1|a/b)", "y ~ 1 + (x||a)"]


def _dense_conditional(design, system, sigma, sigma_e, mu, sd):
    """Mean and covariance of (β, u) | θ, y from the dense precision [X Z]'[X Z]/σ_e² + prior."""
    M = np.hstack([design.X, design.Z])
    prior = np.zeros(M.shape[1])
    prior[: design.p] = 1 / sd**2
    for j, comp in enumerate(system.comps):
        prior[design.p + comp.u_index] = 1 / sigma[j] ** 2
    Q = M.T @ M / sigma_e**2 + np.diag(prior)
    b = M.T @ design.y / sigma_e**2
    b[: design.p] += mu / sd**2
    return np.linalg.solve(Q, b), np.linalg.inv(Q)


def _flat(design, system, delta, u):
    out = np.zeros(design.p + len(design.u_labels))
    out[: design.p] = system.beta0 + delta
    for comp, u_c in zip(system.comps, u):
        out[design.p + comp.u_index] = u_c
    return out


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("compiled", [True, False])
def test_the_location_draw_has_the_dense_conditional_moments(crossed, formula, compiled):
    design = bl.design_from_formula(formula, crossed)
    mu, sd = np.full(design.p, 1e4), np.full(design.p, 50.0)
    schur = kernel.load().gibbs_schur if compiled else None
    system = LocationSystem(design, mu, sd, schur=schur)
    rng = np.random.default_rng(1)
    sigma, sigma_e = rng.uniform(0.3, 2.0, len(system.comps)), 0.8
    mean, cov = _dense_conditional(design, system, sigma, sigma_e, mu, sd)
    n_e = system.comps[system.e].n_levels if system.e is not None else 0
    zero = _flat(design, system, *system.draw(sigma, sigma_e, np.zeros(system.r), np.zeros(n_e)))
    assert np.allclose(zero, mean, rtol=1e-9, atol=1e-9 * np.abs(mean).max())
    # the draw is linear in the noise: its columns for unit noises give the covariance
    cols = []
    for i in range(system.r + n_e):
        z = np.zeros(system.r + n_e)
        z[i] = 1.0
        cols.append(_flat(design, system, *system.draw(sigma, sigma_e, z[: system.r], z[system.r:])) - zero)
    implied = np.array(cols).T @ np.array(cols)
    assert np.allclose(implied, cov, rtol=1e-8, atol=1e-10 * np.abs(cov).max())


def test_the_eliminated_component_is_the_largest_with_one_level_per_row(crossed):
    design = bl.design_from_formula("y ~ x + (1|a) + (1|b) + (0 + x||b)", crossed)
    system = LocationSystem(design, np.zeros(2), np.ones(2))
    assert system.eliminated_name == "1|a"
    assert system.r == remainder(design) == 2 + 5 + 5
    assert system.r == GibbsForm.cost(design)


def test_lapack_without_the_lock_factors_and_solves():
    rng = np.random.default_rng(3)
    M = rng.normal(size=(40, 40))
    S = M @ M.T + 40 * np.eye(40)
    L = S.copy()
    assert lapack.cholesky_inplace(L)
    low = np.tril(L)
    assert np.allclose(low @ low.T, S)
    b = rng.normal(size=40)
    x = b.copy()
    lapack.solve_lower(L, x)
    assert np.allclose(low @ x, b)
    lapack.solve_lower(L, x, transposed=True)
    assert np.allclose(x, np.linalg.solve(S, b))
    assert not lapack.cholesky_inplace(-S.copy())
    assert lapack.releases_lock()


PRIORS = [bl.HalfNormal(2.0), bl.HalfStudentT(3.0, 1.5), bl.HalfCauchy(0.7), bl.Exponential(0.5),
          bl.InverseGamma(3.0, 2.0)]


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.family)
def test_the_sd_prior_log_densities_are_pymcs(prior):
    """Differences of log p(σ) equal PyMC's (InverseGamma sits on σ²: Jacobian log 2σ)."""
    dist = getattr(pm, prior.family).dist(**prior.kwargs())
    sds = np.array([0.05, 0.4, 1.0, 3.0, 12.0])
    values = sds**2 if prior.family == "InverseGamma" else sds
    ref = pm.logp(dist, values).eval() + (np.log(2 * sds) if prior.family == "InverseGamma" else 0)
    ours = np.array([steps.sd_log_prior(prior)(s) for s in sds])
    assert np.allclose(ours - ours[0], ref - ref[0], rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def graphs(crossed):
    """The centered and non-centered PyMC graphs of one crossed design, their log-densities
    without Jacobians, and a point of each (the same β, σ, u)."""
    spec = bl.ModelSpec(formula="y ~ x + (1|a) + (1|b)")
    design = bl.design_from_formula(spec.formula, crossed)
    out = {}
    for name in ("centered", "noncentered"):
        model, priors, _ = bl.build(spec, design, parameterization=name)
        out[name] = (model, model.compile_logp(jacobian=False))
    return design, priors, out


def _point(model, design, priors, beta, sigma, u_blocks, centered):
    point = {"beta_std": (beta - np.array([p.kwargs()["mu"] for p in priors.beta]))
             / np.array([p.kwargs()["sigma"] for p in priors.beta])}
    for (name, prior), sd, u_b, key in zip(priors.components, sigma, u_blocks, ("a", "b")):
        safe = bl.graph.safe_name(name)
        point[f"sigma_{safe}_std_log__"] = np.log(sd / prior.kwargs()["sigma"])
        point[f"u_{key}" if centered else f"z_{key}"] = (u_b if centered else u_b / sd)[:, None]
    point["sigma_Residual_std_log__"] = np.log(sigma[-1] * priors.residual.kwargs()["lam"])
    assert set(point) == {v.name for v in model.value_vars}
    return point


def test_each_sigma_conditional_is_the_graphs_density(graphs):
    """Vary one σ: the graph's log-density changes as the Gibbs conditional does (centered
    graph for σ_c | u_c and σ_e | e; non-centered graph for σ_c | ũ_c)."""
    design, priors, models = graphs
    rng = np.random.default_rng(4)
    beta = np.array([1e4, 1.5])
    u_blocks = [rng.normal(size=b.n_levels) for b in design.blocks]
    base = np.array([0.7, 1.3, 0.9])
    comps = [priors.component(c) for c in design.components]
    for j in range(3):
        for sd_new in (0.2, 2.5):
            sigma = base.copy()
            sigma[j] = sd_new
            for centered in (True, False):
                model, logp = models["centered" if centered else "noncentered"]
                u_now = [u * (sigma[i] / base[i] if not centered and i < 2 else 1) for i, u in enumerate(u_blocks)]
                graph_gap = (logp(_point(model, design, priors, beta, sigma, u_now, centered))
                             - logp(_point(model, design, priors, beta, base, u_blocks, centered)))
                if j == 2:
                    resid = design.y - design.X @ beta - sum(design.blocks[i].z_matrix() @ u_blocks[i] for i in range(2))
                    f = steps.residual(steps.sd_log_prior(priors.residual), design.n, float(resid @ resid))
                elif centered:
                    f = steps.centered(steps.sd_log_prior(comps[j]), len(u_blocks[j]), float(u_blocks[j] @ u_blocks[j]))
                else:
                    v = design.blocks[j].z_matrix() @ (u_blocks[j] / base[j])
                    other = design.blocks[1 - j].z_matrix() @ u_blocks[1 - j]
                    partial = design.y - design.X @ beta - other
                    f = steps.noncentered(steps.sd_log_prior(comps[j]), float(v @ v), float(partial @ v), base[2])
                if j == 2 and not centered:
                    continue  # σ_e's step runs on the centered state only
                assert graph_gap == pytest.approx(f(sd_new) - f(base[j]), rel=1e-9, abs=1e-7)


def test_the_slice_sampler_leaves_a_known_density_invariant():
    """σ² | u with a flat prior on σ and L = 12, ‖u‖² = 30: σ² ~ InverseGamma((L − 1)/2,
    ‖u‖²/2), so E σ² = 30/9; 20,000 seeded steps put the mean within 4 Monte Carlo SEs."""
    f = steps.centered(lambda s: 0.0, 12, 30.0)
    rng = np.random.default_rng(6)
    sd, draws = 1.0, []
    for _ in range(20_000):
        sd = steps.slice_sample(f, sd, rng)
        draws.append(sd * sd)
    draws = np.array(draws[500:])
    truth = st.invgamma(5.5, scale=15.0)
    se = truth.std() / math.sqrt(len(draws) / 4)  # slice draws are mildly autocorrelated
    assert abs(draws.mean() - truth.mean()) < 4 * se
    assert st.kstest(draws[::10], truth.cdf).pvalue > 1e-3


@pytest.fixture(scope="module")
def wide_crossed():
    """Crossed factors of 200 × 120 levels: 120 + 2 coefficients left after solving out 'a'
    (no exact form is cheap for NUTS at 150 with the intercept factor 'c' of 40 levels)."""
    rng = np.random.default_rng(7)
    n = 3000
    data = pd.DataFrame({"a": rng.integers(0, 200, n), "b": rng.integers(0, 120, n), "c": rng.integers(0, 40, n)})
    data["y"] = rng.normal(size=200)[data["a"]] + rng.normal(size=120)[data["b"]] + rng.normal(size=n)
    return data.astype({"a": str, "b": str, "c": str})


def test_auto_picks_the_gibbs_sampler_where_no_exact_form_is_cheap_and_says_why(wide_crossed):
    spec = bl.ModelSpec(formula="y ~ 1 + (1|a) + (1|b) + (1|c)")
    design = bl.design_from_formula(spec.formula, wide_crossed)
    _, _, form = build_with_form(spec, design, sampler="auto")
    assert isinstance(form, GibbsForm) and form.own_sampler == "gibbs"
    assert form.parameterization == "centered"
    assert "blocked Gibbs" in form.reason and "161×161 Cholesky per sweep" in form.reason
    # NUTS asked for by name: the per-factor latent form
    _, _, nuts = build_with_form(spec, design, sampler="nutpie")
    assert isinstance(nuts, PerFactor)
    # a design the kernel integrates: no Gibbs
    small = bl.design_from_formula("y ~ 1 + (1|b) + (1|c)", wide_crossed)
    assert not choose(small, "auto", kernel_evaluates=True, gibbs_samples=True).samples_u
    # above the size limit: NUTS on the latent form
    assert isinstance(choose(design, "auto", gibbs_samples=True, dense_q_max=150), GibbsForm)
    assert not GibbsForm.cheap(design, q_max=100)


@pytest.mark.parametrize("formula, residual, priors, message", [
    ("y ~ x + (x|b)", None, None, "'b' are correlated"),
    ("y ~ x + (1|a)", bl.HeteroSD("b"), None, "residual structure"),
    ("y ~ x + (1|a)", None, {"x": bl.StudentT(3, 0, 1)}, "prior on β of family StudentT"),
    ("y ~ 1", None, None, "no random effects"),
])
def test_sampler_gibbs_refuses_a_model_it_cannot_sample_by_name(crossed, formula, residual, priors, message):
    with pytest.raises(bl.SpecificationError, match=message):
        bl.fit(formula, crossed, sampler="gibbs", residual=residual, priors=priors, draws=10, tune=10)


def test_sampler_gibbs_refuses_another_parameterization(crossed):
    with pytest.raises(bl.SpecificationError, match="parameterization='marginal' cannot be combined"):
        bl.fit("y ~ x + (1|a)", crossed, sampler="gibbs", parameterization="marginal", draws=10, tune=10)


def test_gibbs_model_starts_from_scales_of_the_data(crossed):
    design = bl.design_from_formula("y ~ x + (1|a) + (1|b)", crossed)
    prior_set = resolve_priors({}, design)
    assert unavailable(design, prior_set) is None
    model = gibbs_model(design, prior_set)
    resid_sd = np.std(design.y - design.X @ np.linalg.lstsq(design.X, design.y, rcond=None)[0])
    assert model.scales[-1] == pytest.approx(resid_sd)
    assert np.allclose(model.scales[:-1], resid_sd / 2)
