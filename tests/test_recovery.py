"""Recovery: data simulated from known parameters; the truth lies in the 95% intervals.

The notes' X is rank-deficient, so β itself is not identified: recovery is checked on the
estimable cell means μ + γ_i (μ + τ_i) and on every σ.
"""

import numpy as np
import pandas as pd
import pytest
from conftest import notes_example1_matrices, notes_example2_matrices, quiet_fit

import bayes_lmm as bl


def simulate(X, blocks, beta, sds, sd_e, seed):
    rng = np.random.default_rng(seed)
    y = X @ beta + rng.normal(0, sd_e, X.shape[0])
    for Z, sd in zip(blocks, sds):
        y += Z @ rng.normal(0, sd, Z.shape[1])
    return y


def inside(table, row, value, lo="lower", hi="upper"):
    return table.loc[row, lo] <= value <= table.loc[row, hi]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["pymc", "nutpie"])
def test_example1_recovery_at_defaults(sampler):
    X, Z = notes_example1_matrices()
    beta = np.array([10.0, 2.0, -1.0])  # cell means 12 and 9
    y = simulate(X, [Z], beta, [1.0], 0.8, seed=101)
    fit = quiet_fit(bl.fit_matrices, y, X, {"pot": Z}, x_names=["mu", "g1", "g2"], random_seed=1,
                    progressbar=False, sampler=sampler)
    d = fit.diagnostics()
    assert d.divergences == 0 and d.max_rhat <= 1.01
    c = fit.contrast({"mu+g1": [1, 1, 0], "mu+g2": [1, 0, 1], "g1-g2": [0, 1, -1]})
    assert inside(c, "mu+g1", 12.0) and inside(c, "mu+g2", 9.0) and inside(c, "g1-g2", 3.0)
    vc = fit.variance_components()
    assert inside(vc, "pot", 1.0, "sd_lower", "sd_upper")
    assert inside(vc, "Residual", 0.8, "sd_lower", "sd_upper")


@pytest.mark.slow
def test_example2_recovery_at_defaults():
    X, Z_l, Z_a = notes_example2_matrices()
    beta = np.array([50.0, 0.0, 2.0, 4.0, -1.0])
    y = simulate(X, [Z_l, Z_a], beta, [3.0, 2.0], 1.0, seed=204)
    fit = quiet_fit(bl.fit_matrices, y, X, {"litter": Z_l, "animal": Z_a}, random_seed=2,
                    progressbar=False, sampler="nutpie")
    assert fit.diagnostics().divergences == 0
    C = np.hstack([np.ones((4, 1)), np.eye(4)])
    c = fit.contrast(C)
    for i in range(4):
        assert c["lower"].iloc[i] <= 50.0 + beta[i + 1] <= c["upper"].iloc[i]
    vc = fit.variance_components()
    for name, sd in (("litter", 3.0), ("animal", 2.0), ("Residual", 1.0)):
        assert inside(vc, name, sd, "sd_lower", "sd_upper")


@pytest.mark.slow
def test_centered_recovers_many_groups():
    rng = np.random.default_rng(303)
    g = np.repeat(np.arange(50), 10)
    x = rng.normal(size=500)
    u = rng.normal(0, 1.5, 50)
    y = 2.0 + 0.7 * x + u[g] + rng.normal(0, 1.0, 500)
    df = pd.DataFrame({"y": y, "x": x, "g": g})
    fit = quiet_fit(bl.fit, "y ~ x + (1|g)", df, parameterization="centered", random_seed=3,
                    progressbar=False, sampler="nutpie", draws=500, tune=500, chains=2)
    assert fit.diagnostics().divergences == 0
    fe, vc = fit.fixed_effects(), fit.variance_components()
    assert inside(fe, "Intercept", 2.0) and inside(fe, "x", 0.7)
    assert inside(vc, "1|g", 1.5, "sd_lower", "sd_upper") and inside(vc, "Residual", 1.0, "sd_lower", "sd_upper")
