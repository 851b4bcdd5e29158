"""Residual structures in the Bayesian model, structural tier (no sampling): the PyTensor
log-density of each R against the dense multivariate normal, the NumPy draws, LOO conditionals
and R blocks against hand computations, the graph's names, priors and errors."""

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

import bayes_lmm as bl
from bayes_lmm import residual_draws as rd
from bayes_lmm.checks import linear_predictor
from bayes_lmm.likelihood.residual_logp import residual_logp
from bayes_lmm.pipeline import build_with_form
from bayes_lmm.spec import ModelSpec
from bayes_lmm.var_structure import var_y_structure

pytestmark = pytest.mark.filterwarnings("ignore:column '(time|age)' holds only")


@pytest.fixture(scope="module")
def panel():
    """Unbalanced panel, rows shuffled: 5 subjects, times with gaps, a sex column."""
    rng = np.random.default_rng(3)
    rows = []
    for s, times in enumerate([[1, 2, 3, 4], [1, 3, 4], [2, 4], [1, 2, 3, 4], [4]]):
        for t in times:
            rows.append({"subj": f"s{s}", "time": t, "sex": "F" if s % 2 else "M", "x": rng.normal()})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)
    frame["y"] = rng.normal(size=len(frame))
    frame["se"] = rng.uniform(0.5, 2.0, size=len(frame))
    return frame


STRUCTURES = {
    "known": (bl.KnownSD("se"), None),
    "hetero": (bl.HeteroSD("sex"), None),
    "ar1": (bl.AR1("time", "subj"), -0.6),
    "ar1_sdby": (bl.AR1("time", "subj", sd_by="sex"), 0.7),
    "cs": (bl.CompoundSymmetry("subj", sd_by="sex"), 0.4),
    "un": (bl.Unstructured("time", "subj"), "matrix"),
}


def _params(res, rho, rng):
    sds = rng.uniform(0.5, 2.0, size=len(res.sd_labels))
    if rho == "matrix":
        T = len(res.time_labels)
        A = rng.normal(size=(T, T + 2))
        cov = A @ A.T
        d = np.sqrt(np.diag(cov))
        full = cov / d[:, None] / d[None, :]
        return sds, full, full[np.triu_indices(T, 1)]
    return sds, rho, None if rho is None else np.array([rho])


@pytest.mark.parametrize("name", STRUCTURES)
def test_logp_numpy_draws_and_blocks_equal_the_dense_normal(panel, name):
    structure, rho = STRUCTURES[name]
    res = structure.resolve(panel)
    rng = np.random.default_rng(7)
    sds, corr, rc = _params(res, rho, rng)
    R = res.matrix(sds, corr)
    e = rng.normal(size=res.n) * 1.3
    dense = stats.multivariate_normal(np.zeros(res.n), R).logpdf(e)
    # PyTensor (the graph's term)
    e_t, d_t, rho_t = pt.dvector("e"), pt.dvector("d"), pt.dvector("rho")
    with pm.Model():  # the rows' codes are pm.Data
        fn = pytensor.function([e_t, d_t, rho_t], residual_logp(res, e_t, d_t, rho_t), on_unused_input="ignore")
    d = res.row_sd(sds) if res.known_sd is None else res.known_sd
    assert fn(e, d, np.zeros(0) if rc is None else rc) == pytest.approx(dense, rel=1e-10)
    # NumPy: joint, pointwise LOO conditionals, R blocks, noise covariance
    design = bl.design_from_formula("y ~ x + (1|subj)", panel)
    design = rd.attach_residual(design, structure)
    sigma = np.concatenate([[0.9], sds])[None]
    rcd = None if rc is None else rc[None]
    assert rd.joint_loglik(design, e[None], sigma, rcd)[0] == pytest.approx(dense, rel=1e-10)
    assert np.allclose(rd.r_draws(design, sigma, rcd, list(range(res.n)))[0], R, atol=1e-12)
    P = np.linalg.inv(R)
    loo = 0.5 * np.log(np.diag(P) / (2 * np.pi)) - 0.5 * (P @ e) ** 2 / np.diag(P)
    assert np.allclose(rd.pointwise_loglik(design, e[None], sigma, rcd)[0], loo, atol=1e-10)
    # the LOO conditional of row 0 by the conditional-normal formula
    rest = np.arange(1, res.n)
    mean0 = R[0, rest] @ np.linalg.solve(R[np.ix_(rest, rest)], e[rest])
    var0 = R[0, 0] - R[0, rest] @ np.linalg.solve(R[np.ix_(rest, rest)], R[rest, 0])
    assert loo[0] == pytest.approx(stats.norm(mean0, np.sqrt(var0)).logpdf(e[0]), rel=1e-9)
    S = 20_000
    draws = rd.noise(design, np.repeat(sigma, S, axis=0), None if rcd is None else np.repeat(rcd, S, axis=0),
                     np.random.default_rng(1))
    assert np.abs(np.cov(draws.T) - R).max() < 0.12 * R.max()


