"""Linear algebra shared by the exact forms: PyTensor pieces of the log-density and numpy
pieces of the conditional draws.

Notation (see :mod:`bayes_lmm.likelihood`): Λ = blockdiag(I_L ⊗ Λ_b), M = I + Λ'Z'ZΛ / σ_e²,
the response columns R = [y − Xδ] (β sampled, δ = β − β₀) or R = [y, X] (β integrated out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
from scipy import sparse

#: up to this many fixed effects the p×p Cholesky of the β-integrated form is written out
#: element by element: numba compiled LAPACK's Cholesky and triangular solves (and their
#: gradients) for the notes' Example 1 in 70 s against 26 s without them
SMALL_P_UNROLLED = 4


@dataclass(frozen=True, eq=False)
class CountGroups:
    """Statistics of a one-coefficient factor a (the single block of the grouped form, or the
    factor the crossed form solves out) summed over its levels that share one value g of
    diag(Z_a'Z_a) (the row count, for plain intercepts): M is constant within such a group, so
    every term of the likelihood that involves a is a weighted sum over groups and the cost per
    gradient does not depend on the number of levels of a. The grouped form has no other
    blocks (q_r = 0) and reads only counts, values, yy, Xy and XX.

    For group g with levels l: ``counts`` = #levels, ``values`` = g, ``grams`` = Σ c_l c_l',
    ``cy`` = Σ c_l (Z_a'y)_l, ``cX`` = Σ c_l ⊗ (Z_a'X)_l, ``yy`` = Σ (Z_a'y)_l²,
    ``Xy`` = Σ (Z_a'X)_l (Z_a'y)_l, ``XX`` = Σ (Z_a'X)_l (Z_a'X)_l', with c_l the row l of Z_a'Z_r.
    """

    counts: np.ndarray  # (G,)
    values: np.ndarray  # (G,)
    grams: np.ndarray  # (G, q_r, q_r)
    cy: np.ndarray  # (G, q_r)
    cX: np.ndarray  # (G, q_r, p)
    yy: np.ndarray  # (G,)
    Xy: np.ndarray  # (G, p)
    XX: np.ndarray  # (G, p, p)

    @classmethod
    def build(cls, AtA: np.ndarray, AtX: np.ndarray, Aty: np.ndarray, cross: np.ndarray, *,
              max_numbers: int) -> CountGroups | None:
        """The groups, or None when their matrices would take more than ``max_numbers``
        numbers (then the likelihood sums over levels)."""
        values, group, counts = np.unique(AtA, return_inverse=True, return_counts=True)
        G, qr, p = len(values), cross.shape[1], AtX.shape[1]
        if G * (qr + p + 1) ** 2 > max_numbers:
            return None
        grams, cy, cX = np.zeros((G, qr, qr)), np.zeros((G, qr)), np.zeros((G, qr, p))
        yy, Xy, XX = np.zeros(G), np.zeros((G, p)), np.zeros((G, p, p))
        for g in range(G):
            rows = group == g
            c, x, y = cross[rows], AtX[rows], Aty[rows]
            grams[g], cy[g], cX[g] = c.T @ c, c.T @ y, c.T @ x
            yy[g], Xy[g], XX[g] = y @ y, x.T @ y, x.T @ x
        return cls(counts=counts.astype(float), values=values, grams=grams, cy=cy, cX=cX,
                   yy=yy, Xy=Xy, XX=XX)

    def arrays(self, names=None) -> dict[str, np.ndarray]:
        """The fields as graph data named ``group_<field>`` (all, or the given ones)."""
        names = names or ("counts", "values", "grams", "cy", "cX", "yy", "Xy", "XX")
        return {f"group_{f}": getattr(self, f) for f in names}


def sparse_z(blocks) -> sparse.csr_matrix:
    """Z of the given blocks as a sparse matrix (n × Σ levels·k), columns in u's order."""
    parts = []
    for b in blocks:
        if b.dense is not None:
            parts.append(sparse.csr_matrix(b.dense))
            continue
        n, k = b.values.shape
        rows = np.repeat(np.arange(n), k)
        cols = (b.index[:, None] * k + np.arange(k)[None, :]).ravel()
        parts.append(sparse.csr_matrix((b.values.ravel(), (rows, cols)), shape=(n, b.n_levels * k)))
    return sparse.hstack(parts, format="csr")


# ---------------------------------------------------------------- PyTensor pieces
def small_spd(M):
    """(log-determinant, inverse) of a batch (…, k, k) of SPD matrices (k ≥ 3; k ≤ 2 are
    written out by the grouped form)."""
    chol = pt.linalg.cholesky(M)
    logdet = 2.0 * pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    return logdet, pt.linalg.inv(M)


def columns(ty, tX, delta):
    """Z'-type statistics of the response columns: with ``delta`` (β − β₀ sampled) the
    residual r = y − Xδ, shape (…, 1); without, the columns [y, X] themselves, (…, 1 + p)
    (β integrated out). ``ty`` is (…,), ``tX`` (…, p)."""
    if delta is not None:
        return (ty - pt.dot(tX, delta))[..., None]
    return pt.concatenate([ty[..., None], tX], axis=-1)


def gram(yy, Xy, XX, delta):
    """[y, X]'[y, X]-type statistics as (…, c, c): c = 1 (r'r, ``delta`` given) or 1 + p."""
    if delta is not None:
        return (yy - 2.0 * pt.dot(Xy, delta) + (pt.dot(XX, delta) * delta).sum(axis=-1))[..., None, None]
    top = pt.concatenate([yy[..., None, None], Xy[..., None, :]], axis=-1)
    return pt.concatenate([top, pt.concatenate([Xy[..., :, None], XX], axis=-1)], axis=-2)


def outer_sum(a, b, weights=None):
    """Σ_l w_l a_l b_l' over the leading axis of (L, c) arrays: (c, c)."""
    return pt.dot((a if weights is None else a * weights[:, None]).T, b)


def lambda_product(lambdas: list, block_sizes: list[tuple[int, int]]):
    """Λ = blockdiag(I_L ⊗ Λ_b) as ``(diagonal, None)`` when every block has one coefficient
    (then Λ is diagonal: no matrix products needed) or ``(None, matrix)``."""
    if all(k == 1 for _, k in block_sizes):
        return pt.concatenate([pt.repeat(lam[0, 0][None], levels)
                               for lam, (levels, _) in zip(lambdas, block_sizes)]), None
    parts = []
    for lam, (levels, k) in zip(lambdas, block_sizes):
        eye = pt.eye(levels)
        parts.append((eye[:, None, :, None] * lam[None, :, None, :]).reshape((levels * k, levels * k)))
    return None, (pt.linalg.block_diag(*parts) if len(parts) > 1 else parts[0])


def sandwich(vec, mat, A):
    """Λ'AΛ for Λ = diag(vec) or Λ = mat."""
    return vec[:, None] * A * vec[None, :] if vec is not None else pt.dot(mat.T, pt.dot(A, mat))


def lambda_t(vec, mat, B):
    """Λ'B for a (q, c) matrix B."""
    return vec[:, None] * B if vec is not None else pt.dot(mat.T, B)


def unrolled_cholesky_solve(A, b, p: int):
    """L = chol(A), w = L⁻¹b, x = A⁻¹b and log|A| for a small SPD A with static size p,
    written out in scalar operations (no LAPACK op in the graph)."""
    L = [[pt.zeros(()) for _ in range(p)] for _ in range(p)]
    for j in range(p):
        L[j][j] = pt.sqrt(A[j, j] - sum((L[j][k] ** 2 for k in range(j)), pt.zeros(())))
        for i in range(j + 1, p):
            L[i][j] = (A[i, j] - sum((L[i][k] * L[j][k] for k in range(j)), pt.zeros(()))) / L[j][j]
    w = []
    for i in range(p):
        w.append((b[i] - sum((L[i][k] * w[k] for k in range(i)), pt.zeros(()))) / L[i][i])
    x = [None] * p
    for i in reversed(range(p)):
        x[i] = (w[i] - sum((L[k][i] * x[k] for k in range(i + 1, p)), pt.zeros(()))) / L[i][i]
    logdet = 2.0 * sum((pt.log(L[i][i]) for i in range(p)), pt.zeros(()))
    chol = pt.stack([pt.stack(row) for row in L])
    return chol, pt.stack(w), pt.stack(x), logdet


def cholesky_solve(A, b):
    """(chol(A), L⁻¹b, A⁻¹b, log|A|), written out for a static p ≤ :data:`SMALL_P_UNROLLED`."""
    p = A.type.shape[0]
    if p is not None and p <= SMALL_P_UNROLLED:
        return unrolled_cholesky_solve(A, b, p)
    chol = pt.linalg.cholesky(A)
    w = pt.linalg.solve_triangular(chol, b, lower=True)
    x = pt.linalg.solve_triangular(chol.T, w, lower=False)
    return chol, w, x, 2.0 * pt.log(pt.diagonal(chol)).sum()


# ---------------------------------------------------------------- numpy pieces
def chunk_size(per_draw: int) -> int:
    """Draws per pass: temporaries of about 2e6 numbers each, whatever the number of levels."""
    return int(np.clip(2_000_000 // max(per_draw, 1), 8, 256))


def lambda_matrices(blocks, lams: list[np.ndarray]) -> np.ndarray:
    """Λ = blockdiag(I_L ⊗ Λ_b) for a stack of m draws: (m, q, q)."""
    m = lams[0].shape[0] if lams else 0
    q = sum(b.n_levels * b.n_coefs for b in blocks)
    Lam = np.zeros((m, q, q))
    pos = 0
    for blk, lam in zip(blocks, lams):
        L, k = blk.n_levels, blk.n_coefs
        first = pos + np.arange(L)[:, None, None] * k
        Lam[:, first + np.arange(k)[None, :, None], first + np.arange(k)[None, None, :]] = lam[:, None, :, :]
        pos += L * k
    return Lam


def block_scale(blocks, lams: list[np.ndarray], W: np.ndarray, side: str) -> np.ndarray:
    """Λ'W (``side="left"``, rows of W) or WΛ (``"right"``, columns) for one draw's
    Λ = blockdiag(I_L ⊗ Λ_b) (``lams`` (k, k) each), without forming Λ: O(q²k), not O(q³)."""
    out = np.array(W, dtype=float, copy=True)
    pos = 0
    for blk, lam in zip(blocks, lams):
        L, k = blk.n_levels, blk.n_coefs
        cols = slice(pos, pos + L * k)
        if side == "right":
            part = out[..., cols].reshape(out.shape[:-1] + (L, k))
            out[..., cols] = (part @ lam).reshape(out.shape[:-1] + (L * k,))
        else:
            part = out[cols].reshape((L, k) + out.shape[1:])
            out[cols] = np.einsum("ca,lc...->la...", lam, part).reshape(out[cols].shape)
        pos += L * k
    return out


def gaussian_draw(precision: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws of N(P⁻¹b, P⁻¹) for a stack of SPD precisions P (…, k, k) and vectors b (…, k)."""
    if precision.ndim == 2:
        # one large system: its Cholesky factor and two triangular solves (no LU)
        from scipy import linalg as sla

        chol = sla.cholesky(precision, lower=True)
        mean = sla.cho_solve((chol, True), b)
        return mean + sla.solve_triangular(chol, rng.standard_normal(mean.shape), lower=True, trans="T")
    chol = np.linalg.cholesky(precision)
    mean = np.linalg.solve(precision, b[..., None])[..., 0]
    eps = rng.standard_normal(mean.shape)
    # L⁻ᵀε has covariance (LL')⁻¹ = P⁻¹
    return mean + np.linalg.solve(np.swapaxes(chol, -1, -2), eps[..., None])[..., 0]
