"""Random effects integrated out: ``y ~ N(Xβ, ZGZ' + σ_e² I)`` without n×n matrices.

Write G = ΛΛ' with Λ = blockdiag(I_L ⊗ Λ_b), Λ_b = diag(σ_b) · chol(R_b), and u = Λv with
v ~ N(0, I). With r = y − Xβ and M = I + Λ'Z'ZΛ / σ_e², the matrix determinant lemma and
Woodbury give

    log p(y | β, θ) = −½ [ n log 2π + n log σ_e² + log|M| + (r'r − b'M⁻¹b / σ_e²) / σ_e² ],

b = Λ'Z'r. Everything is a function of the sufficient statistics X'X, X'y, y'y, Z'Z, Z'X and
Z'y, so after a one-off pass over the rows the cost per gradient does not depend on n.

* One random block (any number k of coefficients per level): Z'Z is block-diagonal with one
  k×k block per level, so M splits into L small independent k×k systems (closed forms for
  k ≤ 2): cost O(L·k³); with k = 1 the levels are summed by row count beforehand
  (:class:`CountGroups`): cost O(distinct row counts).
* Nested random intercepts (``(1|litter/animal)``, any depth): V = Var(y) is block-diagonal
  by the outermost factor and each level adds σ_j² 11' to the blocks below it, so
  Sherman–Morrison applied level by level, innermost first, needs only per-level sums:
  cost O(levels), no matrices at all.
* Several blocks of which one is a plain factor of intercepts (crossed designs such as
  ``(1|a) + (1|b)``, or ``(1|item) + (Days|Subject)``): that factor's part of M is diagonal,
  so it is eliminated exactly (block elimination, Schur complement S = D_r − C'D_a⁻¹C) and
  only the other blocks' q_r × q_r system needs a Cholesky. Every term involving a is a sum
  over the distinct row counts of its levels (:class:`CountGroups`), so the cost per gradient
  is O(G·(q_r + p)² + q_r³) for G distinct counts, whatever the rows and a's levels.
* Other several-block designs: a dense q×q Cholesky of M (use for moderate q).

After sampling, u is drawn for every posterior draw from its exact Gaussian conditional
``v | y, β, θ ~ N(M⁻¹b/σ_e², M⁻¹)``, ``u = Λv``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
from scipy import sparse

from .design import Design
from .variance import block_draws, lambda_draws

#: largest total number of random coefficients q for the dense-M path under "auto"
#: (for the crossed path: of the blocks left after eliminating the largest factor)
DENSE_Q_MAX = 150
#: Gram matrices of the crossed path are grouped by row count while they take fewer numbers
GRAM_NUMBERS_MAX = 4_000_000


@dataclass(frozen=True)
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
    def build(cls, AtA: np.ndarray, AtX: np.ndarray, Aty: np.ndarray, cross: np.ndarray) -> CountGroups | None:
        """The groups, or None when their matrices would take more than GRAM_NUMBERS_MAX numbers
        (then the likelihood sums over levels)."""
        values, group, counts = np.unique(AtA, return_inverse=True, return_counts=True)
        G, qr, p = len(values), cross.shape[1], AtX.shape[1]
        if G * (qr + p + 1) ** 2 > GRAM_NUMBERS_MAX:
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


@dataclass(frozen=True)
class Statistics:
    """Sufficient statistics for the marginal likelihood (numpy arrays)."""

    kind: str  # "grouped" (one block, per-level systems), "nested", "crossed" or "dense"
    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    WtW: np.ndarray  # grouped: (L, k, k); dense: (q, q) = Z'Z; crossed: Z_r'Z_r of the other blocks
    WtX: np.ndarray  # grouped: (L, k, p); dense: (q, p);       crossed: (q_r, p)
    Wty: np.ndarray  # grouped: (L, k);    dense: (q,);         crossed: (q_r,)
    # nested: WtW/WtX/Wty hold the innermost factor's counts (L,), Z_inner'X (L, p), Z_inner'y (L,);
    # chain: block positions outermost first; parents[j]: level of chain[j] holding each level of chain[j+1]
    chain: tuple[int, ...] = ()
    parents: tuple[np.ndarray, ...] = ()
    # the y-statistics are of y − Xβ₀ (β₀ least squares), so y'y − 2β'X'y + β'X'Xβ does not
    # cancel catastrophically when y sits far from 0 (1e8 + noise); the graph uses β − β₀
    beta0: np.ndarray | None = None
    # crossed: position of the eliminated factor a, its diag(Z_a'Z_a) (L_a,), Z_a'X, Z_a'y,
    # the cross-product Z_a'Z_r (L_a, q_r), and the same summed by row-count group (None when
    # the groups' Gram matrices would take more than GRAM_NUMBERS_MAX numbers)
    eliminated: int = -1
    AtA: np.ndarray | None = None
    AtX: np.ndarray | None = None
    Aty: np.ndarray | None = None
    cross: np.ndarray | None = None
    groups: CountGroups | None = None

    @property
    def structure(self) -> tuple:
        """What the graph's shape depends on beyond the block sizes (part of the model signature)."""
        return (self.kind, self.chain, self.eliminated, self.groups is None)

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


