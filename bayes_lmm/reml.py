"""Restricted maximum likelihood and the GLS estimator of estimable Cβ (the cross-check).

Parameterization as in lme4: ``Var(y) = σ² (I + Z Λ Λ' Z')`` with Λ block-diagonal, one
lower-triangular k×k factor Λ_b per random block (diagonal ≥ 0, so estimates on the
boundary, σ_j = 0, are reached rather than crashed on). σ² is profiled out, and

``−2 l_R(θ) = log|I + Λ'Z'ZΛ| + log|X'V_θ⁻¹X| + (n − p)(1 + log(2π σ̂²))``,

with ``σ̂² = r'V_θ⁻¹r / (n − p)`` and p the rank of X. Then
``Cβ̂ = C(X'V̂⁻¹X)⁻X'V̂⁻¹y`` with ``Var(Cβ̂) = C(X'V̂⁻¹X)⁻C'``: the notes' estimated-GLS
estimator, nonlinear in y because V̂ depends on y.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse, stats

from . import contrasts as _contrasts
from .design import RESIDUAL, Design
from .likelihood.linalg import sparse_z


def _full_rank_columns(X: np.ndarray) -> np.ndarray:
    _, r, piv = linalg.qr(X, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > diag.max() * 1e-10)) if diag.size else 0
    return np.sort(piv[:rank])


class _Problem:
    """Precomputed pieces for evaluating the profiled REML criterion quickly."""

    def __init__(self, design: Design):
        self.design = design
        Z = sparse_z(design.blocks) if design.blocks else sparse.csr_matrix((design.n, 0))
        self.X = design.X
        self.Xr = design.X[:, _full_rank_columns(design.X)]
        self.y = design.y
        self.n = design.n
        self.p = self.Xr.shape[1]
        # Z stays sparse (73,421 rows × 4,114 levels would be 2.4 GB dense)
        self.ZtZ = (Z.T @ Z).tocsr()
        self.ZtX = np.asarray(Z.T @ self.X)
        self.Zty = np.asarray(Z.T @ self.y)
        self.elim = _eliminated(design)
        self.XtX = self.X.T @ self.X
        self.Xty = self.X.T @ self.y
        self.yty = float(self.y @ self.y)
        self.cols = _full_rank_columns(design.X)
        # θ layout: per block the lower triangle of Λ_b, row-major
        self.slices, self.lower_bounds, start = [], [], 0
        for blk in design.blocks:
            k = blk.n_coefs
            tri = np.tril_indices(k)
            m = len(tri[0])
            self.slices.append((start, start + m, tri, k, blk.n_levels))
            self.lower_bounds += [0.0 if i == j else None for i, j in zip(*tri)]
            start += m
        self.n_theta = start

    def initial(self) -> np.ndarray:
        out = []
        for _, _, tri, _, _ in self.slices:
            out += [1.0 if i == j else 0.0 for i, j in zip(*tri)]
        return np.array(out)

    def lam(self, theta: np.ndarray) -> np.ndarray:
        """Λ dense (for the residual-structure criterion, which works with dense V)."""
        return self.lam_sparse(theta).toarray()

    def lam_sparse(self, theta: np.ndarray) -> sparse.csr_matrix:
        parts = []
        for start, stop, tri, k, levels in self.slices:
            L = np.zeros((k, k))
            L[tri] = theta[start:stop]
            parts.append(sparse.kron(sparse.identity(levels), L))
        return sparse.block_diag(parts, format="csr") if parts else sparse.csr_matrix((0, 0))

    def pieces(self, theta: np.ndarray):
        """log|A| and X'V⁻¹X, X'V⁻¹y, y'V⁻¹y (times σ²) with A = I + Λ'Z'ZΛ. Where a factor of
        one coefficient per level exists, its part of A (diagonal, d) is solved out and only
        the Schur complement S = A_rr − F d⁻¹ F' of the other coefficients is factorised."""
        lam = self.lam_sparse(theta)
        q = lam.shape[0]
        A = (lam.T @ self.ZtZ @ lam).tocsr() + sparse.identity(q, format="csr")
        B = np.asarray(lam.T @ np.column_stack([self.ZtX, self.Zty]))  # Λ'Z'[X, y]
        if self.elim is None:
            cA = linalg.cho_factor(A.toarray(), lower=True)
            logdet_A = 2.0 * np.sum(np.log(np.diag(cA[0])))
            quad = B.T @ linalg.cho_solve(cA, B)
        else:
            E, R = self.elim
            d = A.diagonal()[E]
            F = A[R][:, E]
            Bt = B[R] - F @ (B[E] / d[:, None])
            S = A[R][:, R].toarray() - (F.multiply(1.0 / d[None, :]) @ F.T).toarray()
            quad = B[E].T @ (B[E] / d[:, None])
            logdet_A = float(np.sum(np.log(d)))
            if len(R):
                cS = linalg.cho_factor(S, lower=True)
                logdet_A += 2.0 * np.sum(np.log(np.diag(cS[0])))
                quad = quad + Bt.T @ linalg.cho_solve(cS, Bt)
        p = self.X.shape[1]
        return logdet_A, self.XtX - quad[:p, :p], self.Xty - quad[:p, p], self.yty - quad[p, p]

    def criterion(self, theta: np.ndarray) -> float:
        """−2 × the profiled REML log-likelihood."""
        try:
            logdet_A, XVX, XVy, yVy = self.pieces(theta)
            c = self.cols
            cX = linalg.cho_factor(XVX[np.ix_(c, c)], lower=True)
        except (linalg.LinAlgError, ValueError):
            return np.inf
        b = linalg.cho_solve(cX, XVy[c])
        rss = yVy - XVy[c] @ b
        if rss <= 0:
            return np.inf
        dof = self.n - self.p
        logdet_X = 2.0 * np.sum(np.log(np.diag(cX[0])))
        return float(logdet_A + logdet_X + dof * (1.0 + np.log(2 * np.pi * rss / dof)))


