"""REML with a structured residual: ``V = ZGZ' + R``, R block-diagonal by group.

R is taken from a :class:`~bayes_lmm.residual.ResolvedResidual`. Each group block ``R_g`` has a
Cholesky factor ``L_g`` (groups of equal size are factored together); whitening by it,
``Z̃ = L⁻¹Z``, ``X̃ = L⁻¹X``, ``ỹ = L⁻¹y``, turns ``V`` into ``L(I + Z̃ΛΛ'Z̃')L'`` and the
criterion into the one of :mod:`bayes_lmm.reml` plus ``log|R|``:

``−2 l_R = log|R| + log|I + Λ'Z̃'Z̃Λ| + log|X'V⁻¹X| + r'V⁻¹r + (n − p) log 2π``.

When every random block has a single level within each residual group (``(1|subject)`` with
``AR1("time", "subject")``), V itself is block-diagonal, ``V_g = R_g + Σ_b W_gb G_b W_gb'`` with
``W_gb`` the group's rows of block b's covariates; then the k × k blocks of V are factored
directly and Z is never formed per evaluation (n in the thousands takes seconds).

With estimated SDs, ``R = σ² R̃`` and ``G = σ² ΛΛ'``: σ is the SD of the first stratum, the
others are ratios to it (nlme's ``varIdent``), and σ² is profiled out as in the default case,
``r'V⁻¹r = n − p`` at ``σ̂² = r'Ṽ⁻¹r / (n − p)``. With :class:`~bayes_lmm.residual.KnownSD`
nothing is profiled (V is on the scale of the data). This is nlme's REML log-likelihood
(``logLik(fit)`` of ``gls``/``lme``, method ``"REML"``) for the same X: the ``log|X'V⁻¹X|`` term
depends on how X is coded, so compare fits only with the same columns of X.

Parameters of R (unconstrained for the optimizer): log SD ratios; AR(1) ``ρ = tanh(z)``;
compound symmetry ``ρ = a + (1 − a)·logistic(z)`` with ``a = −1/(k_max − 1)`` (R positive
definite for every group); unstructured: a unit-diagonal lower-triangular B whose rows are
normalized to give the Cholesky factor of the correlation matrix (nlme's spherical idea).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import linalg

from .design import Design
from .reml import RemlResult, _Problem, fixed_table, minimize, random_tables
from .residual import ResolvedResidual

_AR1_BOUND = 6.0  # |z| ≤ 6: |ρ| ≤ 0.99999
#: the criterion where V is not positive definite: finite, so numerical gradients stay finite
_BAD = 1e20


class _ResidualProblem:
    """The REML criterion as a function of ``[θ (Λ) | log SD ratios | correlation params]``."""

    def __init__(self, design: Design, residual: ResolvedResidual):
        self.base = _Problem(design)
        self.res = residual
        self.known = residual.kind == "known"
        self.n_ratio = 0 if self.known else len(residual.sd_labels) - 1
        self.T = len(residual.time_labels)
        self.n_corr = {"ar1": 1, "cs": 1, "un": self.T * (self.T - 1) // 2}.get(residual.kind, 0)
        self.M = np.hstack([design.Z, design.X, design.y[:, None]])
        self.q = design.Z.shape[1]
        self.batches = []
        if residual.correlated:
            by_size: dict[int, list[np.ndarray]] = {}
            for rows in residual.groups:
                by_size.setdefault(len(rows), []).append(rows)
            self.batches = [np.vstack(groups) for groups in by_size.values()]
            kmax = max(by_size)
            self.cs_low = -1.0 / (kmax - 1) if kmax > 1 else -0.999
        self.n_theta = self.base.n_theta
        self.size = self.n_theta + self.n_ratio + self.n_corr
        self.nested = residual.correlated and self._random_nested_in_groups(design)
        if self.nested:
            # per batch of equal-size groups: X, y and each block's covariate values, by group
            self.batch_data = [(design.X[idx], design.y[idx], [blk.values[idx] for blk in design.blocks])
                               for idx in self.batches]

    def _random_nested_in_groups(self, design: Design) -> bool:
        """Whether every random block has one level per residual group, never shared with
        another group (then V is block-diagonal by group, ``V_g = R_g + Σ_b W_gb G_b W_gb'``)."""
        for blk in design.blocks:
            if blk.dense is not None:
                return False
            for idx in self.batches:
                if not np.all(blk.index[idx] == blk.index[idx[:, :1]]):
                    return False
            # and no level shared by two groups ((1|Sex) with groups by Subject is not
            # block-diagonal by Subject: its u correlates subjects of the same sex)
            pairs = pd.DataFrame({"level": blk.index, "group": self.res.group}).drop_duplicates()
            if not pairs["level"].is_unique:
                return False
        return True

    # ---------------------------------------------------------------- parameters
    def split(self, x: np.ndarray):
        a, b = self.n_theta, self.n_theta + self.n_ratio
        return x[:a], x[a:b], x[b:]

    def sds(self, ratios: np.ndarray) -> np.ndarray:
        return np.concatenate([[1.0], np.exp(ratios)]) if not self.known else np.zeros(0)

    def corr(self, z: np.ndarray):
        kind = self.res.kind
        if kind == "ar1":
            return float(np.tanh(z[0]))
        if kind == "cs":
            return float(self.cs_low + (1.0 - self.cs_low) / (1.0 + np.exp(-z[0])))
        if kind == "un":
            B = np.eye(self.T)
            B[np.tril_indices(self.T, -1)] = z
            L = B / np.linalg.norm(B, axis=1, keepdims=True)
            C = L @ L.T
            np.fill_diagonal(C, 1.0)
            return C
        return None

    def initial(self) -> list[np.ndarray]:
        theta = self.base.initial()
        if self.known:
            theta = theta * np.std(self.base.y) / np.mean(self.res.known_sd)
        corr_starts = {"ar1": [[np.arctanh(0.3)], [np.arctanh(0.7)]],
                       "cs": [[0.0], [1.0]], "un": [np.zeros(self.n_corr)]}.get(self.res.kind, [[]])
        starts = []
        for scale in ((1.0, 0.3, 3.0) if self.n_theta else (1.0,)):
            for z in corr_starts:
                starts.append(np.concatenate([scale * theta, np.zeros(self.n_ratio), np.asarray(z, float)]))
        return starts

    def bounds(self) -> list[tuple]:
        corr = (-_AR1_BOUND, _AR1_BOUND) if self.res.kind == "ar1" else (-30.0, 30.0)
        return ([(lb, None) for lb in self.base.lower_bounds] + [(-20.0, 20.0)] * self.n_ratio
                + [corr] * self.n_corr)

    # ---------------------------------------------------------------- evaluation
    def whiten(self, sds: np.ndarray, corr) -> tuple[np.ndarray, float]:
        """``L⁻¹[Z X y]`` and ``log|R|`` (R relative to σ² unless the SDs are known)."""
        d = self.res.row_sd(sds)
        if not self.res.correlated:
            return self.M / d[:, None], 2.0 * float(np.sum(np.log(d)))
        W = np.empty_like(self.M)
        logdet = 0.0
        for idx in self.batches:
            L = np.linalg.cholesky(self.r_blocks(idx, d, corr))
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
            W[idx] = np.linalg.solve(L, self.M[idx])
        return W, logdet

    def r_blocks(self, idx: np.ndarray, d: np.ndarray, corr) -> np.ndarray:
        """``R_g`` of a batch of equal-size groups (rows ``idx``, one group per row), m × k × k."""
        k = idx.shape[1]
        if self.res.kind == "ar1":
            t = self.res.time[idx].astype(float)
            C = corr ** np.abs(t[:, :, None] - t[:, None, :])
        elif self.res.kind == "cs":
            C = np.broadcast_to(np.full((k, k), corr) + (1.0 - corr) * np.eye(k), (len(idx), k, k))
        else:
            t = self.res.time[idx]
            C = corr[t[:, :, None], t[:, None, :]]
        dd = d[idx]
        return dd[:, :, None] * C * dd[:, None, :]

    def nested_pieces(self, theta: np.ndarray, sds: np.ndarray, corr):
        """log|V|, X'V⁻¹X, X'V⁻¹y, y'V⁻¹y from the group blocks of V (random nested in groups)."""
        d = self.res.row_sd(sds)
        covs = []
        for start, stop, tri, k, _ in self.base.slices:
            L = np.zeros((k, k))
            L[tri] = theta[start:stop]
            covs.append(L @ L.T)
        p = self.base.X.shape[1]
        XVX, XVy, yVy, logdet = np.zeros((p, p)), np.zeros(p), 0.0, 0.0
        for idx, (Xb, yb, values) in zip(self.batches, self.batch_data):
            V = self.r_blocks(idx, d, corr)
            for Wb, cov in zip(values, covs):
                V = V + np.einsum("mia,ab,mjb->mij", Wb, cov, Wb)
            L = np.linalg.cholesky(V)
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
            S = np.linalg.solve(L, np.concatenate([Xb, yb[:, :, None]], axis=2))
            Sx, Sy = S[:, :, :p], S[:, :, p]
            XVX += np.einsum("mia,mib->ab", Sx, Sx)
            XVy += np.einsum("mia,mi->a", Sx, Sy)
            yVy += float(np.sum(Sy * Sy))
        return logdet, XVX, XVy, yVy

    def pieces(self, x: np.ndarray):
        theta, ratios, z = self.split(x)
        if self.nested:
            return self.nested_pieces(theta, self.sds(ratios), self.corr(z))
        W, logdet_R = self.whiten(self.sds(ratios), self.corr(z))
        q, p = self.q, self.base.X.shape[1]
        Zw, Xw, yw = W[:, :q], W[:, q:q + p], W[:, q + p]
        lam = self.base.lam(theta)
        A = lam.T @ (Zw.T @ Zw) @ lam + np.eye(lam.shape[0])
        cA = linalg.cho_factor(A, lower=True)
        logdet_A = 2.0 * np.sum(np.log(np.diag(cA[0])))
        LZtX = lam.T @ (Zw.T @ Xw)
        LZty = lam.T @ (Zw.T @ yw)
        S_X = linalg.cho_solve(cA, LZtX)
        S_y = linalg.cho_solve(cA, LZty)
        XVX = Xw.T @ Xw - LZtX.T @ S_X
        XVy = Xw.T @ yw - LZtX.T @ S_y
        yVy = float(yw @ yw) - LZty @ S_y
        return logdet_R + logdet_A, XVX, XVy, yVy

    def criterion(self, x: np.ndarray) -> float:
        """−2 × the REML log-likelihood (σ² profiled unless the SDs are known)."""
        try:
            logdet_V, XVX, XVy, yVy = self.pieces(x)
            c = self.base.cols
            cX = linalg.cho_factor(XVX[np.ix_(c, c)], lower=True)
        except (linalg.LinAlgError, np.linalg.LinAlgError, ValueError, FloatingPointError):
            return _BAD
        rss = yVy - XVy[c] @ linalg.cho_solve(cX, XVy[c])
        if not np.isfinite(rss) or rss <= 0:
            return _BAD
        dof = self.base.n - self.base.p
        logdet_X = 2.0 * np.sum(np.log(np.diag(cX[0])))
        if self.known:
            return float(logdet_V + logdet_X + rss + dof * np.log(2 * np.pi))
        return float(logdet_V + logdet_X + dof * (1.0 + np.log(2 * np.pi * rss / dof)))


def reml_residual(design: Design, residual: ResolvedResidual) -> RemlResult:
    """REML fit of ``y = Xβ + Zu + e`` with ``e ~ N(0, R)``, R as in ``residual``.

    Parameters
    ----------
    design : Design
    residual : ResolvedResidual
        From ``structure.resolve(data)``, one entry per row of ``design``.

    Returns
    -------
    RemlResult
        ``variance_components`` lists the random components, then the residual SDs
        (``Residual`` or ``Residual[level]``; none for KnownSD); ``residual_structure`` holds
        ρ or the correlations ``corr(t1,t2)``.
    """
    prob = _ResidualProblem(design, residual)
    if prob.size:
        # scaled to O(1) so that L-BFGS-B's first step (along −gradient) stays near the start
        starts = prob.initial()
        scale = max(1.0, min(abs(prob.criterion(x0)) for x0 in starts))
        x, converged = minimize(lambda x: prob.criterion(x) / scale, starts, prob.bounds())
    else:
        x, converged = np.zeros(0), True
    crit = prob.criterion(x)
    logdet_V, XVX, XVy, yVy = prob.pieces(x)
    c = prob.base.cols
    dof = prob.base.n - prob.base.p
    rss = yVy - XVy[c] @ linalg.solve(XVX[np.ix_(c, c)], XVy[c], assume_a="pos")
    sigma2 = 1.0 if prob.known else rss / dof
    fixed, beta, cov = fixed_table(design, XVX, XVy, sigma2)
    theta, ratios, z = prob.split(x)
    names, sds, corr_re = random_tables(prob.base, theta, sigma2)
    names += list(residual.sd_labels)
    sds = np.array(list(sds) + list(np.sqrt(sigma2) * prob.sds(ratios)))
    vc = pd.DataFrame({"sd": sds, "variance": sds**2}, index=pd.Index(names, name="component"))
    structure = pd.DataFrame({"estimate": residual.corr_values(prob.corr(z))},
                             index=pd.Index(list(residual.corr_names), name="parameter", dtype=object))
    return RemlResult(fixed_effects=fixed, variance_components=vc, correlations=corr_re,
                      loglik=-0.5 * crit, converged=converged, design=design, cov_beta=cov, beta=beta,
                      residual_structure=structure, residual=residual)
