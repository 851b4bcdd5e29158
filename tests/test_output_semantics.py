"""What the tables and messages mean (issue 18): fractions and ICCs with random slopes, the
symbolic Var(y), random_effects(group=), and the diagnostics' wording and flagged rows.

Most tests build a Fit around synthetic posterior draws (no sampling): the quantities under
test are functions of the draws and the design, so known draws give known answers.
"""

import logging
import re
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import DATA

import bayes_lmm as bl
from bayes_lmm import variance
from bayes_lmm.cards import load_card
from bayes_lmm.diagnostics import single_observation_components
from bayes_lmm.graph import BETA_DIM, COMPONENT_DIM, CORR_DIM, U_DIM, coords_for, correlation_labels
from bayes_lmm.results import Fit

MODELS = Path(__file__).resolve().parent.parent / "models"


def synthetic_fit(design, *, sigma, corr=None, beta=None, u=None, chains=2):
    """A Fit whose posterior holds the given draws (S rows each), split into ``chains``."""
    S = sigma.shape[0]
    rng = np.random.default_rng(0)
    beta = rng.normal(size=(S, design.p)) if beta is None else beta
    u = rng.normal(size=(S, len(design.u_labels))) if u is None else u
    post = {"beta": beta, "sigma": sigma, "u": u}
    dims = {"beta": [BETA_DIM], "sigma": [COMPONENT_DIM], "u": [U_DIM]}
    if corr is not None:
        post["correlation"], dims["correlation"] = corr, [CORR_DIM]
    post = {k: v.reshape(chains, S // chains, *v.shape[1:]) for k, v in post.items()}
    coords = {k: v for k, v in coords_for(design).items() if k in (BETA_DIM, COMPONENT_DIM, U_DIM, CORR_DIM)}
    idata = az.from_dict(posterior=post, dims=dims, coords=coords)
    return Fit(spec=None, options=None, design=design, prior_set=None, idata=idata,
               parameterization="noncentered", sampler="synthetic", target_accept=0.8)


@pytest.fixture(scope="module")
def sleep_data():
    return pd.read_csv(DATA / "sleepstudy.csv")


def slope_draws(S=400, seed=1):
    rng = np.random.default_rng(seed)
    sigma = np.column_stack([rng.uniform(15, 35, S), rng.uniform(3, 9, S), rng.uniform(20, 30, S)])
    corr = rng.uniform(-0.8, 0.8, (S, 1))
    return sigma, corr


# --------------------------------------------------------------------------- item 3: fractions


def test_fractions_do_not_depend_on_the_covariates_units(sleep_data):
    days = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleep_data)
    weeks = bl.design_from_formula("Reaction ~ Weeks + (Weeks|Subject)", sleep_data.assign(Weeks=sleep_data["Days"] / 7))
    sigma, corr = slope_draws()
    in_weeks = sigma * np.array([1.0, 7.0, 1.0])  # σ of a slope per week is 7 × that per day
    a = synthetic_fit(days, sigma=sigma, corr=corr).variance_components()
    b = synthetic_fit(weeks, sigma=in_weeks, corr=corr).variance_components()
    np.testing.assert_allclose(a["fraction_mean"].to_numpy(), b["fraction_mean"].to_numpy())
    assert a["fraction_mean"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(variance.fraction_draws(days, sigma, corr).sum(axis=1), 1.0)


def test_fractions_weight_each_term_by_its_share_of_var_y(sleep_data):
    design = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleep_data)
    sigma, corr = slope_draws(S=50)
    x = sleep_data["Days"].to_numpy(float)
    s0, s1, se, rho = sigma[:, 0], sigma[:, 1], sigma[:, 2], corr[:, 0]
    cov = rho * s0 * s1 * x.mean()  # half of the 2ρσ0σ1·mean(x) cross term to each coefficient
    parts = np.column_stack([s0**2 + cov, s1**2 * (x**2).mean() + cov, se**2])
    # the denominator is the mean of the diagonal of the numeric Var(y) = ZGZ' + σ_e² I
    total = np.array([np.trace(v) / design.n for v in
                      variance.var_y_draws(design, sigma, corr, list(range(design.n)))])
    np.testing.assert_allclose(parts.sum(axis=1), total)
    np.testing.assert_allclose(variance.fraction_draws(design, sigma, corr), parts / total[:, None])


def test_fraction_in_the_real_sleepstudy_fit_counts_the_slope_variance(sleep_fit, sleepstudy):
    vc = sleep_fit.variance_components()
    s = sleep_fit.draws("sigma")
    rho = sleep_fit.draws("correlation")[:, 0]
    x = sleepstudy["Days"].to_numpy(float)
    slope = s[:, 1] ** 2 * (x**2).mean() + rho * s[:, 0] * s[:, 1] * x.mean()
    total = s[:, 0] ** 2 + s[:, 1] ** 2 * (x**2).mean() + 2 * rho * s[:, 0] * s[:, 1] * x.mean() + s[:, 2] ** 2
    assert vc.loc["Days|Subject", "fraction_mean"] == pytest.approx((slope / total).mean())
    assert vc.loc["Days|Subject", "fraction_mean"] > 0.2  # was 0.029 with Days in days


def test_intercept_fractions_unchanged(litter_fit):
    vc = litter_fit.variance_components()
    s2 = litter_fit.draws("sigma") ** 2
    np.testing.assert_allclose(vc["fraction_mean"], (s2 / s2.sum(axis=1, keepdims=True)).mean(axis=0))


# --------------------------------------------------------------------------- item 4: symbolic Var(y)


def card_design(path):
    card = load_card(path)
    data = card.load_data()
    if card.formula is not None:
        return bl.design_from_formula(card.formula, data, coding=card.coding, factors=card.factors)
    y, X, Z = card.matrices_from(data)
    return bl.design_from_matrices(y, X, Z)


def evaluate_symbolic(entry, design, sd, corr, sigma_e):
    """The number a symbolic Var(y) entry stands for, given each component's SD and ρ."""
    values = {"σ²_e": sigma_e**2}
    at, c_at = 0, 0
    for blk in design.blocks:
        k = blk.n_coefs
        for c, comp in enumerate(blk.components):
            values[f"σ²_{comp[2:] if comp.startswith('1|') else comp}"] = sd[at + c] ** 2
        if blk.correlated:
            for c1 in range(k):
                for c2 in range(c1 + 1, k):
                    values[f"σ_({blk.coef_names[c1]},{blk.coef_names[c2]})|{blk.group}"] = \
                        corr[c_at] * sd[at + c1] * sd[at + c2]
                    c_at += 1
        at += k
    if entry == "0":
        return 0.0
    total = 0.0
    for term in entry.split(" + "):
        coef, _, symbol = term.rpartition("·")
        total += (float(coef) if coef else 1.0) * values[symbol]
    return total


CARDS = sorted(MODELS.glob("*.toml"))


def test_every_shipped_card_is_checked():
    assert {p.stem for p in CARDS} >= {"sleepstudy", "seedling", "seedling_matrices", "litter", "dyestuff"}


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.stem)
def test_symbolic_var_y_equals_numeric_var_y(card):
    design = card_design(card)
    n = design.n
    rows = sorted(set(range(min(n, 12))) | {n // 3, n // 2, n - 2, n - 1})
    table = design.var_y_structure(rows=rows)
    rng = np.random.default_rng(7)
    for _ in range(3):
        sd = rng.uniform(0.5, 3.0, len(design.components))
        m = len(correlation_labels(design))
        corr = rng.uniform(-0.7, 0.7, m) if m else None
        sigma_e = rng.uniform(0.5, 2.0)
        numeric = variance.var_y_draws(design, np.append(sd, sigma_e)[None],
                                       None if corr is None else corr[None], rows)[0]
        symbolic = np.array([[evaluate_symbolic(table.iloc[a, b], design, sd, corr, sigma_e)
                              for b in range(len(rows))] for a in range(len(rows))])
        np.testing.assert_allclose(symbolic, numeric, rtol=1e-12, atol=1e-12)


def test_sleepstudy_var_y_structure_is_symmetric(sleep_data):
    design = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleep_data)
    table = design.var_y_structure(rows=[0, 1, 2])
    assert table.iloc[0, 1] == table.iloc[1, 0] == "σ²_Subject + σ_(1,Days)|Subject"
    assert (table.to_numpy() == table.to_numpy().T).all()


# --------------------------------------------------------------------------- item 5: ICC


def test_icc_of_random_slopes_at_a_stated_covariate_value(sleep_data):
    design = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleep_data)
    sigma, corr = slope_draws()
    fit = synthetic_fit(design, sigma=sigma, corr=corr)
    s0, s1, se, rho = sigma[:, 0], sigma[:, 1], sigma[:, 2], corr[:, 0]
    at0 = fit.icc()
    assert list(at0.index) == ["1|Subject"] and at0.loc["1|Subject", "at"] == "Days=0"
    assert at0.loc["1|Subject", "mean"] == pytest.approx((s0**2 / (s0**2 + se**2)).mean())
    at5 = fit.icc(at={"Days": 5})
    shared = s0**2 + 2 * rho * s0 * s1 * 5 + s1**2 * 25  # Var(u0 + 5·u1)
    assert at5.loc["1|Subject", "mean"] == pytest.approx((shared / (shared + se**2)).mean())
    assert at5.loc["1|Subject", "at"] == "Days=5"