def eliminated_block(design: Design) -> int | None:
    """The block the crossed path eliminates: the factor of one coefficient per level (so its
    Z_a'Z_a is diagonal) with the most levels; None if no block qualifies."""
    candidates = [j for j, b in enumerate(design.blocks) if b.dense is None and b.n_coefs == 1]
    if len(design.blocks) < 2 or not candidates:
        return None
    return max(candidates, key=lambda j: design.blocks[j].n_levels)


def marginal_kind(design: Design) -> str:
    """Which closed form applies: ``grouped`` (one block of gather form), ``nested`` (a chain
    of nested random intercepts), ``crossed`` (one intercept factor eliminated) or ``dense``."""
    if len(design.blocks) == 1 and design.blocks[0].dense is None:
        return "grouped"
    if nesting_chain(design) is not None:
        return "nested"
    if eliminated_block(design) is not None:
        return "crossed"
    return "dense"


def describe(design: Design) -> str:
    """Which exact form a marginal fit of ``design`` uses, in words (for summaries)."""
    kind = marginal_kind(design)
    if kind == "grouped":
        return "per-level closed form"
    if kind == "nested":
        return "nested closed form"
    if kind == "crossed":
        return f"{design.blocks[eliminated_block(design)].group!r} solved out, Cholesky of the rest"
    return "q×q Cholesky"


def cheap(design: Design) -> bool:
    """Whether the marginal form is cheap here (the rule behind ``parameterization="auto"``)."""
    if not design.blocks:
        return False
    kind = marginal_kind(design)
    if kind == "grouped":
        return design.blocks[0].n_coefs <= 4
    if kind == "nested":
        return True
    q = sum(b.n_levels * b.n_coefs for b in design.blocks)
    if kind == "crossed":
        q -= design.blocks[eliminated_block(design)].n_levels
    return q <= DENSE_Q_MAX


def _sparse_z(blocks) -> sparse.csr_matrix:
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
        groups = CountGroups.build(WtW[:, 0, 0], WtX[:, 0, :], Wty[:, 0], np.zeros((L, 0))) if k == 1 else None
        return Statistics(kind="grouped", WtW=WtW, WtX=WtX, Wty=Wty, groups=groups, **common)
    if kind == "crossed":
        a = eliminated_block(design)
        Za = _sparse_z([design.blocks[a]])
        Zr = _sparse_z([b for j, b in enumerate(design.blocks) if j != a])
        AtA = np.asarray(Za.multiply(Za).sum(axis=0)).ravel()
        cross = np.asarray((Za.T @ Zr).todense())
        AtX, Aty = Za.T @ X, Za.T @ y
        return Statistics(kind="crossed", WtW=np.asarray((Zr.T @ Zr).todense()), WtX=Zr.T @ X,
                          Wty=Zr.T @ y, eliminated=a, AtA=AtA, AtX=AtX, Aty=Aty, cross=cross,
                          groups=CountGroups.build(AtA, AtX, Aty, cross), **common)
    Z = _sparse_z(design.blocks)
    return Statistics(kind="dense", WtW=np.asarray((Z.T @ Z).todense()), WtX=Z.T @ X, Wty=Z.T @ y,
                      **common)


