"""Reference tests: REML against lme4 (values from shared/data/README.md, lme4 1.1-31)."""

import numpy as np
import pandas as pd
import pytest
from conftest import notes_example1_matrices

import bayes_lmm as bl


def sig4(a, b):
    return abs(a - b) <= 5e-5 * abs(b)


def test_sleepstudy_matches_lme4(sleepstudy):
    r = bl.reml("Reaction ~ Days + (Days|Subject)", sleepstudy)
    fe, vc = r.fixed_effects["estimate"], r.variance_components["sd"]
    assert sig4(fe["Intercept"], 251.40510) and sig4(fe["Days"], 10.46729)
    assert sig4(vc["1|Subject"], 24.74066) and sig4(vc["Days|Subject"], 5.92214)
    assert sig4(vc["Residual"], 25.59180)
    assert abs(r.correlations.loc["(1,Days)|Subject", "estimate"] - 0.06555) < 5e-5
    assert r.converged


def test_dyestuff_matches_lme4(dyestuff):
    r = bl.reml("Yield ~ 1 + (1|Batch)", dyestuff)
    assert sig4(r.fixed_effects.loc["Intercept", "estimate"], 1527.5)
    assert sig4(r.variance_components.loc["1|Batch", "sd"], 42.0006)
    assert sig4(r.variance_components.loc["1|Batch", "variance"], 1764.05)
    assert sig4(r.variance_components.loc["Residual", "sd"], 49.5101)
    assert r.loglik == pytest.approx(-319.6543 / 2, abs=1e-3)  # lme4: REML criterion 319.65


def test_boundary_estimate_is_zero_not_a_crash():
    # between-group variation far below within-group noise: REML sits at σ_g = 0
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"g": np.repeat(list("abcdef"), 5)})
    df["y"] = rng.normal(size=30)
    df["y"] = df["y"] - df.groupby("g")["y"].transform("mean") + rng.normal(scale=1e-3, size=30)
    r = bl.reml("y ~ 1 + (1|g)", df)
    assert r.variance_components.loc["1|g", "sd"] < 1e-3
    assert np.isfinite(r.loglik)


def test_gls_contrasts_in_full_coding(seedling):
    r = bl.reml("weight ~ genotype + (1|pot)", seedling, coding="full", factors=["genotype"])
    X, Z = notes_example1_matrices()
    same = bl.reml((seedling.weight.to_numpy(), X, {"pot": Z}), x_names=["Intercept", "genotype[1]", "genotype[2]"])
    table = r.contrast({"d": "genotype[1] - genotype[2]", "m1": "Intercept + genotype[1]"})
    np.testing.assert_allclose(table["estimate"], same.contrast({"d": [0, 1, -1], "m1": [1, 1, 0]})["estimate"], rtol=1e-6)
    # Cβ̂ = C(X'V̂⁻¹X)⁻X'V̂⁻¹y computed directly from the REML variances
    sp2, se2 = r.variance_components["variance"]
    V = sp2 * Z @ Z.T + se2 * np.eye(10)
    Vi = np.linalg.inv(V)
    beta = np.linalg.pinv(X.T @ Vi @ X) @ X.T @ Vi @ seedling.weight.to_numpy()
    assert table.loc["d", "estimate"] == pytest.approx(beta[1] - beta[2], rel=1e-6)
    se = np.sqrt(np.array([0, 1, -1]) @ np.linalg.pinv(X.T @ Vi @ X) @ np.array([0, 1, -1]))
    assert table.loc["d", "se"] == pytest.approx(se, rel=1e-6)
    with pytest.raises(bl.EstimabilityError):
        r.contrast("genotype[1]")
    assert not r.fixed_effects.loc["genotype[1]", "estimable"]