def test_icc_at_rejects_what_no_random_term_uses(sleep_data, dyestuff_fit):
    design = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleep_data)
    sigma, corr = slope_draws(S=20)
    fit = synthetic_fit(design, sigma=sigma, corr=corr)
    with pytest.raises(bl.SpecificationError, match="'Weeks'.*'Days'"):
        fit.icc(at={"Weeks": 1})
    with pytest.raises(bl.SpecificationError, match="'Days'.*number"):
        fit.icc(at={"Days": "nine"})
    with pytest.raises(bl.SpecificationError, match="no random slopes|has none"):
        dyestuff_fit.icc(at={"Days": 1})


def test_icc_of_the_real_slope_fit_and_intercept_tables_unchanged(sleep_fit, dyestuff_fit):
    icc = sleep_fit.icc(at={"Days": 9})
    assert 0 < icc.loc["1|Subject", "mean"] < 1 and icc.loc["1|Subject", "at"] == "Days=9"
    assert list(dyestuff_fit.icc().columns) == ["mean", "median", "sd", "lower", "upper"]


# --------------------------------------------------------------------------- item 14: random_effects


def test_random_effects_of_one_factor_and_some_levels(litter):
    design = bl.design_from_formula("response ~ treatment + (1|litter/animal)", litter, coding="full",
                                    factors=["treatment"])
    S = 40
    rng = np.random.default_rng(2)
    fit = synthetic_fit(design, sigma=rng.uniform(0.5, 2, (S, 3)))
    everything = fit.random_effects()
    litters = fit.random_effects(group="litter")
    assert list(litters.index) == [lab for lab in everything.index if lab.startswith("litter[")]
    pd.testing.assert_frame_equal(litters, everything.loc[litters.index])
    two = fit.random_effects(group="litter", levels=[2, "3"])
    assert list(two.index) == ["litter[2]", "litter[3]"]
    animals = fit.random_effects(group="litter:animal")
    assert len(animals) == design.block("litter:animal").n_levels
    with pytest.raises(bl.SpecificationError, match="'pot'.*'litter'"):
        fit.random_effects(group="pot")
    with pytest.raises(bl.SpecificationError, match=r"'litter'.*\['99'\]"):
        fit.random_effects(group="litter", levels=[99])