def _small_spd(M, k: int):
    """(log-determinant, inverse) of a batch (…, k, k) of SPD matrices (k ≥ 3; k ≤ 2 are
    written out in :func:`loglik`)."""
    chol = pt.linalg.cholesky(M)
    logdet = 2.0 * pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    return logdet, pt.linalg.inv(M)


def _columns(ty, tX, delta):
    """Z'-type statistics of the response columns: with ``delta`` (β − β₀ sampled) the
    residual r = y − Xδ, shape (…, 1); without, the columns [y, X] themselves, (…, 1 + p)
    (β integrated out). ``ty`` is (…,), ``tX`` (…, p)."""
    if delta is not None:
        return (ty - pt.dot(tX, delta))[..., None]
    return pt.concatenate([ty[..., None], tX], axis=-1)


def _gram(yy, Xy, XX, delta):
    """[y, X]'[y, X]-type statistics as (…, c, c): c = 1 (r'r, ``delta`` given) or 1 + p."""
    if delta is not None:
        return (yy - 2.0 * pt.dot(Xy, delta) + (pt.dot(XX, delta) * delta).sum(axis=-1))[..., None, None]
    top = pt.concatenate([yy[..., None, None], Xy[..., None, :]], axis=-1)
    return pt.concatenate([top, pt.concatenate([Xy[..., :, None], XX], axis=-1)], axis=-2)


def _outer_sum(a, b, weights=None):
    """Σ_l w_l a_l b_l' over the leading axis of (L, c) arrays: (c, c)."""
    return pt.dot((a if weights is None else a * weights[:, None]).T, b)


def _nested_terms(stats: dict, delta, scales: list, s2, block_sizes: list[tuple[int, int]]):
    """Σ log(1 + σ_j² A_g) and Σ σ_j² C_g C_g' / (1 + σ_j² A_g) over every level g of every factor.

    ``scales`` are σ_j² outermost first. A_g = 1'V_below⁻¹1 and C_g = 1'V_below⁻¹R are sums
    over the level's children, each child's own (A, C) shrunk by Sherman–Morrison.
    """
    A = stats["WtW"] / s2
    C = _columns(stats["Wty"], stats["WtX"], delta) / s2
    logdet, quad = 0.0, 0.0
    depth = len(scales)
    for j in range(depth - 1, -1, -1):
        denom = 1.0 + scales[j] * A
        logdet = logdet + pt.log(denom).sum()
        quad = quad + _outer_sum(C, C, scales[j] / denom)
        if j > 0:
            parent = stats[f"parent{j - 1}"]
            size = block_sizes[j - 1][0]
            A = pt.inc_subtensor(pt.zeros(size)[parent], A / denom)
            C = pt.inc_subtensor(pt.zeros((size, C.shape[1]))[parent], C / denom[:, None])
    return logdet, quad


def _lambda_product(lambdas: list, block_sizes: list[tuple[int, int]]):
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


def _sandwich(vec, mat, A):
    """Λ'AΛ for Λ = diag(vec) or Λ = mat."""
    return vec[:, None] * A * vec[None, :] if vec is not None else pt.dot(mat.T, pt.dot(A, mat))


def _lambda_t(vec, mat, B):
    """Λ'B for a (q, c) matrix B."""
    return vec[:, None] * B if vec is not None else pt.dot(mat.T, B)


