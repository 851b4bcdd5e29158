"""``bl.reml`` on the 73,421-row crossed design (reference tier): lme4's REML values.

Z stays sparse and the factor with the most levels is solved out level by level, so each
criterion costs a 1,142 × 1,142 Cholesky of the Schur complement (not a 4,114-square system
or a dense 73,421 × 4,114 Z, 2.4 GB).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import bayes_lmm as bl

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
from crossed70k import simulate  # noqa: E402


@pytest.mark.slow
def test_reml_on_73k_crossed_rows_matches_lme4():
    ref = json.loads((DATA / "crossed70k_lme4.json").read_text())
    r = bl.reml("y ~ 1 + service + (1|s) + (1|d) + (1|dept)", simulate())
    assert r.converged
    np.testing.assert_allclose(r.variance_components["sd"][list(ref["sd"])], list(ref["sd"].values()), rtol=2e-5)
    np.testing.assert_allclose(r.fixed_effects["estimate"][list(ref["beta"])], list(ref["beta"].values()),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(r.fixed_effects["se"][list(ref["se"])], list(ref["se"].values()), rtol=1e-4)
    assert r.loglik == pytest.approx(ref["loglik"], abs=1e-4)