# --------------------------------------------------------------------------- items 12, 13: diagnostics


def diagnostics(**kw):
    base = dict(divergences=0, draws=2000, max_rhat=1.0, min_ess_bulk=1500.0, min_ess_tail=1500.0,
                chains=2, target_accept=0.8)
    return bl.Diagnostics(**{**base, **kw})


def test_rhat_and_ess_messages_agree_with_their_bounds():
    assert diagnostics(max_rhat=1.0104).problems() == []  # prints as 1.010: not above 1.01
    [line] = diagnostics(max_rhat=1.0106).problems()
    assert "1.011 (> 1.01)" in line
    assert diagnostics(min_ess_bulk=199.6).problems() == []  # prints as 200 = 100 per chain × 2
    assert "199 (<" in diagnostics(min_ess_bulk=199.4).problems()[0]
    for value in np.linspace(1.0, 1.02, 201):
        for line in diagnostics(max_rhat=value).problems():
            shown = float(re.search(r"R-hat is ([0-9.]+)", line).group(1))
            assert shown > 1.01


def one_row_per_plot(seed=3, n=40):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"plot": [f"p{i}" for i in range(n)], "x": rng.normal(size=n),
                         "y": rng.normal(size=n)})


def test_one_observation_per_level_is_named_as_weak_identification():
    design = bl.design_from_formula("y ~ x + (1|plot)", one_row_per_plot())
    assert single_observation_components(design) == ("1|plot",)
    S = 200
    rng = np.random.default_rng(4)
    fit = synthetic_fit(design, sigma=rng.uniform(0.2, 1.0, (S, 2)), beta=rng.normal(0, 0.01, (S, 2)),
                        u=rng.normal(0, 0.01, (S, design.n)))
    problems = fit.diagnostics().problems()
    assert any("'plot' has one observation per level" in p and "σ_plot and σ_e are only weakly identified" in p
               for p in problems)
    bad = diagnostics(max_rhat=1.08, weakly_identified=("1|plot",)).problems()
    rhat = [p for p in bad if "R-hat" in p]
    assert rhat and "weakly identified" in rhat[0] and "Run more tune/draws" not in rhat[0]
    # two rows per level: identified, nothing said
    twice = bl.design_from_formula("y ~ x + (1|plot)", one_row_per_plot().assign(plot=[f"p{i // 2}" for i in range(40)]))
    assert single_observation_components(twice) == ()