def _crossed_terms(stats: dict, delta, lambdas: list, s2, block_sizes, eliminated: int):
    """log|M| and B'M⁻¹B with the intercept factor ``eliminated`` solved out (module docstring)."""
    lam_a = lambdas[eliminated][0, 0]
    rest = [j for j in range(len(lambdas)) if j != eliminated]
    vec, mat = _lambda_product([lambdas[j] for j in rest], [block_sizes[j] for j in rest])
    w_a = lam_a**2 / s2
    ztr_r = _columns(stats["Wty"], stats["WtX"], delta)  # (q_r, c)
    if "group_grams" in stats:
        # D_a = 1 + w_a·g is constant within a row-count group g: sums over groups only
        inv_d = 1.0 / (1.0 + w_a * stats["group_values"])
        logdet_a = (stats["group_counts"] * pt.log1p(w_a * stats["group_values"])).sum()
        K = (stats["group_grams"] * inv_d[:, None, None]).sum(axis=0)  # Z_r'Z_a D_a⁻¹ Z_a'Z_r
        cross_t = (_columns(stats["group_cy"], stats["group_cX"], delta) * inv_d[:, None, None]).sum(axis=0)
        gram = _gram(stats["group_yy"], stats["group_Xy"], stats["group_XX"], delta)
        quad_a = (gram * inv_d[:, None, None]).sum(axis=0)  # Σ_l (Z_a'R)_l (Z_a'R)_l' / d_l
    else:
        d = 1.0 + w_a * stats["AtA"]
        logdet_a = pt.log(d).sum()
        K = pt.dot((stats["cross"] / d[:, None]).T, stats["cross"])
        ztr_a = _columns(stats["Aty"], stats["AtX"], delta)
        cross_t = pt.dot(stats["cross"].T, ztr_a / d[:, None])
        quad_a = _outer_sum(ztr_a, ztr_a, 1.0 / d)
    qr = stats["WtW"].shape[0]
    S = pt.eye(qr) + _sandwich(vec, mat, stats["WtW"] - w_a * K) / s2
    c = _lambda_t(vec, mat, ztr_r - w_a * cross_t)
    chol = pt.linalg.cholesky(S)
    w = pt.linalg.solve_triangular(chol, c, lower=True)
    logdet = logdet_a + 2.0 * pt.log(pt.diagonal(chol)).sum()
    return logdet, lam_a**2 * quad_a + pt.dot(w.T, w)


def _grouped_terms(stats: dict, delta, lam, s2, k: int):
    """log|M| and B'M⁻¹B for one block: L independent k×k systems."""
    W = stats["WtW"]
    if k == 1 and "group_yy" in stats:
        # one coefficient: M is constant within a group of levels of equal Σ w² (the row
        # count for an intercept), so the sums run over those groups, not over levels
        lam2 = lam[0, 0] ** 2
        m = 1.0 + stats["group_values"] * lam2 / s2
        gram = _gram(stats["group_yy"], stats["group_Xy"], stats["group_XX"], delta)
        return (stats["group_counts"] * pt.log(m)).sum(), lam2 * (gram / m[:, None, None]).sum(axis=0)
    # elementwise products and sums only: fast in both the C and the numba backends
    Wtr = _columns(stats["Wty"], stats["WtX"], delta)  # (L, k, c)
    if k == 1:
        lam2 = lam[0, 0] ** 2
        m = 1.0 + W[:, 0, 0] * lam2 / s2
        return pt.log(m).sum(), lam2 * _outer_sum(Wtr[:, 0], Wtr[:, 0], 1.0 / m)
    if k == 2:
        # Λ = [[p, 0], [q, t]] (lower): M = I + Λ'W'WΛ/σ², B = Λ'W'R, written out per level
        p_, q_, t_ = lam[0, 0], lam[1, 0], lam[1, 1]
        w00, w01, w11 = W[:, 0, 0], W[:, 0, 1], W[:, 1, 1]
        m00 = 1.0 + (p_**2 * w00 + 2.0 * p_ * q_ * w01 + q_**2 * w11) / s2
        m01 = t_ * (p_ * w01 + q_ * w11) / s2
        m11 = 1.0 + t_**2 * w11 / s2
        b0 = p_ * Wtr[:, 0] + q_ * Wtr[:, 1]
        b1 = t_ * Wtr[:, 1]
        det = m00 * m11 - m01**2
        cross = _outer_sum(b0, b1, m01 / det)  # the two cross terms are transposes
        quad = _outer_sum(b0, b0, m11 / det) - cross - cross.T + _outer_sum(b1, b1, m00 / det)
        return pt.log(det).sum(), quad
    tmp = (lam.T[None, :, :, None] * W[:, None, :, :]).sum(axis=2)  # Λ'W'W
    A = (tmp[:, :, :, None] * lam[None, None, :, :]).sum(axis=2)  # Λ'W'WΛ
    b = (Wtr[:, :, None, :] * lam[None, :, :, None]).sum(axis=1)  # (L, k, c): Λ' (W'R)_l
    M = pt.eye(k)[None] + A / s2
    logdet, Minv = _small_spd(M, k)
    Mb = (Minv[:, :, :, None] * b[:, None, :, :]).sum(axis=2)  # (L, k, c)
    return logdet.sum(), (b[:, :, :, None] * Mb[:, :, None, :]).sum(axis=(0, 1))