@dataclass
class RemlResult:
    """REML estimates, GLS fixed effects and the REML log-likelihood.

    Attributes
    ----------
    fixed_effects : DataFrame
        ``estimate, se, estimable`` per column of X (for a non-estimable column the estimate
        is the minimum-norm GLS solution and carries no meaning on its own).
    variance_components : DataFrame
        ``sd, variance`` per component, ``Residual`` included, named as in :class:`Fit`.
    correlations : DataFrame
        ``estimate`` per correlation of correlated random effects (may be empty).
    loglik : float
        The REML log-likelihood at the optimum (lme4's ``logLik(fit)``; nlme's too).
    converged : bool
    residual_structure : DataFrame
        ``estimate`` per correlation parameter of R: ``rho`` (AR1, compound symmetry) or
        ``corr(t1,t2)`` (unstructured); empty for ``R = σ²_e I`` and diagonal structures.
    residual : ResolvedResidual or None
        The residual structure fitted (None: ``σ²_e I``).

    Examples
    --------
    >>> r = bl.reml("weight ~ genotype + (1|pot)", data, factors=["genotype"])
    >>> r.variance_components["sd"]  # doctest: +SKIP
    >>> r.contrast({"g1-g2": "genotype[1] - genotype[2]"})  # doctest: +SKIP
    """

    fixed_effects: pd.DataFrame
    variance_components: pd.DataFrame
    correlations: pd.DataFrame
    loglik: float
    converged: bool
    design: Design = field(repr=False)
    cov_beta: np.ndarray = field(repr=False)
    beta: np.ndarray = field(repr=False)
    residual_structure: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        {"estimate": np.zeros(0)}, index=pd.Index([], name="parameter", dtype=object)))
    residual: Any = None

    def contrast(self, spec: Any, prob: float = 0.95) -> pd.DataFrame:
        """GLS estimate ``Cβ̂``, its standard error and a Wald interval, per contrast."""
        labels, C = _contrasts.contrast_matrix(spec, self.design.x_names)
        _contrasts.check_estimable(labels, C, self.design.X, self.design.x_names)
        est = C @ self.beta
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", C, self.cov_beta, C), 0.0))
        z = stats.norm.ppf(0.5 + prob / 2)
        return pd.DataFrame({"estimate": est, "se": se, "lower": est - z * se, "upper": est + z * se},
                            index=pd.Index(labels, name="contrast"))


