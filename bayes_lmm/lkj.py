"""The LKJ(η) prior on a k×k correlation matrix through its canonical partial correlations.

Lewandowski, Kurowicka & Joe (2009, the C-vine method): with independent canonical partial
correlations (CPCs) z_ij = 2·b_ij − 1, b_ij ~ Beta(β_j, β_j), β_j = η + (k − 2 − j)/2 for
the pair (i, j), i > j (0-based), the matrix C = LL' with

    L_i0 = z_i0,   L_ij = z_ij · sqrt(1 − Σ_{m<j} L_im²),   L_ii = sqrt(1 − Σ_{m<i} L_im²)

has density ∝ det(C)^(η−1): exactly LKJ(η). Each z is a scalar Beta on its log-odds, which is
cheap to evaluate and differentiate and keeps NUTS away from the boundary geometry of a
general transform; for k = 2 it is r = 2·Beta(η, η) − 1.

The pairs are ordered row by row, (1,0), (2,0), (2,1), (3,0), …: the graph's variables, the
kernel's coordinates and :func:`cholesky_from_cpc` all use this order.
"""

from __future__ import annotations

import numpy as np


def cpc_pairs(k: int) -> list[tuple[int, int]]:
    """The (row i, column j) of each CPC, i > j, row by row."""
    return [(i, j) for i in range(1, k) for j in range(i)]


def cpc_concentrations(k: int, eta: float) -> np.ndarray:
    """β of each CPC's Beta(β, β), in :func:`cpc_pairs` order."""
    return np.array([eta + (k - 2 - j) / 2.0 for _, j in cpc_pairs(k)], dtype=float)


def cholesky_from_cpc(z: np.ndarray, k: int) -> np.ndarray:
    """The Cholesky factor L of the correlation matrix with CPCs ``z`` (…, k(k−1)/2): (…, k, k)."""
    z = np.asarray(z, dtype=float)
    L = np.zeros(z.shape[:-1] + (k, k))
    L[..., 0, 0] = 1.0
    for pos, (i, j) in enumerate(cpc_pairs(k)):
        rest = 1.0 - (L[..., i, :j] ** 2).sum(axis=-1)
        L[..., i, j] = z[..., pos] * np.sqrt(rest)
        if j == i - 1:
            L[..., i, i] = np.sqrt(1.0 - (L[..., i, :i] ** 2).sum(axis=-1))
    return L


def cpc_from_correlation(C: np.ndarray) -> np.ndarray:
    """The CPCs of a correlation matrix (inverse of :func:`cholesky_from_cpc`)."""
    L = np.linalg.cholesky(np.asarray(C, dtype=float))
    k = L.shape[-1]
    out = []
    for i, j in cpc_pairs(k):
        rest = 1.0 - (L[..., i, :j] ** 2).sum(axis=-1)
        out.append(L[..., i, j] / np.sqrt(rest))
    return np.stack(out, axis=-1)


def lkj_log_kernel(C: np.ndarray, eta: float) -> np.ndarray:
    """log LKJ(C | η) up to its normalising constant: (η − 1)·log det C."""
    return (eta - 1.0) * np.linalg.slogdet(np.asarray(C, dtype=float))[1]


def cholesky_graph(name: str, k: int, eta: float):
    """The CPCs of a k×k LKJ(η) correlation as scalar ``pm.Beta`` variables
    ``{name}_cpc_{i}_{j}`` (log-odds on the sampler's scale) in the current model.

    Returns
    -------
    (correlations, L) : the upper-triangle correlations of C (row by row, (0,1), (0,2), …)
        as a vector, and the Cholesky factor L, both PyTensor expressions.
    """
    import pymc as pm
    import pytensor.tensor as pt

    conc = cpc_concentrations(k, eta)
    rows = [[pt.constant(1.0)] + [pt.constant(0.0)] * (k - 1)]
    pos = 0  # the pairs in cpc_pairs order
    for i in range(1, k):
        row, rest = [], pt.constant(1.0)
        for j in range(i):
            b = pm.Beta(f"{name}_cpc_{i}_{j}", alpha=conc[pos], beta=conc[pos])
            pos += 1
            row.append((2.0 * b - 1.0) * pt.sqrt(rest))
            # 1 − Σ_{m≤j} L_im² = Π_{m≤j} (1 − z_im²), and 1 − z² = 4b(1 − b): no cancellation as |z| → 1
            rest = rest * 4.0 * b * (1.0 - b)
        row.append(pt.sqrt(rest))
        rows.append(row + [pt.constant(0.0)] * (k - 1 - i))
    L = pt.stack([pt.stack(r) for r in rows])
    C = pt.dot(L, L.T)
    upper = np.triu_indices(k, 1)
    return C[upper], L
