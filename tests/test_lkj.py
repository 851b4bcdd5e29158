"""The LKJ(η) prior through canonical partial correlations (:mod:`bayes_lmm.lkj`), no sampling.

The change of variables from the CPCs (independent Betas) to the correlations has the LKJ
density det(C)^(η−1) exactly: log p(z) − log|∂r/∂z| − (η − 1) log det C is the same constant
at every point (the Jacobian by finite differences), for k = 3 and 4 and several η.
"""

import numpy as np
import pytest
import scipy.stats as st

from bayes_lmm import lkj


def _upper(z, k):
    L = lkj.cholesky_from_cpc(z, k)
    return (L @ L.T)[np.triu_indices(k, 1)]


@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("eta", [1.0, 2.0, 4.5])
def test_cpc_betas_give_the_lkj_density(k, eta):
    m = k * (k - 1) // 2
    conc = lkj.cpc_concentrations(k, eta)
    rng = np.random.default_rng(k)
    values = []
    for _ in range(6):
        b = rng.uniform(0.05, 0.95, m)
        z = 2.0 * b - 1.0
        h = 1e-6
        jac = np.column_stack([(_upper(z + h * e, k) - _upper(z - h * e, k)) / (2 * h) for e in np.eye(m)])
        log_pz = (st.beta.logpdf(b, conc, conc) - np.log(2.0)).sum()
        L = lkj.cholesky_from_cpc(z, k)
        values.append(log_pz - np.linalg.slogdet(jac)[1] - lkj.lkj_log_kernel(L @ L.T, eta))
    assert np.ptp(values) < 1e-7


def test_cholesky_factor_is_a_correlation_factor_and_inverts():
    rng = np.random.default_rng(1)
    z = rng.uniform(-0.99, 0.99, (50, 6))
    L = lkj.cholesky_from_cpc(z, 4)
    C = L @ np.swapaxes(L, -1, -2)
    np.testing.assert_allclose(np.diagonal(C, axis1=-2, axis2=-1), 1.0, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(C) > 0)
    np.testing.assert_allclose(lkj.cpc_from_correlation(C), z, rtol=1e-9, atol=1e-12)


def test_the_pairs_and_concentrations_follow_the_c_vine():
    assert lkj.cpc_pairs(4) == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    # β_j = η + (k − 2 − j)/2: the first column's CPCs are the plain correlations, Beta(η + (k−2)/2)
    np.testing.assert_allclose(lkj.cpc_concentrations(4, 2.0), [3.0, 3.0, 2.5, 3.0, 2.5, 2.0])
    np.testing.assert_allclose(lkj.cpc_concentrations(2, 1.5), [1.5])
