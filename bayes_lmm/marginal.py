"""Random effects integrated out: ``y ~ N(Xβ, ZGZ' + σ_e² I)`` without n×n matrices.

Write G = ΛΛ' with Λ = blockdiag(I_L ⊗ Λ_b), Λ_b = diag(σ_b) · chol(R_b), and u = Λv with
v ~ N(0, I). With r = y − Xβ and M = I + Λ'Z'ZΛ / σ_e², the matrix determinant lemma and
Woodbury give

    log p(y | β, θ) = −½ [ n log 2π + n log σ_e² + log|M| + (r'r − b'M⁻¹b / σ_e²) / σ_e² ],

b = Λ'Z'r. Everything is a function of the sufficient statistics X'X, X'y, y'y, Z'Z, Z'X and
Z'y, so after a one-off pass over the rows the cost per gradient does not depend on n.

* One random block (any number k of coefficients per level): Z'Z is block-diagonal with one
  k×k block per level, so M splits into L small independent k×k systems (closed forms for
  k ≤ 2): cost O(L·k³).
* Nested random intercepts (``(1|litter/animal)``, any depth): V = Var(y) is block-diagonal
  by the outermost factor and each level adds σ_j² 11' to the blocks below it, so
  Sherman–Morrison applied level by level, innermost first, needs only per-level sums:
  cost O(levels), no matrices at all.
* Other several-block designs: a dense q×q Cholesky of M (use for moderate q).

After sampling, u is drawn for every posterior draw from its exact Gaussian conditional
``v | y, β, θ ~ N(M⁻¹b/σ_e², M⁻¹)``, ``u = Λv``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

from .design import Design
from .variance import block_draws, lambda_draws

#: largest total number of random coefficients q for the dense-M path under "auto"
DENSE_Q_MAX = 150


@dataclass(frozen=True)
class Statistics:
    """Sufficient statistics for the marginal likelihood (numpy arrays)."""

    kind: str  # "grouped" (one block, per-level systems), "nested" or "dense"
    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    WtW: np.ndarray  # grouped: (L, k, k); dense: (q, q) = Z'Z
    WtX: np.ndarray  # grouped: (L, k, p); dense: (q, p)
    Wty: np.ndarray  # grouped: (L, k);    dense: (q,)
    # nested: WtW/WtX/Wty hold the innermost factor's counts (L,), Z_inner'X (L, p), Z_inner'y (L,);
    # chain: block positions outermost first; parents[j]: level of chain[j] holding each level of chain[j+1]
    chain: tuple[int, ...] = ()
    parents: tuple[np.ndarray, ...] = ()
    # the y-statistics are of y − Xβ₀ (β₀ least squares), so y'y − 2β'X'y + β'X'Xβ does not
    # cancel catastrophically when y sits far from 0 (1e8 + noise); the graph uses β − β₀
    beta0: np.ndarray | None = None

    def delta(self, beta: np.ndarray) -> np.ndarray:
        """β − β₀ for draws (…, p)."""
        return beta if self.beta0 is None else beta - self.beta0


@functools.lru_cache(maxsize=4)
def nesting_chain(design: Design) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]] | None:
    """Blocks forming a chain of nested random intercepts, outermost first, with parent maps.

    Every row must belong to one level of each block with Z value 1, and each level of a
    finer block must sit inside exactly one level of the next coarser one. None otherwise.
    Cached per design: ``auto``, the statistics and the model signature all ask.
    """
    blocks = design.blocks
    if len(blocks) < 2:
        return None
    for b in blocks:
        if b.dense is not None or b.n_coefs != 1 or not np.all(b.values == 1.0):
            return None
    order = tuple(sorted(range(len(blocks)), key=lambda j: blocks[j].n_levels))
    parents = []
    for outer, inner in zip(order[:-1], order[1:]):
        bo, bi = blocks[outer], blocks[inner]
        parent = np.full(bi.n_levels, -1, dtype=np.int64)
        parent[bi.index] = bo.index
        # nested: the map inner level → outer level is a function (one outer level per inner level)
        if np.any(parent[bi.index] != bo.index) or np.any(parent < 0):
            return None
        parents.append(parent)
    return order, tuple(parents)


def marginal_kind(design: Design) -> str:
    """Which closed form applies: ``grouped`` (one block of gather form), ``nested`` (a chain
    of nested random intercepts) or ``dense``."""
    if len(design.blocks) == 1 and design.blocks[0].dense is None:
        return "grouped"
    if nesting_chain(design) is not None:
        return "nested"
    return "dense"


def cheap(design: Design) -> bool:
    """Whether the marginal form is cheap here (the rule behind ``parameterization="auto"``)."""
    if not design.blocks:
        return False
    kind = marginal_kind(design)
    if kind == "grouped":
        return design.blocks[0].n_coefs <= 4
    if kind == "nested":
        return True
    return sum(b.n_levels * b.n_coefs for b in design.blocks) <= DENSE_Q_MAX


@functools.lru_cache(maxsize=4)
def statistics(design: Design) -> Statistics:
    """One pass over the rows: the cross-products the marginal likelihood needs.

    Cached per design (designs are immutable) so that building the graph and drawing u
    after sampling do not pass over the rows twice.
    """
    X = design.X
    beta0 = np.linalg.lstsq(X, design.y, rcond=None)[0] if design.p else np.zeros(0)
    y = design.y - X @ beta0
    common = dict(n=design.n, XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y), beta0=beta0)
    kind = marginal_kind(design)
    if kind == "nested":
        chain, parents = nesting_chain(design)
        inner = design.blocks[chain[-1]]
        L = inner.n_levels
        counts = np.bincount(inner.index, minlength=L).astype(float)
        WtX = np.zeros((L, design.p))
        np.add.at(WtX, inner.index, X)
        Wty = np.bincount(inner.index, weights=y, minlength=L)
        return Statistics(kind="nested", WtW=counts, WtX=WtX, Wty=Wty, chain=chain, parents=parents, **common)
    if kind == "grouped":
        blk = design.blocks[0]
        L, k, p = blk.n_levels, blk.n_coefs, design.p
        W = blk.values
        WtW = np.zeros((L, k, k))
        WtX = np.zeros((L, k, p))
        Wty = np.zeros((L, k))
        np.add.at(WtW, blk.index, W[:, :, None] * W[:, None, :])
        np.add.at(WtX, blk.index, W[:, :, None] * X[:, None, :])
        np.add.at(Wty, blk.index, W * y[:, None])
        return Statistics(kind="grouped", WtW=WtW, WtX=WtX, Wty=Wty, **common)
    Z = design.Z
    return Statistics(kind="dense", WtW=Z.T @ Z, WtX=Z.T @ X, Wty=Z.T @ y, **common)


def _small_spd(M, k: int):
    """(log-determinant, inverse) of a batch (…, k, k) of SPD matrices (k ≥ 3; k ≤ 2 are
    written out in :func:`loglik`)."""
    chol = pt.linalg.cholesky(M)
    logdet = 2.0 * pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    return logdet, pt.linalg.inv(M)


def _nested_terms(stats: dict, beta, scales: list, s2, block_sizes: list[tuple[int, int]]):
    """Σ log(1 + σ_j² A_g) and Σ σ_j² C_g² / (1 + σ_j² A_g) over every level g of every factor.

    ``scales`` are σ_j² outermost first. A_g = 1'V_below⁻¹1 and C_g = 1'V_below⁻¹r are sums
    over the level's children, each child's own (A, C) shrunk by Sherman–Morrison.
    """
    A = stats["WtW"] / s2
    C = (stats["Wty"] - pt.dot(stats["WtX"], beta)) / s2
    logdet, quad = 0.0, 0.0
    depth = len(scales)
    for j in range(depth - 1, -1, -1):
        denom = 1.0 + scales[j] * A
        logdet = logdet + pt.log(denom).sum()
        quad = quad + (scales[j] * C**2 / denom).sum()
        if j > 0:
            parent = stats[f"parent{j - 1}"]
            size = block_sizes[j - 1][0]
            A = pt.inc_subtensor(pt.zeros(size)[parent], A / denom)
            C = pt.inc_subtensor(pt.zeros(size)[parent], C / denom)
    return logdet, quad


def loglik(stats: dict, beta, lambdas: list, sigma_e, *, kind: str, block_sizes: list[tuple[int, int]]):
    """Marginal log-likelihood as a PyTensor expression.

    Parameters
    ----------
    stats : dict of PyTensor variables
        The fields of :class:`Statistics` (as ``pm.Data`` so a compiled model can be reused).
    beta : (p,) tensor
        Enters as β − β₀ (``stats["beta0"]``), matching the centred statistics.
    lambdas : list of (k, k) tensors
        Λ_b = diag(σ_b) · chol(R_b) for each block.
    sigma_e : scalar tensor
    kind : {"grouped", "dense"}
    block_sizes : list of (levels, k) per block
    """
    s2 = sigma_e**2
    beta = beta - stats["beta0"]
    rtr = stats["yty"] - 2.0 * pt.dot(stats["Xty"], beta) + pt.dot(beta, pt.dot(stats["XtX"], beta))
    if kind == "grouped":
        (lam,) = lambdas
        k = block_sizes[0][1]
        # elementwise products and sums only: fast in both the C and the numba backends
        Wtr = stats["Wty"] - (stats["WtX"] * beta[None, None, :]).sum(axis=-1)  # (L, k)
        W = stats["WtW"]
        if k == 1:
            lam2 = lam[0, 0] ** 2
            m = 1.0 + W[:, 0, 0] * lam2 / s2
            logdet_M = pt.log(m).sum()
            quad_b = (lam2 * Wtr[:, 0] ** 2 / m).sum()
        elif k == 2:
            # Λ = [[p, 0], [q, t]] (lower): M = I + Λ'W'WΛ/σ², b = Λ'W'r, written out per level
            p_, q_, t_ = lam[0, 0], lam[1, 0], lam[1, 1]
            w00, w01, w11 = W[:, 0, 0], W[:, 0, 1], W[:, 1, 1]
            m00 = 1.0 + (p_**2 * w00 + 2.0 * p_ * q_ * w01 + q_**2 * w11) / s2
            m01 = t_ * (p_ * w01 + q_ * w11) / s2
            m11 = 1.0 + t_**2 * w11 / s2
            b0 = p_ * Wtr[:, 0] + q_ * Wtr[:, 1]
            b1 = t_ * Wtr[:, 1]
            det = m00 * m11 - m01**2
            logdet_M = pt.log(det).sum()
            quad_b = ((m11 * b0**2 - 2.0 * m01 * b0 * b1 + m00 * b1**2) / det).sum()
        else:
            tmp = (lam.T[None, :, :, None] * W[:, None, :, :]).sum(axis=2)  # Λ'W'W
            A = (tmp[:, :, :, None] * lam[None, None, :, :]).sum(axis=2)  # Λ'W'WΛ
            b = (Wtr[:, :, None] * lam[None, :, :]).sum(axis=1)  # rows: Λ' Wtr_l
            M = pt.eye(k)[None] + A / s2
            logdet, Minv = _small_spd(M, k)
            quad_b = (b[:, :, None] * Minv * b[:, None, :]).sum()
            logdet_M = logdet.sum()
    elif kind == "nested":
        # block_sizes and lambdas arrive outermost first (the chain order)
        scales = [lam[0, 0] ** 2 for lam in lambdas]
        logdet_extra, quad_extra = _nested_terms(stats, beta, scales, s2, block_sizes)
        n = stats["n"]
        return -0.5 * (n * np.log(2 * np.pi) + n * pt.log(s2) + logdet_extra + rtr / s2 - quad_extra)
    elif all(k == 1 for _, k in block_sizes):
        # intercept-like blocks: Λ is diagonal, so Λ'Z'ZΛ = (λλ') ∘ Z'Z needs no matrix products
        lam_vec = pt.concatenate([pt.repeat(lam[0, 0][None], levels) for lam, (levels, _) in zip(lambdas, block_sizes)])
        Ztr = stats["Wty"] - pt.dot(stats["WtX"], beta)
        M = pt.eye(lam_vec.shape[0]) + lam_vec[:, None] * stats["WtW"] * lam_vec[None, :] / s2
        chol = pt.linalg.cholesky(M)
        w = pt.linalg.solve_triangular(chol, lam_vec * Ztr, lower=True)
        quad_b = pt.dot(w, w)
        logdet_M = 2.0 * pt.log(pt.diagonal(chol)).sum()
    else:
        parts = []
        for lam, (levels, k) in zip(lambdas, block_sizes):
            eye = pt.eye(levels)
            parts.append((eye[:, None, :, None] * lam[None, :, None, :]).reshape((levels * k, levels * k)))
        Lam = pt.linalg.block_diag(*parts) if len(parts) > 1 else parts[0]
        q = Lam.shape[0]
        Ztr = stats["Wty"] - pt.dot(stats["WtX"], beta)
        M = pt.eye(q) + pt.dot(Lam.T, pt.dot(stats["WtW"], Lam)) / s2
        chol = pt.linalg.cholesky(M)
        b = pt.dot(Lam.T, Ztr)
        w = pt.linalg.solve_triangular(chol, b, lower=True)
        quad_b = pt.dot(w, w)
        logdet_M = 2.0 * pt.log(pt.diagonal(chol)).sum()
    n = stats["n"]
    quad = (rtr - quad_b / s2) / s2
    return -0.5 * (n * np.log(2 * np.pi) + n * pt.log(s2) + logdet_M + quad)


def draw_u(stats: Statistics, design: Design, beta: np.ndarray, sigma: np.ndarray,
           corr: np.ndarray | None, rng: np.random.Generator, chunk: int | None = None) -> np.ndarray:
    """Exact conditional draws of u for every posterior draw: shape (S, q).

    ``sigma`` holds (S, components + 1) SDs with σ_e last; ``corr`` the correlation draws.
    """
    if chunk is None:
        # draws per pass: temporaries of about 2e6 numbers each, whatever the number of levels
        q = sum(b.n_levels * b.n_coefs**2 for b in design.blocks)
        chunk = int(np.clip(2_000_000 // max(q, 1), 8, 256))
    if stats.kind == "nested":
        return _draw_u_nested(stats, design, beta, sigma, rng, chunk)
    S = beta.shape[0]
    s2 = sigma[:, -1] ** 2
    lams = [lambda_draws(sd, c, blk.n_coefs) for blk, sd, c in block_draws(design, sigma, corr)]
    if stats.kind == "grouped":
        blk = design.blocks[0]
        L, k = blk.n_levels, blk.n_coefs
        out = np.empty((S, L * k))
        for lo in range(0, S, chunk):
            hi = min(S, lo + chunk)
            lam = lams[0][lo:hi]  # (s, k, k)
            Wtr = stats.Wty[None] - np.einsum("lkp,sp->slk", stats.WtX, stats.delta(beta[lo:hi]))
            A = np.einsum("sji,ljm,smn->slin", lam, stats.WtW, lam)
            M = np.eye(k) + A / s2[lo:hi, None, None, None]
            b = np.einsum("sji,slj->sli", lam, Wtr)
            chol = np.linalg.cholesky(M)
            mean = np.linalg.solve(M, b[..., None])[..., 0] / s2[lo:hi, None, None]
            eps = rng.standard_normal(mean.shape)
            # v = mean + L^{-T} ε has covariance M^{-1}
            noise = np.linalg.solve(np.swapaxes(chol, -1, -2), eps[..., None])[..., 0]
            v = mean + noise
            out[lo:hi] = np.einsum("sij,slj->sli", lam, v).reshape(hi - lo, L * k)
        return out
    q = sum(b.n_levels * b.n_coefs for b in design.blocks)
    out = np.empty((S, q))
    for s in range(S):
        Lam = np.zeros((q, q))
        pos = 0
        for blk, lam in zip(design.blocks, lams):
            size = blk.n_levels * blk.n_coefs
            Lam[pos : pos + size, pos : pos + size] = np.kron(np.eye(blk.n_levels), lam[s])
            pos += size
        Ztr = stats.Wty - stats.WtX @ stats.delta(beta[s])
        M = np.eye(q) + Lam.T @ stats.WtW @ Lam / s2[s]
        chol = np.linalg.cholesky(M)
        mean = np.linalg.solve(M, Lam.T @ Ztr) / s2[s]
        v = mean + np.linalg.solve(chol.T, rng.standard_normal(q))
        out[s] = Lam @ v
    return out


def _draw_u_nested(stats: Statistics, design: Design, beta: np.ndarray, sigma: np.ndarray,
                   rng: np.random.Generator, chunk: int) -> np.ndarray:
    """Exact draws of nested intercepts, outermost first: u_g | ancestors, y is Gaussian with
    precision 1/σ_j² + A_g and mean (C_g − shift_g A_g) / precision, shift_g the sum of
    the ancestors' draws (the same A, C as in the likelihood)."""
    from scipy import sparse

    chain, parents = stats.chain, stats.parents
    depth = len(chain)
    sizes = [design.blocks[b].n_levels for b in chain]
    # P_j (L_{j+1} × L_j): sums a level's values into its parent level
    P = [sparse.csr_matrix((np.ones(len(par)), (np.arange(len(par)), par)), shape=(len(par), sizes[j]))
         for j, par in enumerate(parents)]
    offsets = np.cumsum([0] + [b.n_levels for b in design.blocks])
    S = beta.shape[0]
    out = np.empty((S, offsets[-1]))
    for lo in range(0, S, chunk):
        hi = min(S, lo + chunk)
        s2 = sigma[lo:hi, -1:] ** 2
        scales = [sigma[lo:hi, chain[j]][:, None] ** 2 for j in range(depth)]
        A = np.broadcast_to(stats.WtW / s2, (hi - lo, sizes[-1]))
        C = (stats.Wty[None] - stats.delta(beta[lo:hi]) @ stats.WtX.T) / s2
        As, Cs = [None] * depth, [None] * depth
        for j in range(depth - 1, -1, -1):
            As[j], Cs[j] = A, C
            if j > 0:
                denom = 1.0 + scales[j] * A
                A = (P[j - 1].T @ (A / denom).T).T
                C = (P[j - 1].T @ (C / denom).T).T
        shift = np.zeros((hi - lo, sizes[0]))
        for j in range(depth):
            prec = 1.0 / np.maximum(scales[j], 1e-300) + As[j]
            u = (Cs[j] - shift * As[j]) / prec + rng.standard_normal(prec.shape) / np.sqrt(prec)
            b = chain[j]
            out[lo:hi, offsets[b]:offsets[b + 1]] = u
            if j + 1 < depth:
                shift = (shift + u)[:, parents[j]]
    return out
