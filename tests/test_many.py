"""fit_many on a 2-worker Dask LocalCluster: coverage of known variance fractions, failures kept apart."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl
from bayes_lmm.design import with_response
from bayes_lmm.many import _responses, variance_fraction_draws, variance_weights

N_RESPONSES = 20


def simulate_responses(n_responses: int, seed: int):
    """A nested design (8 batches × 4 plates × 5 rows) and responses with known fractions."""
    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(8), 20)
    plate = np.repeat(np.arange(32), 5)
    data = pd.DataFrame({"batch": [f"b{i}" for i in batch], "plate": [f"p{i % 4}" for i in plate],
                         "dose": rng.normal(size=160)})
    wide, truth = {}, []
    for r in range(n_responses):
        sd = rng.uniform(0.4, 1.5, size=3)
        y = (2.0 + 0.5 * data["dose"] + sd[0] * rng.normal(size=8)[batch]
             + sd[1] * rng.normal(size=32)[plate] + sd[2] * rng.normal(size=160))
        wide[f"gene{r}"] = y.to_numpy()
        truth.append(sd**2 / np.sum(sd**2))
    return data, pd.DataFrame(wide), np.array(truth)


@pytest.fixture(scope="module")
def many_run(tmp_path_factory):
    from distributed import Client, LocalCluster

    data, wide, truth = simulate_responses(N_RESPONSES, seed=11)
    wide["broken"] = wide["gene0"]
    wide.loc[[3, 7], "broken"] = np.nan
    data_before = data.copy()
    save_dir = tmp_path_factory.mktemp("fits")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster) as client:
        many = bl.fit_many("~ dose + (1|batch/plate)", data, wide, client=client, draws=400, tune=400,
                           chains=2, random_seed=5, save_dir=save_dir, progressbar=False)
    return many, data, data_before, truth


@pytest.mark.slow
def test_true_fractions_inside_intervals(many_run):
    many, _, _, truth = many_run
    frac = many.variance_fractions(prob=0.95)
    assert {"response", "component", "median", "lower", "upper"} <= set(frac.columns)
    assert list(frac["component"].unique()) == ["1|batch", "1|batch:plate", "Residual"]
    covered = np.zeros(3, dtype=int)
    for r in range(N_RESPONSES):
        rows = frac[frac["response"] == f"gene{r}"].set_index("component")
        inside = (rows["lower"].to_numpy() <= truth[r]) & (truth[r] <= rows["upper"].to_numpy())
        covered += inside
    assert np.all(covered >= 17), covered
    # fractions of each draw sum to 1 for random intercepts
    sums = frac.groupby("response")["mean"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-9)


@pytest.mark.slow
def test_failed_response_reported_and_others_kept(many_run):
    many, data, data_before, _ = many_run
    assert list(many.failures.columns) == ["response", "error"]
    assert many.failures["response"].tolist() == ["broken"]
    assert "missing or non-finite" in many.failures["error"].iloc[0]
    assert "'broken'" in many.failures["error"].iloc[0]
    assert many.responses == [f"gene{r}" for r in range(N_RESPONSES)]
    pd.testing.assert_frame_equal(data, data_before)


@pytest.mark.slow
def test_tables_diagnostics_contrasts_and_saved_fits(many_run):
    many, _, _, _ = many_run
    fe = many.fixed_effects()
    assert set(fe["coefficient"]) == {"Intercept", "dose"}
    dose = fe[fe["coefficient"] == "dose"]
    # true slope 0.5 in every response: inside the 95% interval for nearly all of them
    assert ((dose["lower"] < 0.5) & (0.5 < dose["upper"])).sum() >= 17
    diag = many.diagnostics()
    assert {"response", "divergences", "max_rhat", "min_ess_bulk", "ok", "parameterization"} <= set(diag.columns)
    assert len(diag) == N_RESPONSES and diag["max_rhat"].max() < 1.1
    con = many.contrast({"mean at dose 1": "Intercept + dose"})
    assert con["contrast"].unique().tolist() == ["mean at dose 1"] and len(con) == N_RESPONSES
    with pytest.raises(bl.SpecificationError, match="not_a_column"):
        many.contrast("not_a_column")
    fit = many.load("gene3")
    np.testing.assert_allclose(fit.draws("beta"), many.results["gene3"]["beta"])
    assert fit.design.n == 160 and fit.variance_components().index[0] == "1|batch"


def test_variance_fraction_definition():
    data, wide, _ = simulate_responses(1, seed=0)
    design = bl.design_from_formula("gene0 ~ dose + (1|batch/plate)", data.assign(gene0=wide["gene0"]))
    np.testing.assert_allclose(variance_weights(design), [1.0, 1.0])
    sigma = np.array([[1.0, 2.0, 2.0]])
    np.testing.assert_allclose(variance_fraction_draws(sigma, variance_weights(design)), [[1 / 9, 4 / 9, 4 / 9]])
    # a random slope counts σ² times the mean of the squared covariate
    slope = bl.design_from_formula("gene0 ~ dose + (0 + dose|batch)", data.assign(gene0=wide["gene0"]))
    np.testing.assert_allclose(variance_weights(slope), [np.mean(data["dose"] ** 2)])


def test_response_inputs_are_checked():
    data, wide, _ = simulate_responses(2, seed=0)
    names, values, drop = _responses(data.join(wide), ["gene0", "gene1"])
    assert names == ["gene0", "gene1"] and drop == names and values.shape == (160, 2)
    names, values, _ = _responses(data, wide.to_numpy())
    assert names == ["y0", "y1"]
    with pytest.raises(bl.SpecificationError, match="nope"):
        _responses(data, ["nope"])
    with pytest.raises(bl.SpecificationError, match="rows"):
        _responses(data, wide.iloc[:10])
    with pytest.raises(bl.SpecificationError, match="more than once"):
        _responses(data.join(wide), ["gene0", "gene0"])
    design = bl.design_from_formula("gene0 ~ dose + (1|batch)", data.assign(gene0=wide["gene0"]))
    with pytest.raises(bl.DataError, match="'g2'.*constant"):
        with_response(design, np.ones(160), "g2")
    with pytest.raises(bl.SpecificationError, match="159 values"):
        with_response(design, np.ones(159), "g3")


def test_cli_fit_many_reports_bad_responses_file(tmp_path):
    """Exit code 2 and one line naming the problem, before any cluster starts."""
    card = str(Path(__file__).resolve().parent.parent / "models" / "dyestuff.toml")
    result = subprocess.run([sys.executable, "-m", "bayes_lmm.cli", "fit-many", card,
                             "--responses-file", str(tmp_path / "absent.csv")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "absent.csv" in result.stderr and "Traceback" not in result.stderr


def test_placeholder_response_never_shadows_a_covariate():
    from bayes_lmm.many import _template

    data, wide, _ = simulate_responses(1, seed=0)
    data = data.assign(response=data["dose"] * 2)
    shared, design = _template("~ response + (1|batch)", data, [], "treatment", ())
    assert shared.startswith("response_ ~")
    assert list(design.x_names) == ["Intercept", "response"]
    np.testing.assert_allclose(design.X[:, 1], data["dose"] * 2)


@pytest.mark.slow
def test_cli_fit_many_writes_tables(tmp_path, dyestuff):
    """`bayes-lmm fit-many` on a local cluster: tables written, the NaN response listed as failed."""
    rng = np.random.default_rng(0)
    wide = pd.DataFrame({"a": dyestuff["Yield"], "b": dyestuff["Yield"] + rng.normal(0, 30, len(dyestuff)),
                         "c": [np.nan] + dyestuff["Yield"].tolist()[1:]})
    wide.to_csv(tmp_path / "wide.csv", index=False)
    card = str(Path(__file__).resolve().parent.parent / "models" / "dyestuff.toml")
    result = subprocess.run([sys.executable, "-m", "bayes_lmm.cli", "fit-many", card, "--responses-file",
                             str(tmp_path / "wide.csv"), "--draws", "150", "--tune", "150", "--chains", "2",
                             "--seed", "1", "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    fractions = pd.read_csv(tmp_path / "out" / "variance_fractions.csv")
    assert sorted(fractions["response"].unique()) == ["a", "b"]
    assert set(fractions["component"]) == {"1|Batch", "Residual"}
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert failures["response"].tolist() == ["c"]
    assert (tmp_path / "out" / "diagnostics.csv").is_file() and (tmp_path / "out" / "fixed_effects.csv").is_file()