def _eliminated(design: Design):
    """(columns of the factor solved out, the other columns) of Z: the factor of one coefficient
    per level (its Z'Z is diagonal) with the most levels; None if no block qualifies."""
    candidates = [j for j, b in enumerate(design.blocks) if b.dense is None and b.n_coefs == 1]
    if not candidates:
        return None
    e = max(candidates, key=lambda j: design.blocks[j].n_levels)
    offsets = np.cumsum([0] + [b.n_levels * b.n_coefs for b in design.blocks])
    cols = np.arange(offsets[-1])
    inside = (cols >= offsets[e]) & (cols < offsets[e + 1])
    return cols[inside], cols[~inside]


def minimize(fun, starts, bounds) -> tuple[np.ndarray, bool]:
    """L-BFGS-B from each start, then a Powell polish within the bounds from the best point."""
    best = None
    for start in starts:
        res = optimize.minimize(fun, start, method="L-BFGS-B", bounds=bounds,
                                options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    polish = optimize.minimize(fun, best.x, method="Powell", bounds=bounds,
                               options={"xtol": 1e-10, "ftol": 1e-14, "maxfev": 20000})
    theta = polish.x if polish.fun < best.fun else best.x
    return theta, bool(best.success or polish.success)


def fixed_table(design: Design, XVX: np.ndarray, XVy: np.ndarray, sigma2: float):
    """β̂ = (X'V_θ⁻¹X)⁻X'V_θ⁻¹y, ``Var(β̂) = σ̂²(X'V_θ⁻¹X)⁻`` and the fixed-effects table."""
    XVX_ginv = np.linalg.pinv(XVX)
    beta = XVX_ginv @ XVy
    cov = sigma2 * XVX_ginv
    P = _contrasts.row_space_projector(design.X)
    eye = np.eye(design.p)
    estimable = np.linalg.norm(eye - eye @ P, axis=1) < 1e-8
    fixed = pd.DataFrame({"estimate": beta, "se": np.sqrt(np.maximum(np.diag(cov), 0)),
                          "estimable": estimable}, index=pd.Index(design.x_names, name="term"))
    return fixed, beta, cov


def random_tables(prob: _Problem, theta: np.ndarray, sigma2: float):
    """Names and SDs of the random components (``G_b = σ̂² Λ_b Λ_b'``) and their correlations."""
    names, sds, corr_names, corrs = [], [], [], []
    for (start, stop, tri, k, _), blk in zip(prob.slices, prob.design.blocks):
        L = np.zeros((k, k))
        L[tri] = theta[start:stop]
        G = sigma2 * L @ L.T
        sd = np.sqrt(np.maximum(np.diag(G), 0.0))
        names += list(blk.components)
        sds += list(sd)
        for a in range(k):
            for b in range(a + 1, k):
                corr_names.append(f"({blk.coef_names[a]},{blk.coef_names[b]})|{blk.group}")
                corrs.append(G[a, b] / (sd[a] * sd[b]) if sd[a] > 0 and sd[b] > 0 else np.nan)
    corr = pd.DataFrame({"estimate": corrs}, index=pd.Index(corr_names, name="correlation"))
    return names, sds, corr


def reml_design(design: Design) -> RemlResult:
    """REML fit of a :class:`Design` (see the module docstring for the criterion)."""
    prob = _Problem(design)
    x0 = prob.initial()
    if prob.n_theta:
        bounds = [(lb, None) for lb in prob.lower_bounds]
        theta, converged = minimize(prob.criterion, (x0, 0.3 * x0, 3.0 * x0), bounds)
    else:
        theta, converged = x0, True
    crit = prob.criterion(theta)
    logdet_A, XVX, XVy, yVy = prob.pieces(theta)
    c = prob.cols
    b_r = linalg.solve(XVX[np.ix_(c, c)], XVy[c], assume_a="pos")
    dof = prob.n - prob.p
    sigma2 = (yVy - XVy[c] @ b_r) / dof
    fixed, beta, cov = fixed_table(design, XVX, XVy, sigma2)
    names, sds, corr = random_tables(prob, theta, sigma2)
    names.append(RESIDUAL)
    sds.append(np.sqrt(sigma2))
    sds = np.array(sds)
    vc = pd.DataFrame({"sd": sds, "variance": sds**2}, index=pd.Index(names, name="component"))
    return RemlResult(fixed_effects=fixed, variance_components=vc, correlations=corr,
                      loglik=-0.5 * crit, converged=converged, design=design, cov_beta=cov, beta=beta)
