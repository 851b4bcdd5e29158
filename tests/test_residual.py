"""Residual structures R: their blocks against hand-written matrices, their input checks, and
bl.reml(..., residual=) against nlme 3.1-162 (tests/data/nlme_residual.R writes the data and
tests/data/nlme_residual.json).

Log-likelihood convention: nlme's REML ``logLik`` (``gls`` and ``lme``) is
``−½[(n − p) log 2π + log|V| + log|X'V⁻¹X| + r'V⁻¹r]``, the same as lme4's and ours: on the
σ²I fit ("baseline") they agree to 1e-11 and no ``log|X'X|`` term differs. The ``log|X'V⁻¹X|``
term depends on the coding of X, so the data put Female first (the reference level) in both.
With known SDs nlme needs ``lmeControl(sigma = 1)``, whose REML criterion is not this one
(``logLik.reStruct`` adds ``N log σ − exp(lRSS)/(2σ)``): there only the eight schools' μ (τ̂ = 0
in both) is compared, and the meta-regression is checked against a direct dense computation.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import bayes_lmm as bl

DATA = Path(__file__).resolve().parent / "data"
REF = json.loads((DATA / "nlme_residual.json").read_text())
REL = 1e-3
pytestmark = pytest.mark.filterwarnings("ignore:column 'age' holds only 4 distinct integers")


@pytest.fixture(scope="module")
def orth():
    return pd.read_csv(DATA / "orthodont.csv")


@pytest.fixture(scope="module")
def sim():
    return pd.read_csv(DATA / "ar1_sim.csv")


@pytest.fixture()
def tiny():
    # rows out of group order on purpose: a b a b a
    return pd.DataFrame({"subj": ["a", "b", "a", "b", "a"], "time": [1, 1, 2, 3, 4],
                         "sex": ["F", "M", "F", "M", "F"], "s": [1.0, 2.0, 3.0, 4.0, 5.0],
                         "y": [0.1, 0.5, -0.2, 0.3, 0.9]})


# ------------------------------------------------------------------- structure


def test_iid_known_hetero_are_diagonal(tiny):
    assert np.array_equal(bl.IID().resolve(tiny).matrix([2.0]), 4.0 * np.eye(5))
    assert np.array_equal(bl.KnownSD("s").resolve(tiny).matrix(), np.diag([1.0, 4, 9, 16, 25]))
    assert np.array_equal(bl.KnownSD([1, 2, 3, 4, 5]).resolve(n=5).matrix(), np.diag([1.0, 4, 9, 16, 25]))
    het = bl.HeteroSD("sex").resolve(tiny)
    assert het.sd_labels == ("Residual[F]", "Residual[M]")
    assert np.array_equal(het.matrix([1.0, 3.0]), np.diag([1.0, 9, 1, 9, 1]))
    assert bl.KnownSD("s").resolve(tiny).sd_labels == ()


def test_ar1_blocks_by_hand(tiny):
    r = bl.AR1("time", "subj").resolve(tiny)
    assert r.sd_labels == ("Residual",) and r.corr_names == ("rho",)
    p, s2 = 0.5, 4.0
    # group a: rows 0, 2, 4 at times 1, 2, 4; group b: rows 1, 3 at times 1, 3 (a gap)
    Ra = s2 * np.array([[1, p, p**3], [p, 1, p**2], [p**3, p**2, 1]])
    Rb = s2 * np.array([[1, p**2], [p**2, 1]])
    np.testing.assert_allclose(r.block(0, [2.0], p), Ra)
    np.testing.assert_allclose(r.block(1, [2.0], p), Rb)
    full = np.zeros((5, 5))
    full[np.ix_([0, 2, 4], [0, 2, 4])] = Ra
    full[np.ix_([1, 3], [1, 3])] = Rb
    np.testing.assert_allclose(r.matrix([2.0], p), full)


def test_ar1_with_sd_by_and_ordered_time(tiny):
    r = bl.AR1("time", "subj", sd_by="sex").resolve(tiny.assign(sex=["F", "M", "F", "M", "M"]))
    assert r.sd_labels == ("Residual[F]", "Residual[M]")
    d = np.array([1.0, 1.0, 2.0])  # group a: rows 0, 2 (F), 4 (M)
    C = np.array([[1, 0.5, 0.125], [0.5, 1, 0.25], [0.125, 0.25, 1]])
    np.testing.assert_allclose(r.block(0, [1.0, 2.0], 0.5), d[:, None] * C * d[None, :])
    # an ordered Categorical: positions are category codes (so "t3" is two steps after "t1")
    cat = pd.Categorical(["t1", "t1", "t2", "t3", "t4"], categories=["t1", "t2", "t3", "t4"], ordered=True)
    r2 = bl.AR1("time", "subj").resolve(tiny.assign(time=cat))
    np.testing.assert_allclose(r2.block(1, [1.0], 0.5), [[1, 0.25], [0.25, 1]])


def test_compound_symmetry_blocks(tiny):
    r = bl.CompoundSymmetry("subj").resolve(tiny)
    p = -0.3
    np.testing.assert_allclose(r.block(0, [2.0], p), 4.0 * np.array([[1, p, p], [p, 1, p], [p, p, 1]]))
    np.testing.assert_allclose(r.block(1, [2.0], p), 4.0 * np.array([[1, p], [p, 1]]))
    assert r.matrix([2.0], p)[0, 1] == 0.0  # rows 0 (a) and 1 (b): different groups


def test_unstructured_blocks_and_labels():
    df = pd.DataFrame({"g": ["a", "a", "b", "a", "b", "c"], "t": [3, 1, 3, 2, 1, 2]})
    r = bl.Unstructured("t", "g").resolve(df)
    assert r.sd_labels == ("Residual[1]", "Residual[2]", "Residual[3]")
    assert r.corr_names == ("corr(1,2)", "corr(1,3)", "corr(2,3)")
    C = np.array([[1, 0.2, 0.4], [0.2, 1, 0.6], [0.4, 0.6, 1]])
    sds = np.array([1.0, 2.0, 3.0])
    # group a: rows 0, 1, 3 at times 3, 1, 2 (data order)
    t = [2, 0, 1]
    np.testing.assert_allclose(r.block(0, sds, C), (sds[t, None] * C[np.ix_(t, t)] * sds[None, t]))
    np.testing.assert_allclose(r.block(1, sds, C), [[9.0, 3 * 1 * 0.4], [3 * 1 * 0.4, 1.0]])
    np.testing.assert_allclose(r.block(2, sds, C), [[4.0]])
    np.testing.assert_allclose(r.corr_values(C), [0.2, 0.4, 0.6])
    R = r.matrix(sds, C)
    assert R[0, 2] == 0.0 and R[1, 3] == pytest.approx(1 * 2 * 0.2)


# ------------------------------------------------------------------- validation


@pytest.mark.parametrize("value, match", [
    (0.0, r"non-positive SD 0\.0 \(rows \[2\]\)"), (-1.0, "non-positive SD -1.0"),
    (np.inf, r"non-finite SD inf"), (np.nan, r"column 's' has 1 missing values \(rows \[2\]\)"),
])
def test_known_sd_bad_values(tiny, value, match):
    bad = tiny.copy()
    bad.loc[2, "s"] = value
    with pytest.raises(bl.SpecificationError, match=match):
        bl.KnownSD("s").resolve(bad)


def test_known_sd_array_checks(tiny):
    with pytest.raises(bl.SpecificationError, match="3 SDs given for 5 rows"):
        bl.KnownSD([1, 2, 3]).resolve(tiny)
    with pytest.raises(bl.SpecificationError, match="non-positive SD 0.0"):
        bl.KnownSD([1, 0, 3]).resolve(n=3)
    with pytest.raises(bl.SpecificationError, match="column name or an array of numbers"):
        bl.KnownSD(["a", "b"])


@pytest.mark.parametrize("structure", [bl.KnownSD("week"), bl.HeteroSD("week"), bl.AR1("week", "subj"),
                                       bl.AR1("time", "week"), bl.CompoundSymmetry("week"),
                                       bl.Unstructured("week", "subj")])
def test_missing_column(tiny, structure):
    with pytest.raises(bl.SpecificationError, match=r"column 'week' is not in the data; columns are \['subj'"):
        structure.resolve(tiny)


def test_time_repeats_within_group(tiny):
    with pytest.raises(bl.SpecificationError, match=r"time 1 repeats within level 'a' of 'subj' \(rows \[0, 2\]\)"):
        bl.AR1("time", "subj").resolve(tiny.assign(time=[1, 1, 1, 3, 4]))
    with pytest.raises(bl.SpecificationError, match="time 3 repeats within level 'b'"):
        bl.Unstructured("time", "subj").resolve(tiny.assign(time=[1, 3, 2, 3, 4]))


@pytest.mark.parametrize("time, match", [
    ([1, 1.5, 2, 3, 4], r"must hold integers; value 1\.5 \(rows \[1\]\)"),
    (["x", "y", "z", "w", "v"], r"must hold integers or be an ordered Categorical; it has dtype (object|str) \(e.g. 'x'\)"),
    (pd.Categorical(list("abcde")), "is an unordered Categorical"),
    ([1, 2, np.nan, 3, 4], r"column 'time' has 1 missing values \(rows \[2\]\)"),
])
def test_time_not_integer_or_ordered(tiny, time, match):
    with pytest.raises(bl.SpecificationError, match=match):
        bl.AR1("time", "subj").resolve(tiny.assign(time=time))


def test_level_with_one_row(tiny):
    one = tiny.assign(sex=["F", "F", "F", "M", "F"])
    with pytest.raises(bl.SpecificationError, match=r"level\(s\) \['M'\] of 'sex' have one row"):
        bl.HeteroSD("sex").resolve(one)
    with pytest.raises(bl.SpecificationError, match=r"level\(s\) \['M'\] of 'sex' have one row"):
        bl.CompoundSymmetry("subj", sd_by="sex").resolve(one)
    with pytest.raises(bl.SpecificationError, match=r"time\(s\) \['2', '3', '4'\] of 'time' have one row"):
        bl.Unstructured("time", "subj").resolve(tiny)


def test_unstructured_more_than_eight_times():
    df = pd.DataFrame({"g": np.repeat(["a", "b"], 9), "t": np.tile(np.arange(9), 2)})
    with pytest.raises(bl.SpecificationError, match="9 distinct times in 't'.*at most 8"):
        bl.Unstructured("t", "g").resolve(df)


def test_reml_rejects_other_residual_and_keeps_data(orth):
    with pytest.raises(bl.SpecificationError, match="residual= takes one of"):
        bl.reml("distance ~ age", orth, residual="AR1")
    before = orth.copy()
    bl.reml("distance ~ age * Sex", orth, residual=bl.CompoundSymmetry("Subject"))
    pd.testing.assert_frame_equal(orth, before)


# ------------------------------------------------------------------- against nlme

NAMES = {"(Intercept)": "Intercept", "SexMale": "Sex[Male]", "age:SexMale": "age:Sex[Male]"}


def _check(r, key, random=None):
    ref = REF[key]
    fe = r.fixed_effects
    for name, value in ref["fixed"].items():
        assert fe.loc[NAMES.get(name, name), "estimate"] == pytest.approx(value, rel=REL), name
        assert fe.loc[NAMES.get(name, name), "se"] == pytest.approx(ref["se"][name], rel=REL), name
    sd = r.variance_components["sd"]
    labels = list(ref["residual_sd"])
    expect = {"Residual": ref["sigma"]} if labels == ["Residual"] else \
        {f"Residual[{k}]": v for k, v in ref["residual_sd"].items()}
    if random:
        expect[random] = ref["sd_intercept"]
    assert sorted(sd.index) == sorted(expect)
    for name, value in expect.items():
        assert sd[name] == pytest.approx(value, rel=REL), name
    np.testing.assert_allclose(r.residual_structure["estimate"], ref.get("cor", []), rtol=REL)
    assert r.loglik == pytest.approx(ref["loglik"], rel=REL)
    assert r.converged


def test_loglik_convention_matches_nlme_on_sigma2_identity(orth):
    r = bl.reml("distance ~ age + Sex + (1|Subject)", orth)
    assert r.loglik == pytest.approx(REF["baseline"]["loglik"], rel=1e-7)
    _check(r, "baseline", random="1|Subject")


def test_varident_with_random_intercept(orth):
    r = bl.reml("distance ~ age + Sex + (1|Subject)", orth, residual=bl.HeteroSD("Sex"))
    _check(r, "varident", random="1|Subject")
    assert r.residual_structure.empty


def test_ar1_with_random_intercept(sim):
    r = bl.reml("y ~ x + (1|subject)", sim, residual=bl.AR1("time", "subject"))
    _check(r, "ar1", random="1|subject")
    assert list(r.residual_structure.index) == ["rho"]


def test_ar1_gls_without_random_term(sim):
    _check(bl.reml("y ~ x", sim, residual=bl.AR1("time", "subject")), "ar1_gls")


def test_compound_symmetry(orth):
    _check(bl.reml("distance ~ age * Sex", orth, residual=bl.CompoundSymmetry("Subject")), "cs")


def test_compound_symmetry_with_sd_by(orth):
    r = bl.reml("distance ~ age * Sex", orth, residual=bl.CompoundSymmetry("Subject", sd_by="Sex"))
    _check(r, "cs_sdby")


def test_unstructured_with_varident(orth):
    r = bl.reml("distance ~ age * Sex", orth, residual=bl.Unstructured("occ", "Subject"))
    _check(r, "un")
    assert list(r.residual_structure.index)[:2] == ["corr(1,2)", "corr(1,3)"]
    # contrasts use Var(β̂) = σ̂²(X'Ṽ⁻¹X)⁻ of the fit
    c = r.contrast("Sex[Male]")
    assert c["estimate"].iloc[0] == pytest.approx(r.fixed_effects.loc["Sex[Male]", "estimate"])
    assert c["se"].iloc[0] == pytest.approx(REF["un"]["se"]["SexMale"], rel=REL)


def test_design_input_reads_its_data(orth):
    design = bl.design_from_formula("distance ~ age * Sex", orth)
    _check(bl.reml(design, residual=bl.CompoundSymmetry("Subject")), "cs")


# ------------------------------------------------------------------- known SDs


def test_eight_schools_known_sd():
    schools = pd.read_csv(DATA / "eight_schools.csv")
    r = bl.reml("y ~ 1 + (1|school)", schools, residual=bl.KnownSD("sigma"))
    assert list(r.variance_components.index) == ["1|school"]  # no residual SD estimated
    assert r.variance_components.loc["1|school", "sd"] < 1e-2  # τ̂ on the boundary, as in nlme
    assert r.fixed_effects.loc["Intercept", "estimate"] == pytest.approx(
        REF["schools"]["fixed"]["(Intercept)"], rel=1e-6)
    w = 1 / schools["sigma"] ** 2
    assert r.fixed_effects.loc["Intercept", "se"] == pytest.approx(np.sqrt(1 / w.sum()), rel=1e-4)


def _dense_reml(y, X, s, tau):
    V = np.diag(s**2) + tau**2 * np.eye(len(y))
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    r = y - X @ np.linalg.solve(XVX, X.T @ Vi @ y)
    n, p = X.shape
    return -0.5 * ((n - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1]
                   + r @ Vi @ r)


def test_known_sd_meta_regression_matches_dense_reml():
    meta = pd.read_csv(DATA / "meta_sim.csv")
    r = bl.reml("y ~ x + (1|study)", meta, residual=bl.KnownSD("se"))
    y, X, s = meta["y"].to_numpy(), np.column_stack([np.ones(len(meta)), meta["x"]]), meta["se"].to_numpy()
    best = optimize.minimize_scalar(lambda t: -_dense_reml(y, X, s, t), bounds=(0, 5), method="bounded",
                                    options={"xatol": 1e-10})
    assert r.variance_components.loc["1|study", "sd"] == pytest.approx(best.x, rel=1e-4)
    assert r.loglik == pytest.approx(-best.fun, rel=1e-8)
    # nlme's fixed-σ REML maximizes another criterion: its τ̂ is worse under this one
    assert r.loglik > _dense_reml(y, X, s, REF["meta"]["sd_intercept"]) + 1e-4
    # the matrix path with an array of SDs gives the same fit
    m = bl.reml((y, X, {"study": np.eye(len(y))}), x_names=["Intercept", "x"], residual=bl.KnownSD(s))
    assert m.loglik == pytest.approx(r.loglik, rel=1e-8)
    np.testing.assert_allclose(m.beta, r.beta, rtol=1e-5)


# ------------------------------------------------------------------- model cards


def test_card_residual_table_is_read_and_checked(tmp_path):
    """A [residual] table names the structure and its arguments; every key is checked."""
    from bayes_lmm.cards import load_card

    card = tmp_path / "c.toml"
    head = '[model]\ndata = "d.csv"\nformula = "y ~ x + (1|s)"\n\n[residual]\n'
    card.write_text(head + 'structure = "AR1"\ntime = "t"\ngroup = "s"\n')
    assert load_card(card).residual == bl.AR1("t", "s")
    for body, match in [('structure = "AR2"\n', "must be one of"),
                        ('structure = "AR1"\ntime = "t"\ngroup = "s"\nlag = "2"\n', r"unknown \['lag'\]"),
                        ('structure = "HeteroSD"\nby = 3\n', "must be a column name"),
                        ('structure = "AR1"\ntime = "t"\n', "AR1")]:
        card.write_text(head + body)
        with pytest.raises(bl.SpecificationError, match=match):
            load_card(card)


# ------------------------------------------------------------------- the criterion itself


def _dense_criterion(prob, x):
    """−2 l_R from the dense V = ZΛΛ'Z' + R̃ (σ² profiled), written out from the notes' formulas."""
    theta, ratios, z = prob.split(x)
    R = prob.res.matrix(prob.sds(ratios), prob.corr(z))
    lam = prob.base.lam(theta)
    Z, X, y = prob.base.design.Z, prob.base.X, prob.base.y
    V = R + Z @ lam @ lam.T @ Z.T
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    r = y - X @ np.linalg.solve(XVX, X.T @ Vi @ y)
    n, p = X.shape
    rss = r @ Vi @ r
    return np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + (n - p) * (1 + np.log(2 * np.pi * rss / (n - p)))