def test_ar1_with_negative_rho_and_gaps_logp_matches(panel):
    res = bl.AR1("time", "subj").resolve(panel)
    e_t, d_t, rho_t = pt.dvector("e"), pt.dvector("d"), pt.dvector("rho")
    with pm.Model():
        fn = pytensor.function([e_t, d_t, rho_t], pytensor.grad(residual_logp(res, e_t, d_t, rho_t), rho_t))
    e, d = np.linspace(-1, 1, res.n), np.full(res.n, 1.5)
    h = 1e-6

    def dense(r):
        return stats.multivariate_normal(np.zeros(res.n), res.matrix([1.5], r)).logpdf(e)

    assert fn(e, d, [-0.95])[0] == pytest.approx((dense(-0.95 + h) - dense(-0.95 - h)) / (2 * h), rel=1e-5)


def _args(model, point):
    start = model.initial_point()
    return [point.get(v.name, start[v.name]) for v in model.value_vars]


def _model(panel, structure, formula="y ~ x + (1|subj)", priors=None):
    design = rd.attach_residual(bl.design_from_formula(formula, panel), structure)
    spec = ModelSpec(formula=formula, priors=tuple((priors or {}).items()))
    return design, build_with_form(spec, design)


@pytest.mark.parametrize("name", ["hetero", "ar1_sdby", "cs", "un"])
def test_graph_likelihood_equals_numpy_at_a_point(panel, name):
    structure, _ = STRUCTURES[name]
    design, (model, priors, form) = _model(panel, structure)
    assert form.parameterization == "noncentered"
    point = model.initial_point()
    rng = np.random.default_rng(2)
    point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in point.items()}
    term = model.observed_RVs[0] if model.observed_RVs else None
    if term is not None:
        lik = model.compile_fn(model.logp(vars=[term], sum=True), inputs=model.value_vars, point_fn=False,
                             on_unused_input="ignore")
    else:
        lik = model.compile_fn(model.replace_rvs_by_values([pt.sum(model.potentials[0])])[0], inputs=model.value_vars, point_fn=False,
                             on_unused_input="ignore")
    outs = [model["beta"], model["u"], model["sigma"]] + (
        [model["residual_correlation"]] if design.residual.correlated else [])
    want = model.compile_fn(model.replace_rvs_by_values(outs), inputs=model.value_vars, point_fn=False,
                            on_unused_input="ignore")(*_args(model, point))
    beta, u, sigma = want[:3]
    rc = want[3][None] if len(want) > 3 else None
    resid = design.y - linear_predictor(design, beta[None], u[None])
    assert float(lik(*_args(model, point))) == pytest.approx(rd.joint_loglik(design, resid, sigma[None], rc)[0], rel=1e-9)
    assert list(model.coords["component"]) == ["1|subj"] + list(design.residual.sd_labels)


def test_priors_per_stratum_and_on_the_correlation(panel):
    design, (model, priors, _) = _model(
        panel, bl.AR1("time", "subj", sd_by="sex"),
        priors={"Residual": bl.HalfNormal(3.0), "Residual[F]": bl.Exponential(2.0),
                "residual_correlation": bl.LKJ(4.0)})
    assert priors.residual_sd("Residual[F]") == bl.Exponential(2.0)
    assert priors.residual_sd("Residual[M]") == bl.HalfNormal(3.0)
    assert priors.residual_correlation == bl.LKJ(4.0)
    table = priors.table()
    assert {"Residual[F]", "Residual[M]", "residual_correlation"} <= set(table.index)
    with pytest.raises(bl.SpecificationError, match=r"Residual\[X\]"):
        _model(panel, bl.HeteroSD("sex"), priors={"Residual[X]": bl.HalfNormal(1.0)})
    with pytest.raises(bl.SpecificationError, match="residual_correlation"):
        _model(panel, bl.HeteroSD("sex"), priors={"residual_correlation": bl.LKJ(2.0)})


