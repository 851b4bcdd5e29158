"""Simulation-based calibration: a small version of benchmarks/sbc.py with a loose bound."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl
from bayes_lmm.sbc import simulation_based_calibration

SBC_PRIORS = {"fixed": bl.Normal(10, 5), "random": bl.HalfNormal(2), "Residual": bl.HalfNormal(2)}


@pytest.mark.slow
def test_seedling_template_is_calibrated(seedling):
    res = simulation_based_calibration(
        "weight ~ genotype + (1|pot)", seedling, coding="full", factors=["genotype"], priors=SBC_PRIORS,
        replications=30, draws=300, tune=300, chains=2, random_seed=3)
    table = res.table().set_index("parameter")
    assert list(table.index) == ["beta[Intercept]", "beta[genotype[1]]", "beta[genotype[2]]",
                                 "sigma[1|pot]", "sigma[Residual]"]
    assert res.failures == 0
    assert (table["replications"] == 30).all()
    # loose bounds for 30 replications: a miscalibrated sampler or model fails them
    assert table["coverage_90"].between(0.7, 1.0).all(), table
    assert table["coverage_50"].between(0.2, 0.8).all(), table
    assert (table["p_value"] > 0.001).all(), table
    assert res.ranks["rank"].between(0, 99).all()


@pytest.mark.slow
def test_3x3_correlated_block_is_calibrated():
    """benchmarks/sbc.py's ``k3`` template (200 replications there: 90% coverage 0.86–0.935),
    30 here: the three correlations (LKJ through its CPCs, on the compiled kernel) ranked too."""
    rows = [{"g": f"g{g}", "m": m} for g in range(8) for m in "ABC" for _ in range(3)]
    data = pd.DataFrame(rows).assign(y=np.random.default_rng(3).normal(size=len(rows)))
    res = simulation_based_calibration(
        "y ~ m + (m|g)", data, replications=30, draws=300, tune=300, chains=2, random_seed=5,
        priors={"fixed": bl.Normal(0, 2), "random": bl.HalfNormal(1), "Residual": bl.HalfNormal(0.5)})
    table = res.table().set_index("parameter")
    assert list(table.index)[-3:] == ["correlation[(1,m[B])|g]", "correlation[(1,m[C])|g]",
                                      "correlation[(m[B],m[C])|g]"]
    assert res.failures == 0
    assert table["coverage_90"].between(0.7, 1.0).all(), table
    assert table["coverage_50"].between(0.2, 0.8).all(), table
    assert (table["p_value"] > 0.001).all(), table


@pytest.mark.slow
def test_ar1_residual_template_is_calibrated():
    """The correlated residual of benchmarks/sbc.py's ``ar1`` template (200 replications there:
    90% coverage 0.85–0.93), 30 replications here: ρ and the SDs ranked too."""
    rng = np.random.default_rng(17)
    rows = [{"subject": f"s{s:02d}", "time": t, "x": float(rng.normal())}
            for s in range(12) for t in range(1, 7) if t != 2 + s % 5]
    data = pd.DataFrame(rows).assign(y=rng.normal(size=len(rows)))
    res = simulation_based_calibration(
        "y ~ x + (1|subject)", data, residual=bl.AR1("time", "subject"), replications=30, draws=300, tune=300,
        chains=2, random_seed=4,
        priors={"fixed": bl.Normal(0, 2), "random": bl.HalfNormal(1), "Residual": bl.HalfNormal(1)})
    table = res.table().set_index("parameter")
    assert list(table.index) == ["beta[Intercept]", "beta[x]", "sigma[1|subject]", "sigma[Residual]",
                                 "residual_correlation[rho]"]
    assert res.failures == 0
    assert table["coverage_90"].between(0.7, 1.0).all(), table
    assert table["coverage_50"].between(0.2, 0.8).all(), table
    assert (table["p_value"] > 0.001).all(), table


@pytest.mark.slow
def test_gibbs_sampler_is_calibrated():
    """benchmarks/sbc.py's ``gibbs`` template (crossed intercepts and an uncorrelated slope,
    sampler="gibbs"), 30 replications here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from sbc import PRIORS, gibbs_template

    formula, data = gibbs_template()
    res = simulation_based_calibration(formula, data, priors=PRIORS["gibbs"], sampler="gibbs", replications=30,
                                       draws=300, tune=200, chains=2, random_seed=6)
    table = res.table().set_index("parameter")
    assert list(table.index) == ["beta[Intercept]", "beta[x]", "sigma[1|a]", "sigma[1|b]", "sigma[x|b]",
                                 "sigma[Residual]"]
    assert res.failures == 0
    assert table["coverage_90"].between(0.7, 1.0).all(), table
    assert table["coverage_50"].between(0.2, 0.8).all(), table
    assert (table["p_value"] > 0.001).all(), table


def test_sbc_refuses_data_dependent_priors(seedling):
    with pytest.raises(bl.SpecificationError, match="Residual"):
        simulation_based_calibration("weight ~ genotype + (1|pot)", seedling,
                                     priors={"fixed": bl.Normal(0, 1), "random": bl.HalfNormal(1)},
                                     replications=2, random_seed=1)
