"""Nested random intercepts (``(1|litter/animal)``, any depth).

V = Var(y) is block-diagonal by the outermost factor and each level adds σ_j² 11' to the
blocks below it, so Sherman–Morrison applied level by level, innermost first, needs only
per-level sums: cost O(levels), no matrices at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
from scipy import sparse

from ..design import Design
from . import linalg
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, Centred, ExactForm


def nesting_chain(design: Design) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]] | None:
    """Blocks forming a chain of nested random intercepts, outermost first, with parent maps.

    Every row must belong to one level of each block with Z value 1, and each level of a
    finer block must sit inside exactly one level of the next coarser one. None otherwise.
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


@dataclass(frozen=True, eq=False)
class NestedStats(Centred):
    """The innermost factor's row counts (L,), Z_inner'X (L, p) and Z_inner'y (L,); ``chain``
    the block positions outermost first; ``parents[j]`` the level of chain[j] holding each
    level of chain[j + 1]."""

    counts: np.ndarray
    WtX: np.ndarray
    Wty: np.ndarray
    chain: tuple[int, ...]
    parents: tuple[np.ndarray, ...]
    kind = "nested"


class NestedForm(ExactForm):
    name = "nested"

    @classmethod
    def applies(cls, design: Design) -> bool:
        return nesting_chain(design) is not None

    @classmethod
    def cheap(cls, design: Design, *, dense_q_max: int = DENSE_Q_MAX) -> bool:
        return True

    @classmethod
    def from_design(cls, design: Design, *, gram_numbers_max: int = GRAM_NUMBERS_MAX) -> NestedForm:
        X, y, common = Centred.columns(design)
        chain, parents = nesting_chain(design)
        inner = design.blocks[chain[-1]]
        L = inner.n_levels
        counts = np.bincount(inner.index, minlength=L).astype(float)
        WtX = np.zeros((L, design.p))
        np.add.at(WtX, inner.index, X)
        Wty = np.bincount(inner.index, weights=y, minlength=L)
        return cls(design, NestedStats(counts=counts, WtX=WtX, Wty=Wty, chain=chain, parents=parents, **common))

    def describe(self) -> str:
        return "nested closed form"

    def structure(self) -> tuple:
        return (self.name, self.stats.chain, -1, True)

    def arrays(self) -> dict[str, np.ndarray]:
        st = self.stats
        out = st.arrays() | {"counts": st.counts, "WtX": st.WtX, "Wty": st.Wty}
        return out | {f"parent{j}": np.asarray(p, dtype=np.int64) for j, p in enumerate(st.parents)}

    def terms(self, t: dict, delta, lambdas: list, s2):
        """Σ log(1 + σ_j² A_g) and Σ σ_j² C_g C_g' / (1 + σ_j² A_g) over every level g of every
        factor, outermost first: A_g = 1'V_below⁻¹1 and C_g = 1'V_below⁻¹R are sums over the
        level's children, each child's own (A, C) shrunk by Sherman–Morrison."""
        chain = self.stats.chain
        scales = [lambdas[b][0, 0] ** 2 for b in chain]
        sizes = [self.design.blocks[b].n_levels for b in chain]
        A = t["counts"] / s2
        C = linalg.columns(t["Wty"], t["WtX"], delta) / s2
        logdet, quad = 0.0, 0.0
        for j in range(len(chain) - 1, -1, -1):
            denom = 1.0 + scales[j] * A
            logdet = logdet + pt.log(denom).sum()
            quad = quad + linalg.outer_sum(C, C, scales[j] / denom)
            if j > 0:
                parent = t[f"parent{j - 1}"]
                A = pt.inc_subtensor(pt.zeros(sizes[j - 1])[parent], A / denom)
                C = pt.inc_subtensor(pt.zeros((sizes[j - 1], C.shape[1]))[parent], C / denom[:, None])
        return logdet, quad

    def draw_u(self, beta, sigma, corr, rng, chunk=None):
        """Outermost first: u_g | ancestors, y is Gaussian with precision 1/σ_j² + A_g and mean
        (C_g − shift_g A_g) / precision, shift_g the sum of the ancestors' draws (the same A, C
        as in the likelihood)."""
        st, design = self.stats, self.design
        chain, parents = st.chain, st.parents
        chunk = chunk or linalg.chunk_size(sum(b.n_levels for b in design.blocks))
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
            A = np.broadcast_to(st.counts / s2, (hi - lo, sizes[-1]))
            C = (st.Wty[None] - st.delta(beta[lo:hi]) @ st.WtX.T) / s2
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
