"""Residual structures in sampled fits: posteriors against nlme's REML on real and simulated
data (tests/data, see test_residual.py), recovery of true values, the eight schools against a
long reference run of the same model written directly in PyMC
(benchmarks/eight_schools_reference.py → tests/data/eight_schools_reference.json), and what the
fit's tables, predictions, LOO and saved files do with R."""

import json
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl

DATA = Path(__file__).resolve().parent / "data"
pytestmark = [pytest.mark.filterwarnings("ignore:column '(age|occ|time)' holds only"),
              pytest.mark.filterwarnings("ignore:.*no precompiled kernel")]

#: the four structures of issue 17's REML comparison (nlme fits in nlme_residual.json)
CASES = {
    "varident": ("distance ~ age + Sex + (1|Subject)", "orthodont", bl.HeteroSD("Sex")),
    "ar1": ("y ~ x + (1|subject)", "ar1_sim", bl.AR1("time", "subject")),
    "cs": ("distance ~ age * Sex", "orthodont", bl.CompoundSymmetry("Subject")),
    "un": ("distance ~ age * Sex", "orthodont", bl.Unstructured("occ", "Subject")),
}
TRUTH = {
    "varident": {"beta": {"Intercept": 16.0, "age": 0.6, "Sex[Male]": 2.0}, "sd": {"Subject": 1.8},
                 "Residual": {"Female": 0.8, "Male": 1.8}},
    "ar1": {"beta": {"Intercept": 1.7, "x": 0.4}, "sd": {"subject": 0.5}, "Residual": 1.1,
            "residual_correlation": 0.7},
    "cs": {"beta": {"Intercept": 17.0, "age": 0.5, "Sex[Male]": -1.0, "age:Sex[Male]": 0.3}, "Residual": 2.3,
           "residual_correlation": 0.6},
    "un": {"beta": {"Intercept": 17.0, "age": 0.5, "Sex[Male]": -1.5, "age:Sex[Male]": 0.35},
           "Residual": {"1": 2.3, "2": 2.0, "3": 2.5, "4": 2.2},
           "residual_correlation": {"corr(1,2)": 0.55, "corr(1,3)": 0.65, "corr(1,4)": 0.5,
                                    "corr(2,3)": 0.6, "corr(2,4)": 0.7, "corr(3,4)": 0.75}},
}


def _data(name):
    return pd.read_csv(DATA / f"{name}.csv")


@pytest.fixture(scope="module")
def fits():
    """Each structure fitted at the library's defaults (4 chains × 1000 + 1000)."""
    out = {}
    for key, (formula, data, residual) in CASES.items():
        out[key] = bl.fit(formula, _data(data), residual=residual, random_seed=17, progressbar=False)
    return out


@pytest.mark.parametrize("key", CASES)
def test_posterior_agrees_with_reml(fits, key):
    formula, data, residual = CASES[key]
    fit, reml = fits[key], bl.reml(formula, _data(data), residual=residual)
    d = fit.diagnostics()
    # AR(1)'s ρ trades off against the random intercept's σ (both correlate a subject's rows):
    # the latent form mixes slowly there (R-hat 1.026, bulk ESS 323 at defaults; centered is worse)
    assert d.divergences <= 2 and d.max_rhat <= (1.03 if key == "ar1" else 1.02), d
    fe = fit.fixed_effects()
    for name, row in reml.fixed_effects.iterrows():
        assert abs(fe.loc[name, "median"] - row["estimate"]) <= 0.5 * fe.loc[name, "sd"], name
    vc = fit.variance_components()
    assert list(vc.index) == list(reml.variance_components.index)
    for name, row in reml.variance_components.iterrows():
        assert vc.loc[name, "sd_lower"] <= row["sd"] <= vc.loc[name, "sd_upper"], name
    if residual.__class__ is not bl.HeteroSD:
        rs = fit.residual_structure()
        assert list(rs.index) == list(reml.residual_structure.index)
        for name, row in reml.residual_structure.iterrows():
            assert rs.loc[name, "lower"] <= row["estimate"] <= rs.loc[name, "upper"], name