def _precision_terms(stats: dict, delta, lambdas: list, sigma_e, *, kind: str,
                     block_sizes: list[tuple[int, int]], eliminated: int):
    """log|V| − n log σ_e² and P = R'V⁻¹R for the response columns R (see :func:`_columns`)."""
    s2 = sigma_e**2
    T = _gram(pt.as_tensor(stats["yty"]), stats["Xty"], stats["XtX"], delta) / s2
    if kind == "grouped":
        logdet_M, quad_b = _grouped_terms(stats, delta, lambdas[0], s2, block_sizes[0][1])
    elif kind == "nested":
        # block_sizes and lambdas arrive outermost first (the chain order)
        scales = [lam[0, 0] ** 2 for lam in lambdas]
        logdet, quad = _nested_terms(stats, delta, scales, s2, block_sizes)
        return logdet, T - quad
    elif kind == "crossed":
        logdet_M, quad_b = _crossed_terms(stats, delta, lambdas, s2, block_sizes, eliminated)
    else:
        # Λ diagonal when every block has one coefficient: Λ'Z'ZΛ = (λλ') ∘ Z'Z, no products
        vec, mat = _lambda_product(lambdas, block_sizes)
        M = pt.eye(stats["WtW"].shape[0]) + _sandwich(vec, mat, stats["WtW"]) / s2
        chol = pt.linalg.cholesky(M)
        b = _lambda_t(vec, mat, _columns(stats["Wty"], stats["WtX"], delta))
        w = pt.linalg.solve_triangular(chol, b, lower=True)
        logdet_M, quad_b = 2.0 * pt.log(pt.diagonal(chol)).sum(), pt.dot(w.T, w)
    return logdet_M, T - quad_b / s2**2


def loglik(stats: dict, beta, lambdas: list, sigma_e, *, kind: str, block_sizes: list[tuple[int, int]],
           eliminated: int = -1):
    """Marginal log-likelihood log p(y | β, θ) as a PyTensor expression.

    Parameters
    ----------
    stats : dict of PyTensor variables
        The fields of :class:`Statistics` (as ``pm.Data`` so a compiled model can be reused).
    beta : (p,) tensor
        Enters as β − β₀ (``stats["beta0"]``), matching the centred statistics.
    lambdas : list of (k, k) tensors
        Λ_b = diag(σ_b) · chol(R_b) for each block.
    sigma_e : scalar tensor
    kind : {"grouped", "nested", "crossed", "dense"}
    block_sizes : list of (levels, k) per block
    eliminated : int
        crossed: position of the intercept factor solved out.
    """
    logdet, P = _precision_terms(stats, beta - stats["beta0"], lambdas, sigma_e, kind=kind,
                                 block_sizes=block_sizes, eliminated=eliminated)
    n = stats["n"]
    return -0.5 * (n * np.log(2 * np.pi) + n * pt.log(sigma_e**2) + logdet + P[0, 0])


