"""log N(e | 0, R) as a PyTensor expression, for each residual structure with R = D C D.

``e`` are the residuals y − Xβ − Zu (the latent forms), ``d`` the row SDs (the diagonal of
D) and ``rho`` the correlation parameters. With r = e / d (standardised residuals),
log N(e | 0, R) = log N(r | 0, C) − Σ log d_i, and C is written per structure in O(n):

* AR(1): the sequential factorisation over each group's rows in time order,
  r_t | r_s ~ N(ρ^(t−s) r_s, 1 − ρ^(2(t−s))) for the previous row s (gaps allowed);
* compound symmetry: C_g = (1 − ρ)I + ρ11' has ``|C_g| = (1 − ρ)^(n_g−1)(1 + (n_g − 1)ρ)`` and
  ``r'C_g⁻¹r = (r'r − ρ(1'r)²/(1 + (n_g − 1)ρ)) / (1 − ρ)``;
* unstructured: one Cholesky of C over each distinct set of times (groups with the same set
  are solved together).

The NumPy counterpart (pointwise and joint log-likelihoods, draws) is
:mod:`bayes_lmm.residual_draws`; tests check both against the dense multivariate normal.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.slinalg import solve_triangular

from ..names import data
from ..residual import ResolvedResidual
from ..residual_draws import batches

_LOG_2PI = float(np.log(2 * np.pi))


def ar1_neighbours(res: ResolvedResidual) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows in (group, time) order, each one's predecessor position in that order (0 if none),
    whether it has one, and the time gap to it (0 if none)."""
    order = np.lexsort((res.time, res.group))
    g, t = res.group[order], res.time[order]
    has_prev = np.r_[False, g[1:] == g[:-1]]
    prev = np.where(has_prev, np.arange(len(order)) - 1, 0)
    gap = np.where(has_prev, t - np.r_[t[:1], t[:-1]], 0)
    return order, prev, has_prev.astype(float), gap.astype(float)


def residual_logp(res: ResolvedResidual, e, d, rho):
    """log N(e | 0, D C D) for tensors ``e`` and ``d`` (n,) and ``rho`` (m,)."""
    n = res.n
    r = e / d
    base = -pt.sum(pt.log(d)) - 0.5 * n * _LOG_2PI
    if not res.correlated:
        return base - 0.5 * pt.sum(r**2)
    # the rows' codes enter as data: one compiled graph serves every data set of this kind
    if res.kind == "ar1":
        order, prev, has_prev, gap = (data(f"residual_{name}", a) for name, a in
                                      zip(("order", "prev", "has_prev", "gap"), ar1_neighbours(res)))
        rs = r[order]
        phi = has_prev * rho[0] ** gap
        var = 1.0 - phi**2
        return base - 0.5 * pt.sum(pt.log(var) + (rs - phi * rs[prev]) ** 2 / var)
    if res.kind == "cs":
        sizes = data("residual_group_sizes", np.bincount(res.group, minlength=len(res.group_labels)).astype(float))
        sums = pt.inc_subtensor(pt.zeros(sizes.shape[0])[data("residual_group", res.group)], r)
        c = rho[0]
        lead = 1.0 + (sizes - 1.0) * c
        logdet = pt.sum((sizes - 1.0) * pt.log(1.0 - c) + pt.log(lead))
        quad = (pt.sum(r**2) - pt.sum(c * sums**2 / lead)) / (1.0 - c)
        return base - 0.5 * (logdet + quad)
    T = len(res.time_labels)
    iu = np.triu_indices(T, 1)
    C = pt.set_subtensor(pt.eye(T)[iu], rho)
    C = pt.set_subtensor(C[(iu[1], iu[0])], rho)
    total = base
    for i, rows in enumerate(batches(res)):
        t = res.time[rows[0]]  # the batch's set of times is structure (see signature)
        L = pt.linalg.cholesky(C[t][:, t])
        block = data(f"residual_rows_{i}", rows)
        w = solve_triangular(L, r[block].T, lower=True)
        total = total - 0.5 * pt.sum(w**2) - block.shape[0] * pt.sum(pt.log(pt.diag(L)))
    return total


def signature(res: ResolvedResidual) -> tuple:
    """What a compiled graph of :func:`residual_logp` depends on beyond data shapes: the kind,
    the numbers of SDs and correlations, and (Unstructured) each batch's set of times."""
    patterns = tuple(tuple(res.time[rows[0]].tolist()) for rows in batches(res)) if res.kind == "un" else ()
    return (res.kind, len(res.sd_labels), res.corr_names, patterns)