@pytest.mark.parametrize("formula, structure, nested", [
    ("distance ~ age + (age|Subject)", bl.AR1("occ", "Subject", sd_by="Sex"), True),
    ("distance ~ age * Sex + (1|Subject)", bl.Unstructured("occ", "Subject"), True),
    ("distance ~ age + (1|Subject) + (1|age)", bl.CompoundSymmetry("Subject"), False),
    ("distance ~ age + (1|Subject)", bl.HeteroSD("Sex"), False),
    # Sex is constant within each subject but shared by subjects: V is not block-diagonal
    ("distance ~ age + (1|Sex)", bl.CompoundSymmetry("Subject"), False),
])
def test_criterion_equals_dense_formula(orth, formula, structure, nested):
    from bayes_lmm.reml_residual import _ResidualProblem

    design = bl.design_from_formula(formula, orth)
    prob = _ResidualProblem(design, structure.resolve(orth))
    assert prob.nested == nested  # V block-diagonal by group, or R whitened and Z kept whole
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.uniform(0.1, 0.8, prob.size)
        assert prob.criterion(x) == pytest.approx(_dense_criterion(prob, x), rel=1e-10)
        if nested:
            prob.nested = False
            assert prob.criterion(x) == pytest.approx(_dense_criterion(prob, x), rel=1e-10)
            prob.nested = True


