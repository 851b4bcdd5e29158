"""The joint conditional of β and u given θ and y: the location step of the blocked Gibbs
sampler (:mod:`bayes_lmm.gibbs_sampling`).

With every random coefficient its own variance component (random intercepts, uncorrelated
slopes, matrix Z blocks), u_c ~ N(0, σ_c² I) and β ~ N(μ, diag(s²)), the conditional of
(β, u) given θ = (σ_c, σ_e) and y is Gaussian with precision Q/σ_e², where

    Q = [X Z]'[X Z] + diag(σ_e²/s², σ_e²/σ_c² …),   mean Q⁻¹([X Z]'y + (σ_e² μ/s², 0)).

Q is sparse. One component E with one level per row (the largest) has a diagonal block
D = diag(Σ_i z_i² + σ_e²/σ_E²) and is solved out level by level; the remaining columns
W = [X, Z_rest] (r of them: p + the other components' levels) are drawn from their marginal
with one dense Cholesky of the Schur complement

    S = W'W + diag(…) − B'D⁻¹B,   B = Z_E'W,

and then u_E given them: x_W = S⁻¹c + σ_e L⁻ᵀz, u_E = D⁻¹(Z_E'y − B x_W) + σ_e D^(−1/2) z_E,
with c = W'y − B'D⁻¹Z_E'y (+ the β prior's term) and z standard normal. This is an exact draw.
B'D⁻¹B costs Σ_levels nnz_l² / 2 multiply-adds (the compiled kernel's ``bl_gibbs_schur``; a
sparse product where the kernel is missing), the Cholesky r³/3 (LAPACK, without the
interpreter lock: :mod:`.lapack`).

β is handled as δ = β − β₀ (β₀ least squares) and y as y − Xβ₀, so that y far from 0 (1e8 +
noise) does not cancel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ..design import Design
from . import lapack


@dataclass(frozen=True, eq=False)
class Component:
    """One variance component's columns of Z: ``Z`` (n × levels, CSR), where its entries sit
    in the design's u (``u_index``, one per level) and whether each row has at most one level
    (``by_row``: then Z'Z is diagonal and the component can be solved out level by level)."""

    name: str
    Z: sparse.csr_matrix
    u_index: np.ndarray
    by_row: bool

    @property
    def n_levels(self) -> int:
        return self.Z.shape[1]


def components(design: Design) -> list[Component]:
    """The design's variance components, each with its own Z columns (a block of k
    uncorrelated coefficients gives k components; u is level-major within a block)."""
    out, offset, n = [], 0, design.n
    for blk in design.blocks:
        k, L = blk.n_coefs, blk.n_levels
        for c, name in enumerate(blk.components):
            u_index = offset + np.arange(L) * k + c
            if blk.dense is not None:
                Z = sparse.csr_matrix(np.asarray(blk.dense, float))
            else:
                Z = sparse.csr_matrix((np.asarray(blk.values[:, c], float), (np.arange(n), blk.index)), shape=(n, L))
            Z.eliminate_zeros()
            out.append(Component(name, Z, u_index, by_row=blk.dense is None))
        offset += L * k
    return out


def eliminated(comps: list[Component]) -> int | None:
    """The component solved out level by level: one level per row, the most levels."""
    candidates = [j for j, c in enumerate(comps) if c.by_row]
    return max(candidates, key=lambda j: comps[j].n_levels) if candidates else None


class LocationSystem:
    """The statistics of the location step, formed once per fit (one pass over the rows).

    Parameters
    ----------
    design : Design
    beta_mu, beta_sd : ndarray, shape (p,)
        The Normal prior of β.
    schur : callable, optional
        The compiled ``bl_gibbs_schur`` (:class:`bayes_lmm.likelihood.kernel.Kernel`); None:
        a sparse product.
    """

    def __init__(self, design: Design, beta_mu: np.ndarray, beta_sd: np.ndarray, *, schur=None):
        self.X = X = np.asarray(design.X, float)
        self.n, self.p = design.n, design.p
        self.beta0 = np.linalg.lstsq(X, design.y, rcond=None)[0] if self.p else np.zeros(0)
        self.y = design.y - X @ self.beta0
        self.prior_precision = 1.0 / np.asarray(beta_sd, float) ** 2
        self.prior_shift = (np.asarray(beta_mu, float) - self.beta0) * self.prior_precision
        self.comps = components(design)
        self.e = eliminated(self.comps)
        rest = [j for j in range(len(self.comps)) if j != self.e]
        self.rest = rest
        self.W = sparse.hstack([sparse.csr_matrix(X)] + [self.comps[j].Z for j in rest], format="csr")
        self.r = self.W.shape[1]
        # where each remaining component's levels sit among W's columns
        starts = np.cumsum([self.p] + [self.comps[j].n_levels for j in rest])
        self.columns = {j: slice(int(a), int(b)) for j, a, b in zip(rest, starts[:-1], starts[1:])}
        self.A = np.ascontiguousarray((self.W.T @ self.W).toarray())
        self.Wty = np.asarray(self.W.T @ self.y).ravel()
        if self.e is not None:
            ZE = self.comps[self.e].Z
            self.dE = np.asarray(ZE.multiply(ZE).sum(axis=0)).ravel()
            self.ZEty = np.asarray(ZE.T @ self.y).ravel()
            B = (ZE.T @ self.W).tocsr()
            B.sort_indices()
            self.B = B
            self.B_parts = (B.indptr.astype(np.int64), B.indices.astype(np.int64), np.ascontiguousarray(B.data, float))
        self.schur = schur

    @property
    def eliminated_name(self) -> str | None:
        return None if self.e is None else self.comps[self.e].name

    def precision_diagonal(self, sigma: np.ndarray, sigma_e: float) -> np.ndarray:
        """diag(σ_e²/s², σ_e²/σ_c² …) over W's columns."""
        s2 = sigma_e * sigma_e
        parts = [s2 * self.prior_precision] + [np.full(self.comps[j].n_levels, s2 / sigma[j] ** 2) for j in self.rest]
        return np.concatenate(parts)

    def factor(self, sigma: np.ndarray, sigma_e: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(S factored in place: L in its lower triangle, the right-hand side c, the weights
        D⁻¹ of the eliminated levels or None). Raises ``numpy.linalg.LinAlgError`` where S is
        not positive definite."""
        add = self.precision_diagonal(sigma, sigma_e)
        rhs = self.Wty.copy()
        rhs[: self.p] += sigma_e * sigma_e * self.prior_shift
        S = np.empty((self.r, self.r))
        w = None
        if self.e is None:
            np.copyto(S, self.A)
            S[np.diag_indices(self.r)] += add
        else:
            w = 1.0 / (self.dE + sigma_e * sigma_e / sigma[self.e] ** 2)
            rhs -= self.B.T @ (self.ZEty * w)
            if self.schur is not None:
                indptr, indices, data = self.B_parts
                self.schur(self.r, self.A.ctypes.data, add.ctypes.data, len(w), indptr.ctypes.data,
                           indices.ctypes.data, data.ctypes.data, w.ctypes.data, S.ctypes.data)
            else:
                np.copyto(S, self.A - (self.B.T @ sparse.diags(w) @ self.B).toarray())
                S[np.diag_indices(self.r)] += add
        if not lapack.cholesky_inplace(S):
            raise np.linalg.LinAlgError("the location step's Schur complement is not positive definite")
        return S, rhs, w

    def draw(self, sigma: np.ndarray, sigma_e: float, noise_rest: np.ndarray, noise_eliminated: np.ndarray | None
             ) -> tuple[np.ndarray, list[np.ndarray]]:
        """(δ = β − β₀, [u_c per component]) drawn from the conditional given θ, with the
        standard normal vectors given (length r and the eliminated component's levels): the
        draw is linear in them, so a zero noise gives the conditional mean."""
        L, x, w = self.factor(sigma, sigma_e)
        lapack.solve_lower(L, x)
        x += sigma_e * noise_rest
        lapack.solve_lower(L, x, transposed=True)
        u = [None] * len(self.comps)
        for j, cols in self.columns.items():
            u[j] = x[cols].copy()
        if self.e is not None:
            u[self.e] = w * (self.ZEty - self.B @ x) + sigma_e * np.sqrt(w) * noise_eliminated
        return x[: self.p].copy(), u

    def fitted(self, delta: np.ndarray, u: list[np.ndarray]) -> np.ndarray:
        """Xδ + Σ_c Z_c u_c (in the centred units of ``self.y``)."""
        out = self.X @ delta if self.p else np.zeros(self.n)
        for comp, u_c in zip(self.comps, u):
            out = out + comp.Z @ u_c
        return out