def loglik_beta_integrated(stats: dict, prior_mu, prior_sd, lambdas: list, sigma_e, *, kind: str,
                           block_sizes: list[tuple[int, int]], eliminated: int = -1):
    """log p(y | θ) with β ~ N(μ, diag(s²)) integrated out as well, and β's exact conditional.

    With P = [y, X]'V⁻¹[y, X] (in β − β₀ units: h = X'V⁻¹(y − Xβ₀), H = X'V⁻¹X) the
    posterior of β given θ is Gaussian with precision A = H + diag(s⁻²); in standard units
    (β − β₀ = s ∘ z) A_s = sHs + I (well conditioned whatever the scale of X) and
    b_s = s ∘ h + (μ − β₀)/s:

        log p(y | θ) = −½ [ n log 2π + log|V| + y'V⁻¹y + |m|² − b_s'A_s⁻¹b_s + log|A_s| ],

    m = (μ − β₀)/s. Returns (log p(y | θ), E[β | y, θ], chol(A_s)): β | y, θ = E + s ∘ L⁻ᵀε.
    """
    logdet, P = _precision_terms(stats, None, lambdas, sigma_e, kind=kind, block_sizes=block_sizes,
                                 eliminated=eliminated)
    m = (prior_mu - stats["beta0"]) / prior_sd
    p = m.type.shape[0]
    A = prior_sd[:, None] * P[1:, 1:] * prior_sd[None, :] + pt.eye(p if p is not None else m.shape[0])
    b = prior_sd * P[1:, 0] + m
    if p is not None and p <= SMALL_P_UNROLLED:
        chol, w, x, logdet_A = _unrolled_cholesky_solve(A, b, p)
    else:
        chol = pt.linalg.cholesky(A)
        w = pt.linalg.solve_triangular(chol, b, lower=True)
        x = pt.linalg.solve_triangular(chol.T, w, lower=False)
        logdet_A = 2.0 * pt.log(pt.diagonal(chol)).sum()
    n = stats["n"]
    value = -0.5 * (n * np.log(2 * np.pi) + n * pt.log(sigma_e**2) + logdet + P[0, 0] + pt.dot(m, m)
                    - pt.dot(w, w) + logdet_A)
    return value, stats["beta0"] + prior_sd * x, chol


#: up to this many fixed effects the p×p Cholesky of the β-integrated form is written out
#: element by element: numba compiled LAPACK's Cholesky and triangular solves (and their
#: gradients) for the notes' Example 1 in 70 s against 26 s without them
SMALL_P_UNROLLED = 4


def _unrolled_cholesky_solve(A, b, p: int):
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


