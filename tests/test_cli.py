"""Every shipped card through the CLI (small draws), plus bad and unsafe cards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bayes_lmm.cli import main

MODELS = Path(__file__).resolve().parent.parent / "models"
CARDS = sorted(MODELS.glob("*.toml"))
SMALL = ["--draws", "200", "--tune", "200", "--chains", "2", "--sampler", "nutpie"]


def test_all_notes_examples_and_references_are_shipped():
    names = {c.stem for c in CARDS}
    assert {"seedling", "litter", "dyestuff", "sleepstudy"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("card", CARDS, ids=[c.stem for c in CARDS])
def test_fit_every_card(card, tmp_path, capsys):
    out = tmp_path / card.stem
    assert main(["fit", str(card), "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "Variance components" in printed and "Diagnostics" in printed
    for name in ("idata.nc", "fixed_effects.csv", "variance_components.csv", "summary.json",
                 "forest.png", "trace_sigma.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert "Residual" in summary["variance_components"]
    if card.stem.startswith("seedling"):
        assert set(summary["contrasts"]) == {"mu+g1", "mu+g2", "g1-g2"}
        assert (out / "contrasts.csv").exists()


@pytest.mark.parametrize("card", CARDS, ids=[c.stem for c in CARDS])
def test_reml_and_show_every_card(card, capsys):
    assert main(["reml", str(card)]) == 0
    assert "REML variance components" in capsys.readouterr().out
    assert main(["show", str(card), "--rows", "4"]) == 0
    assert "σ²_e" in capsys.readouterr().out


def write(tmp_path, text):
    (tmp_path / "d.csv").write_text((MODELS / "data" / "seedling.csv").read_text())
    card = tmp_path / "card.toml"
    card.write_text(text)
    return card


def test_bad_key_exits_2_and_names_it(tmp_path, capsys):
    card = write(tmp_path, '[model]\ndata = "d.csv"\nformula = "weight ~ 1 + (1|pot)"\ndraws = 10\n')
    assert main(["reml", str(card)]) == 2
    err = capsys.readouterr().err
    assert "model.draws" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_value_exits_2(tmp_path, capsys):
    card = write(tmp_path, '[model]\ndata = "d.csv"\nformula = "weight ~ 1 + (1|pot)"\ncoding = "weird"\n')
    assert main(["reml", str(card)]) == 2
    assert "model.coding" in capsys.readouterr().err


def test_unsafe_formula_is_refused_before_anything_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    card = write(tmp_path, f'[model]\ndata = "d.csv"\nformula = "weight ~ os.system(\'touch {marker}\') + (1|pot)"\n')
    assert main(["fit", str(card), *SMALL]) == 2
    assert "os.system" in capsys.readouterr().err
    assert not marker.exists()


def test_console_script_runs_as_a_process(tmp_path):
    card = write(tmp_path, '[model]\ndata = "missing.csv"\nformula = "weight ~ 1 + (1|pot)"\n')
    proc = subprocess.run([sys.executable, "-m", "bayes_lmm.cli", "reml", str(card)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "missing.csv" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_check_command(tmp_path, capsys):
    out = tmp_path / "check"
    assert main(["check", str(MODELS / "dyestuff.toml"), "--out", str(out), "--seed", "1", *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "sd_group_means" in printed and "Batch" in printed
    table = (out / "check.csv").read_text()
    assert table.startswith("statistic,group,observed,replicated_mean,p_value")
    assert (out / "check.png").stat().st_size > 0


def test_simulate_command(tmp_path, capsys):
    params = '{"beta": {"Intercept": 1500}, "sd": {"Batch": 40}, "Residual": 50}'
    out = tmp_path / "sim.csv"
    assert main(["simulate", str(MODELS / "dyestuff.toml"), "--params", params, "--seed", "3", "--out", str(out)]) == 0
    import pandas as pd

    sim = pd.read_csv(out)
    assert list(sim.columns) == ["Batch", "Yield"] and len(sim) == 30
    assert abs(sim["Yield"].mean() - 1500) < 100
    assert main(["simulate", str(MODELS / "dyestuff.toml"), "--params", "{not json"]) == 2
    assert main(["simulate", str(MODELS / "seedling_matrices.toml"), "--params",
                 '{"beta": [10, 1, -1], "sd": {"pot": 1}, "Residual": 0.5}', "--seed", "1"]) == 0


def test_fit_writes_a_file_bl_load_opens_and_the_correlations(sleep_fit, tmp_path, capsys, monkeypatch):
    """Issue 18 items 15–16: `bayes-lmm fit` writes Fit.save's file and the correlations."""
    import bayes_lmm as bl
    from bayes_lmm import cli

    monkeypatch.setattr(cli, "_sample_card", lambda card, args: sleep_fit)
    out = tmp_path / "sleep"
    assert main(["fit", str(MODELS / "sleepstudy.toml"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Random-effect correlations" in printed and "(1,Days)|Subject" in printed
    back = bl.load(out / "idata.nc")
    assert back.design.formula == "Reaction ~ Days + (Days|Subject)"
    assert back.fixed_effects()["mean"].to_dict() == pytest.approx(sleep_fit.fixed_effects()["mean"].to_dict())
    import pandas as pd

    corr = pd.read_csv(out / "correlations.csv", index_col=0)
    assert list(corr.index) == ["(1,Days)|Subject"] and {"median", "lower", "upper"} <= set(corr.columns)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["correlations"]) == {"(1,Days)|Subject"}
    assert (out / "forest.png").stat().st_size > 0 and (out / "trace_sigma.png").stat().st_size > 0


@pytest.mark.parametrize("contrast, named", [
    ('"typo" = "genotyp[1] - genotype[2]"', "genotyp[1]"),
    ('"alone" = "genotype[1]"', "not estimable"),
])
def test_card_contrasts_are_checked_before_any_compile(tmp_path, capsys, monkeypatch, contrast, named):
    """Issue 18 item 17: a contrast typo is a one-line error with exit 2, before sampling."""
    import time

    import bayes_lmm.api as api

    def never(*args, **kwargs):
        raise RuntimeError("the model was built or sampled before the card was checked")

    monkeypatch.setattr(api, "run_design", never)
    monkeypatch.setattr(api, "build", never)
    card = write(tmp_path, '[model]\ndata = "d.csv"\nformula = "weight ~ genotype + (1|pot)"\n'
                           f'coding = "full"\nfactors = ["genotype"]\n[contrasts]\n{contrast}\n')
    start = time.perf_counter()
    assert main(["fit", str(card), *SMALL]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err and "card.toml" in err and "contrasts" in err


def test_card_priors_and_sampler_are_checked_before_sampling(tmp_path, capsys, monkeypatch):
    import bayes_lmm.api as api

    def never(*args, **kwargs):
        raise RuntimeError("sampled before the card was checked")

    monkeypatch.setattr(api, "run_design", never)
    card = write(tmp_path, '[model]\ndata = "d.csv"\nformula = "weight ~ genotype + (1|pot)"\n'
                           '[priors]\n"1|pott" = { dist = "HalfNormal", sigma = 1.0 }\n')
    assert main(["check", str(card), *SMALL]) == 2
    assert "1|pott" in capsys.readouterr().err
    card = write(tmp_path, '[model]\ndata = "d.csv"\nformula = "weight ~ genotype + (1|pot)"\n'
                           '[sampler]\ntarget_accept = 1.5\n')
    assert main(["fit", str(card), *SMALL]) == 2
    assert "target_accept" in capsys.readouterr().err