def test_residual_columns_need_matching_data(orth):
    y = orth["distance"].to_numpy()
    X = np.column_stack([np.ones(len(y)), orth["age"]])
    with pytest.raises(bl.SpecificationError, match="names column 'Sex': it needs the data frame"):
        bl.reml((y, X, {}), residual=bl.HeteroSD("Sex"))
    with pytest.raises(bl.SpecificationError, match="the data have 10 rows; the design has 108"):
        bl.reml((y, X, {}), orth.head(10), residual=bl.HeteroSD("Sex"))
    # with the frame alongside the matrices, the columns are read from it (GLS with varIdent)
    r = bl.reml((y, X, {}), orth, x_names=["Intercept", "age"], residual=bl.HeteroSD("Sex"))
    assert list(r.variance_components.index) == ["Residual[Female]", "Residual[Male]"]
    same = bl.reml("distance ~ age", orth, residual=bl.HeteroSD("Sex"))
    np.testing.assert_allclose(r.variance_components["sd"], same.variance_components["sd"], rtol=1e-6)
    assert r.loglik == pytest.approx(same.loglik, rel=1e-10)


@pytest.mark.parametrize("structure, rho", [(bl.AR1("t", "g"), -0.4), (bl.CompoundSymmetry("g"), -0.2)])
def test_negative_correlation_is_recovered(structure, rho):
    # 300 groups of 5 times: ρ̂ within 3 of its standard errors (about 0.025) of the truth
    rng = np.random.default_rng(11)
    n_g, k = 300, 5
    frame = pd.DataFrame({"g": np.repeat(np.arange(n_g), k), "t": np.tile(np.arange(k), n_g)})
    block = structure.resolve(frame).block(0, [1.5], rho)
    e = rng.multivariate_normal(np.zeros(k), block, size=n_g).ravel()
    df = frame.assign(x=rng.normal(size=n_g * k))
    df["y"] = 1.0 + 2.0 * df["x"] + e
    r = bl.reml("y ~ x", df, residual=structure)
    assert r.residual_structure.loc["rho", "estimate"] == pytest.approx(rho, abs=0.075)
    assert r.variance_components.loc["Residual", "sd"] == pytest.approx(1.5, rel=0.06)
    assert r.fixed_effects.loc["x", "estimate"] == pytest.approx(2.0, abs=4 * r.fixed_effects.loc["x", "se"])