@pytest.mark.parametrize("key", CASES)
def test_recovery_on_simulated_data(key):
    formula, data, residual = CASES[key]
    truth = TRUTH[key]
    sim = bl.simulate(formula, truth, data=_data(data), residual=residual, random_seed=5)
    fit = bl.fit(formula, sim, residual=residual, random_seed=3, draws=600, tune=600, progressbar=False)
    fe, vc = fit.fixed_effects(), fit.variance_components()
    for name, value in truth["beta"].items():
        assert fe.loc[name, "lower"] <= value <= fe.loc[name, "upper"], name
    sds = dict(truth.get("sd", {}))
    sds = {f"1|{k}": v for k, v in sds.items()}
    given = truth["Residual"]
    labels = fit.design.residual.sd_labels
    sds.update({lab: given for lab in labels} if not isinstance(given, dict)
               else {f"Residual[{k}]": v for k, v in given.items()})
    for name, value in sds.items():
        assert vc.loc[name, "sd_lower"] <= value <= vc.loc[name, "sd_upper"], name
    if "residual_correlation" in truth:
        rs, rho = fit.residual_structure(), truth["residual_correlation"]
        for name, value in (rho.items() if isinstance(rho, dict) else [("rho", rho)]):
            assert rs.loc[name, "lower"] <= value <= rs.loc[name, "upper"], name


def test_eight_schools_matches_the_long_reference_run():
    ref = json.loads((DATA / "eight_schools_reference.json").read_text())["parameters"]
    schools = _data("eight_schools")
    fit = bl.fit("y ~ 1 + (1|school)", schools, residual=bl.KnownSD("sigma"), random_seed=8, progressbar=False,
                 priors={"Intercept": bl.Normal(0.0, 5.0), "1|school": bl.HalfCauchy(5.0)})
    assert fit.diagnostics().divergences == 0
    post = fit.idata.posterior
    mu = post["beta"].sel(coef="Intercept").to_numpy()
    tau = post["sigma"].sel(component="1|school").to_numpy()
    theta = mu[..., None] + post["u"].to_numpy()
    ours = {"mu": mu, "tau": tau} | {f"theta[{s}]": theta[..., j] for j, s in enumerate(schools.school)}
    for name, draws in ours.items():
        want = ref[name]
        mcse_mean = draws.std() / np.sqrt(az.ess(draws, method="mean"))
        sq = (draws - draws.mean()) ** 2
        mcse_sd = sq.std() / np.sqrt(az.ess(sq, method="mean")) / (2 * draws.std())
        assert abs(draws.mean() - want["mean"]) <= 3 * np.hypot(mcse_mean, want["mcse_mean"]), name
        assert abs(draws.std() - want["sd"]) <= 3 * np.hypot(mcse_sd, want["mcse_sd"]), name
    assert list(fit.variance_components().index) == ["1|school"]  # nothing estimated for R


def test_tables_predictions_loo_and_saving_honour_R(fits, tmp_path):
    het, ar1 = fits["varident"], fits["ar1"]
    # prediction intervals follow the stratum's SD: Male residual SD ≈ 2.2 × Female's
    new = pd.DataFrame({"Subject": ["M01", "F01"], "Sex": ["Male", "Female"], "age": [10, 10]})
    width = het.predict(new, kind="response", random_seed=1).eval("upper - lower")
    mean_only = het.predict(new, kind="mean", random_seed=1).eval("upper - lower")
    assert width.iloc[0] - mean_only.iloc[0] > width.iloc[1] - mean_only.iloc[1]
    # Var(y) carries R: within a subject, lag-1 covariance σ²_subject + σ²_e·ρ
    rows = [0, 1]
    sim = _data("ar1_sim")
    assert sim.subject[0] == sim.subject[1] and abs(sim.time[1] - sim.time[0]) == 1
    post = ar1.idata.posterior
    s = post["sigma"].to_numpy().reshape(-1, 2)
    rho = post["residual_correlation"].to_numpy().reshape(-1)
    assert ar1.var_y(rows).mean.iloc[0, 1] == pytest.approx(np.mean(s[:, 0] ** 2 + s[:, 1] ** 2 * rho), rel=1e-9)
    assert ar1.design.var_y_structure(rows).iloc[0, 1] == "σ²_subject + σ²_e·ρ"
    # LOO over the leave-one-out conditionals; compare ranks AR(1) above σ²I on AR(1) data
    iid = bl.fit("y ~ x + (1|subject)", sim, random_seed=17, progressbar=False)
    table = bl.compare({"ar1": ar1, "iid": iid})
    assert table.index[0] == "ar1" and table.loc["iid", "elpd_diff"] > 2 * table.loc["iid", "dse"]
    assert ar1.idata.log_likelihood["y"].shape[-1] == len(sim)
    check = ar1.check(statistics=["sd"], random_seed=1)
    assert 0.05 < check["p_value"].iloc[0] < 0.95
    summary = ar1.summary()
    assert "residual R = AR1(time='time', group='subject'" in summary and "Residual correlation:" in summary
    # saved and loaded: the same structure and tables
    again = bl.load(ar1.save(tmp_path / "ar1.nc"))
    assert again.design.residual.kind == "ar1"
    pd.testing.assert_frame_equal(again.residual_structure(), ar1.residual_structure())
    pd.testing.assert_frame_equal(again.variance_components(), ar1.variance_components())
    assert again.loo().elpd_loo == pytest.approx(ar1.loo().elpd_loo)