def test_compound_symmetry_rho_bound_and_ar1_prior(panel):
    _, (model, _, _) = _model(panel, bl.CompoundSymmetry("subj"))
    low = model.compile_fn(model.replace_rvs_by_values([model["residual_correlation"]])[0], inputs=model.value_vars, point_fn=False,
                             on_unused_input="ignore")
    # the largest subject has 4 rows: ρ > −1/3 keeps every block positive definite
    assert low(*_args(model, {"residual_rho_beta_logodds__": np.array(-40.0)}))[0] == pytest.approx(-1 / 3)
    _, (model, _, _) = _model(panel, bl.AR1("time", "subj"))
    rho = model.compile_fn(model.replace_rvs_by_values([model["residual_correlation"]])[0], inputs=model.value_vars, point_fn=False,
                             on_unused_input="ignore")
    assert rho(*_args(model, {"residual_rho_beta_logodds__": np.array(-40.0)}))[0] == pytest.approx(-1.0)


def test_errors_name_the_problem(panel):
    with pytest.raises(bl.SpecificationError, match="marginal"):
        bl.build(ModelSpec(formula="y ~ x + (1|subj)", parameterization="marginal"),
                 rd.attach_residual(bl.design_from_formula("y ~ x + (1|subj)", panel), bl.HeteroSD("sex")))
    with pytest.raises(bl.SpecificationError, match="no variance parameter"):
        bl.fit("y ~ x", panel, residual=bl.KnownSD("se"))
    with pytest.raises(bl.SpecificationError, match="residual= takes one of"):
        bl.fit("y ~ x + (1|subj)", panel, residual="ar1")
    with pytest.raises(bl.SpecificationError, match="'nope' is not in the data"):
        bl.fit("y ~ x + (1|subj)", panel, residual=bl.HeteroSD("nope"))
    before = panel.copy()
    rd.attach_residual(bl.design_from_formula("y ~ x + (1|subj)", panel), bl.AR1("time", "subj"))
    pd.testing.assert_frame_equal(panel, before)


def test_var_y_structure_writes_R(panel):
    design = rd.attach_residual(bl.design_from_formula("y ~ x + (1|subj)", panel), bl.AR1("time", "subj"))
    rows = [i for i in range(design.n) if panel.subj[i] == "s0"]
    rows = sorted(rows, key=lambda i: panel.time[i])
    table = var_y_structure(design, rows)
    assert table.iloc[0, 0] == "σ²_subj + σ²_e"
    assert table.iloc[0, 1] == "σ²_subj + σ²_e·ρ"
    assert table.iloc[0, 3] == "σ²_subj + σ²_e·ρ^3"
    het = rd.attach_residual(design, bl.HeteroSD("sex"))
    i = int(np.flatnonzero(panel.sex == "F")[0])
    assert var_y_structure(het, [i]).iloc[0, 0] == "σ²_subj + σ²_e[F]"
    un = rd.attach_residual(design, bl.Unstructured("time", "subj"))
    assert var_y_structure(un, rows[:2]).iloc[0, 1] == "σ²_subj + σ_e[1]·σ_e[2]·ρ(1,2)"
    known = rd.attach_residual(design, bl.KnownSD("se"))
    assert var_y_structure(known, [0]).iloc[0, 0] == f"σ²_subj + {panel.se[0] ** 2:g}"


def test_new_rows_take_their_strata_and_groups(panel):
    design = rd.attach_residual(bl.design_from_formula("y ~ x + (1|subj)", panel), bl.AR1("time", "subj", sd_by="sex"))
    new = pd.DataFrame({"subj": ["z", "z", "z"], "time": [1, 2, 4], "sex": ["F", "F", "M"], "x": [0.0, 0, 0]})
    nd = rd.for_new_rows(design, new)
    sigma = np.array([[1.0, 2.0, 0.5]])  # σ_subj, σ_e[F], σ_e[M]
    assert np.allclose(rd.row_sd(nd, sigma)[0], [2.0, 2.0, 0.5])
    R = rd.r_draws(nd, sigma, np.array([[0.5]]), [0, 1, 2])[0]
    assert R[0, 2] == pytest.approx(2.0 * 0.5 * 0.5**3)
    with pytest.raises(bl.DataError, match=r"level\(s\) \['Q'\] of 'sex'"):
        rd.for_new_rows(design, new.assign(sex=["Q", "F", "F"]))
    with pytest.raises(bl.DataError, match="lack column 'sex'"):
        rd.for_new_rows(design, new.drop(columns="sex"))