def outlier_fit(row=7, shift=10.0, S=200, seed=5):
    rng = np.random.default_rng(seed)
    n = 60
    data = pd.DataFrame({"g": [f"g{i % 6}" for i in range(n)], "x": rng.normal(size=n)})
    data["y"] = 1.0 + 0.5 * data["x"] + rng.normal(size=n)
    data.loc[row, "y"] += shift
    design = bl.design_from_formula("y ~ x + (1|g)", data)
    beta = np.array([1.0, 0.5]) + rng.normal(0, 0.02, (S, 2))
    sigma = np.column_stack([rng.uniform(0.05, 0.2, S), np.exp(rng.normal(0.0, 0.3, S))])
    return synthetic_fit(design, sigma=sigma, beta=beta, u=rng.normal(0, 0.01, (S, 6))), data


def test_summary_names_the_outlying_rows():
    fit, data = outlier_fit()
    notes = fit.diagnostics().notes()
    assert len(notes) == 1 and "row 7 (y = " in notes[0] and f"{data.loc[7, 'y']:g}" in notes[0]
    assert "NOTE: 1 observation has |y − posterior mean of Xβ + Zu| > 4 σ_e" in fit.summary()
    # an outlier is worth a look, not a convergence problem: ok does not depend on it
    assert not any("row 7" in p for p in fit.diagnostics().problems())
    clean, _ = outlier_fit(shift=0.0)
    assert clean.diagnostics().notes() == [] and "NOTE" not in clean.summary()


def test_loo_warning_names_the_rows_with_high_pareto_k():
    fit, data = outlier_fit(shift=12.0)
    with pytest.warns(UserWarning, match=r"Pareto k > 0\.7: row 7 \(y = .*k = ") as record:
        fit.loo()
    assert "few observations each" not in str(record[0].message)
    assert "Pareto k" in fit.summary() and "row 7" in fit.summary()


@pytest.mark.slow
def test_pymc_sampler_without_progressbar_logs_nothing(caplog):
    data = one_row_per_plot(n=24).assign(plot=[f"p{i % 4}" for i in range(24)])
    logger = logging.getLogger("pymc")
    caplog.set_level(logging.INFO, logger="pymc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bl.fit("y ~ x + (1|plot)", data, sampler="pymc", draws=100, tune=100, chains=2,
               progressbar=False, random_seed=1)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("pymc")] == []
    assert logger.level == logging.INFO  # restored after the call
