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