def test_simulate_checks_residual_parameters():
    orth = _data("orthodont")
    f = "distance ~ age + Sex + (1|Subject)"
    base = {"beta": {"Intercept": 16.0}, "sd": {"Subject": 1.0}}
    with pytest.raises(bl.SpecificationError, match=r"missing \['Residual\[Male\]'\]"):
        bl.simulate(f, base | {"Residual": {"Female": 1.0}}, data=orth, residual=bl.HeteroSD("Sex"), random_seed=1)
    with pytest.raises(bl.SpecificationError, match="residual_correlation'] is required"):
        bl.simulate(f, base | {"Residual": 1.0}, data=orth, residual=bl.AR1("occ", "Subject"), random_seed=1)
    with pytest.raises(bl.SpecificationError, match=r"\(−1, 1\)"):
        bl.simulate(f, base | {"Residual": 1.0, "residual_correlation": 1.2}, data=orth,
                    residual=bl.AR1("occ", "Subject"), random_seed=1)
    sim = bl.simulate(f, base | {"Residual": {"Female": 0.1, "Male": 3.0}}, data=orth, residual=bl.HeteroSD("Sex"),
                      random_seed=1)
    spread = sim.groupby("Sex")["distance"].std()
    assert spread["Male"] > 2 * spread["Female"]


def test_card_cli_and_fit_many_carry_R(tmp_path, capsys):
    from distributed import Client, LocalCluster

    from bayes_lmm.cli import main

    sim = _data("ar1_sim")
    sim.to_csv(tmp_path / "d.csv", index=False)
    card = tmp_path / "ar1.toml"
    card.write_text('[model]\ndata = "d.csv"\nformula = "y ~ x + (1|subject)"\n\n'
                    '[residual]\nstructure = "AR1"\ntime = "time"\ngroup = "subject"\n\n'
                    '[sampler]\ndraws = 300\ntune = 300\nchains = 2\nseed = 1\n')
    out = tmp_path / "out"
    assert main(["fit", str(card), "--out", str(out), "--no-plots"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.5 < summary["residual_structure"]["rho"]["median"] < 0.9
    assert list(pd.read_csv(out / "residual_structure.csv")["parameter"]) == ["rho"]
    assert bl.load(out / "idata.nc").design.residual.kind == "ar1"
    assert main(["reml", str(card)]) == 0
    assert "Residual structure:" in capsys.readouterr().out
    # fit_many: every response gets the same R (one in-process worker shares the compiled graph)
    wide = pd.DataFrame({"a": sim.y, "b": sim.y * 2.0})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        many = bl.fit_many("~ x + (1|subject)", sim, wide, client=client, residual=bl.AR1("time", "subject"),
                           draws=300, tune=300, chains=2, random_seed=1, progressbar=False)
    vc = many.variance_components()
    assert set(vc["component"]) == {"1|subject", "Residual"}
    resid = vc.set_index(["response", "component"])["median"]
    assert resid[("b", "Residual")] == pytest.approx(2 * resid[("a", "Residual")], rel=0.15)