def draw_beta(mean: np.ndarray, chol: np.ndarray, prior_sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact draws of β | y, θ from the conditional that :func:`loglik_beta_integrated` carries
    out of the sampler: ``mean`` (S, p), ``chol`` (S, p, p) the Cholesky factor L of the
    standardised precision A_s; β = mean + s ∘ L⁻ᵀε has covariance diag(s) A_s⁻¹ diag(s)."""
    eps = rng.standard_normal(mean.shape)
    noise = np.linalg.solve(np.swapaxes(chol, -1, -2), eps[..., None])[..., 0]
    return mean + prior_sd * noise


def draw_u(stats: Statistics, design: Design, beta: np.ndarray, sigma: np.ndarray,
           corr: np.ndarray | None, rng: np.random.Generator, chunk: int | None = None) -> np.ndarray:
    """Exact conditional draws of u for every posterior draw: shape (S, q).

    ``sigma`` holds (S, components + 1) SDs with σ_e last; ``corr`` the correlation draws.
    """
    if chunk is None:
        # draws per pass: temporaries of about 2e6 numbers each, whatever the number of levels
        if stats.kind == "crossed":
            per_draw = stats.cross.shape[0] + stats.cross.shape[1] ** 2
        else:
            per_draw = sum(b.n_levels * b.n_coefs**2 for b in design.blocks)
        chunk = int(np.clip(2_000_000 // max(per_draw, 1), 8, 256))
    if stats.kind == "nested":
        return _draw_u_nested(stats, design, beta, sigma, rng, chunk)
    S = beta.shape[0]
    s2 = sigma[:, -1] ** 2
    lams = [lambda_draws(sd, c, blk.n_coefs) for blk, sd, c in block_draws(design, sigma, corr)]
    if stats.kind == "crossed":
        return _draw_u_crossed(stats, design, beta, s2, lams, rng, chunk)
    if stats.kind == "grouped" and design.blocks[0].n_coefs == 1:
        # elementwise: u_l | y ~ λ·N(λ (Z'r)_l / (σ² m_l), 1/m_l), m_l = 1 + λ² (Z'Z)_l / σ²
        w, out = stats.WtW[:, 0, 0], np.empty((S, design.blocks[0].n_levels))
        for lo in range(0, S, chunk):
            hi = min(S, lo + chunk)
            lam = lams[0][lo:hi, 0, 0][:, None]
            ztr = stats.Wty[None, :, 0] - stats.delta(beta[lo:hi]) @ stats.WtX[:, 0, :].T
            m = 1.0 + w[None] * lam**2 / s2[lo:hi, None]
            v = lam * ztr / s2[lo:hi, None] / m + rng.standard_normal(m.shape) / np.sqrt(m)
            out[lo:hi] = lam * v
        return out
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
        Lam = _lambda_matrices(design.blocks, [lam[s : s + 1] for lam in lams])[0]
        Ztr = stats.Wty - stats.WtX @ stats.delta(beta[s])
        M = np.eye(q) + Lam.T @ stats.WtW @ Lam / s2[s]
        chol = np.linalg.cholesky(M)
        mean = np.linalg.solve(M, Lam.T @ Ztr) / s2[s]
        v = mean + np.linalg.solve(chol.T, rng.standard_normal(q))
        out[s] = Lam @ v
    return out


def _lambda_matrices(blocks, lams: list[np.ndarray]) -> np.ndarray:
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


def _draw_u_crossed(stats: Statistics, design: Design, beta: np.ndarray, s2: np.ndarray,
                    lams: list[np.ndarray], rng: np.random.Generator, chunk: int) -> np.ndarray:
    """Exact draws with the intercept factor a solved out: v_r from its marginal N(S⁻¹c/σ_e², S⁻¹),
    then v_a | v_r ~ N(D⁻¹(b_a/σ_e² − C v_r), D⁻¹), C = λ_a Z_a'Z_r Λ_r / σ_e²; u = Λv.
    Vectorised over chunks of draws (the products with Z_a'Z_r are matrix products)."""
    a = stats.eliminated
    rest = [j for j in range(len(design.blocks)) if j != a]
    offsets = np.cumsum([0] + [b.n_levels * b.n_coefs for b in design.blocks])
    cols_r = np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in rest])
    S, La, qr = beta.shape[0], stats.cross.shape[0], stats.cross.shape[1]
    out = np.empty((S, offsets[-1]))
    for lo in range(0, S, chunk):
        hi = min(S, lo + chunk)
        m = hi - lo
        lam_a = lams[a][lo:hi, 0, 0]  # (m,)
        Lam_r = _lambda_matrices([design.blocks[j] for j in rest], [lams[j][lo:hi] for j in rest])
        w_a = lam_a**2 / s2[lo:hi]
        d = 1.0 + w_a[:, None] * stats.AtA[None]  # (m, L_a)
        delta = stats.delta(beta[lo:hi])
        ztr_a = stats.Aty[None] - delta @ stats.AtX.T  # (m, L_a)
        ztr_r = stats.Wty[None] - delta @ stats.WtX.T  # (m, q_r)
        if stats.groups is not None:
            K = np.einsum("sg,gij->sij", 1.0 / (1.0 + w_a[:, None] * stats.groups.values[None]), stats.groups.grams)
        else:
            K = np.einsum("li,sl,lj->sij", stats.cross, 1.0 / d, stats.cross)
        inner = stats.WtW[None] - w_a[:, None, None] * K
        Smat = np.eye(qr)[None] + np.swapaxes(Lam_r, 1, 2) @ inner @ Lam_r / s2[lo:hi, None, None]
        c = np.einsum("sji,sj->si", Lam_r, ztr_r - w_a[:, None] * (ztr_a / d) @ stats.cross)
        chol = np.linalg.cholesky(Smat)
        eps = rng.standard_normal((m, qr))
        v_r = (np.linalg.solve(Smat, c[..., None])[..., 0] / s2[lo:hi, None]
               + np.linalg.solve(np.swapaxes(chol, 1, 2), eps[..., None])[..., 0])
        u_r = np.einsum("sij,sj->si", Lam_r, v_r)
        # v_a | v_r: b_a/σ² − C v_r = λ_a (Z_a'r − Z_a'Z_r u_r) / σ²
        mean_a = lam_a[:, None] * (ztr_a - u_r @ stats.cross.T) / s2[lo:hi, None] / d
        v_a = mean_a + rng.standard_normal((m, La)) / np.sqrt(d)
        out[lo:hi, offsets[a]:offsets[a + 1]] = lam_a[:, None] * v_a
        out[lo:hi, cols_r] = u_r
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
