"""Several blocks of which one is a plain factor of one coefficient per level (crossed designs
such as ``(1|a) + (1|b)``, or ``(1|item) + (Days|Subject)``).

That factor's part of M is diagonal, so it is eliminated exactly (block elimination, Schur
complement S = D_r − C'D_a⁻¹C) and only the other blocks' q_r × q_r system needs a Cholesky.
Every term involving a is a sum over the distinct row counts of its levels
(:class:`~bayes_lmm.likelihood.linalg.CountGroups`), so the cost per gradient is
O(G·(q_r + p)² + q_r³) for G distinct counts, whatever the rows and a's levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

from ..design import Design
from ..variance import block_draws, lambda_draws
from . import linalg
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, Centred, ExactForm


def eliminated_block(design: Design) -> int | None:
    """The block the crossed form eliminates: the factor of one coefficient per level (so its
    Z_a'Z_a is diagonal) with the most levels; None if no block qualifies."""
    candidates = [j for j, b in enumerate(design.blocks) if b.dense is None and b.n_coefs == 1]
    if len(design.blocks) < 2 or not candidates:
        return None
    return max(candidates, key=lambda j: design.blocks[j].n_levels)


@dataclass(frozen=True, eq=False)
class CrossedStats(Centred):
    """``WtW``, ``WtX``, ``Wty``: Z_r'Z_r, Z_r'X, Z_r'y of the other blocks r; ``eliminated``
    the position of the factor a; its diag(Z_a'Z_a) ``AtA`` (L_a,), ``AtX``, ``Aty``, the
    cross-product ``cross`` = Z_a'Z_r (L_a, q_r), and the same summed by row-count group
    (``groups``; None when their Gram matrices would take too many numbers)."""

    WtW: np.ndarray
    WtX: np.ndarray
    Wty: np.ndarray
    eliminated: int
    AtA: np.ndarray
    AtX: np.ndarray
    Aty: np.ndarray
    cross: np.ndarray
    groups: linalg.CountGroups | None
    kind = "crossed"


class CrossedForm(ExactForm):
    name = "crossed"

    @classmethod
    def applies(cls, design: Design) -> bool:
        return eliminated_block(design) is not None

    @classmethod
    def cost(cls, design: Design) -> int:
        q = sum(b.n_levels * b.n_coefs for b in design.blocks)
        return q - design.blocks[eliminated_block(design)].n_levels

    @classmethod
    def cheap(cls, design: Design, *, dense_q_max: int = DENSE_Q_MAX) -> bool:
        return cls.cost(design) <= dense_q_max

    @classmethod
    def from_design(cls, design: Design, *, gram_numbers_max: int = GRAM_NUMBERS_MAX) -> CrossedForm:
        X, y, common = Centred.columns(design)
        a = eliminated_block(design)
        Za = linalg.sparse_z([design.blocks[a]])
        Zr = linalg.sparse_z([b for j, b in enumerate(design.blocks) if j != a])
        AtA = np.asarray(Za.multiply(Za).sum(axis=0)).ravel()
        cross = np.asarray((Za.T @ Zr).todense())
        AtX, Aty = Za.T @ X, Za.T @ y
        groups = linalg.CountGroups.build(AtA, AtX, Aty, cross, max_numbers=gram_numbers_max)
        stats = CrossedStats(WtW=np.asarray((Zr.T @ Zr).todense()), WtX=Zr.T @ X, Wty=Zr.T @ y,
                             eliminated=a, AtA=AtA, AtX=AtX, Aty=Aty, cross=cross, groups=groups, **common)
        return cls(design, stats)

    def describe(self) -> str:
        return f"{self.design.blocks[self.stats.eliminated].group!r} solved out, Cholesky of the rest"

    def dynamic_levels(self) -> tuple[int, ...]:
        return (self.stats.eliminated,)

    def structure(self) -> tuple:
        return (self.name, (), self.stats.eliminated, self.stats.groups is None)

    def arrays(self) -> dict[str, np.ndarray]:
        st = self.stats
        out = st.arrays() | {"WtW": st.WtW, "WtX": st.WtX, "Wty": st.Wty}
        if st.groups is not None:
            return out | st.groups.arrays()
        return out | {"AtA": st.AtA, "AtX": st.AtX, "Aty": st.Aty, "cross": st.cross}

    def terms(self, t: dict, delta, lambdas: list, s2):
        """log|M| and B'M⁻¹B/σ_e⁴ with the factor a solved out."""
        a = self.stats.eliminated
        sizes = self.block_sizes()
        lam_a = lambdas[a][0, 0]
        rest = [j for j in range(len(lambdas)) if j != a]
        vec, mat = linalg.lambda_product([lambdas[j] for j in rest], [sizes[j] for j in rest])
        w_a = lam_a**2 / s2
        ztr_r = linalg.columns(t["Wty"], t["WtX"], delta)  # (q_r, c)
        if "group_grams" in t:
            # D_a = 1 + w_a·g is constant within a row-count group g: sums over groups only
            inv_d = 1.0 / (1.0 + w_a * t["group_values"])
            logdet_a = (t["group_counts"] * pt.log1p(w_a * t["group_values"])).sum()
            K = (t["group_grams"] * inv_d[:, None, None]).sum(axis=0)  # Z_r'Z_a D_a⁻¹ Z_a'Z_r
            cross_t = (linalg.columns(t["group_cy"], t["group_cX"], delta) * inv_d[:, None, None]).sum(axis=0)
            gram = linalg.gram(t["group_yy"], t["group_Xy"], t["group_XX"], delta)
            quad_a = (gram * inv_d[:, None, None]).sum(axis=0)  # Σ_l (Z_a'R)_l (Z_a'R)_l' / d_l
        else:
            d = 1.0 + w_a * t["AtA"]
            logdet_a = pt.log(d).sum()
            K = pt.dot((t["cross"] / d[:, None]).T, t["cross"])
            ztr_a = linalg.columns(t["Aty"], t["AtX"], delta)
            cross_t = pt.dot(t["cross"].T, ztr_a / d[:, None])
            quad_a = linalg.outer_sum(ztr_a, ztr_a, 1.0 / d)
        qr = t["WtW"].shape[0]
        S = pt.eye(qr) + linalg.sandwich(vec, mat, t["WtW"] - w_a * K) / s2
        c = linalg.lambda_t(vec, mat, ztr_r - w_a * cross_t)
        chol = pt.linalg.cholesky(S)
        w = pt.linalg.solve_triangular(chol, c, lower=True)
        logdet = logdet_a + 2.0 * pt.log(pt.diagonal(chol)).sum()
        return logdet, (lam_a**2 * quad_a + pt.dot(w.T, w)) / s2**2

    def draw_u(self, beta, sigma, corr, rng, chunk=None):
        """v_r from its marginal N(S⁻¹c/σ_e², S⁻¹), then v_a | v_r ~ N(D⁻¹(b_a/σ_e² − C v_r), D⁻¹),
        C = λ_a Z_a'Z_r Λ_r / σ_e²; u = Λv. Vectorised over chunks of draws."""
        st, design = self.stats, self.design
        a = st.eliminated
        S, La, qr = beta.shape[0], st.cross.shape[0], st.cross.shape[1]
        chunk = chunk or linalg.chunk_size(La + qr**2)
        s2 = sigma[:, -1] ** 2
        lams = [lambda_draws(sd, c, blk.n_coefs) for blk, sd, c in block_draws(design, sigma, corr)]
        rest = [j for j in range(len(design.blocks)) if j != a]
        offsets = np.cumsum([0] + [b.n_levels * b.n_coefs for b in design.blocks])
        cols_r = np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in rest])
        out = np.empty((S, offsets[-1]))
        for lo in range(0, S, chunk):
            hi = min(S, lo + chunk)
            m = hi - lo
            lam_a = lams[a][lo:hi, 0, 0]  # (m,)
            Lam_r = linalg.lambda_matrices([design.blocks[j] for j in rest], [lams[j][lo:hi] for j in rest])
            w_a = lam_a**2 / s2[lo:hi]
            d = 1.0 + w_a[:, None] * st.AtA[None]  # (m, L_a)
            delta = st.delta(beta[lo:hi])
            ztr_a = st.Aty[None] - delta @ st.AtX.T  # (m, L_a)
            ztr_r = st.Wty[None] - delta @ st.WtX.T  # (m, q_r)
            if st.groups is not None:
                K = np.einsum("sg,gij->sij", 1.0 / (1.0 + w_a[:, None] * st.groups.values[None]), st.groups.grams)
            else:
                K = np.einsum("li,sl,lj->sij", st.cross, 1.0 / d, st.cross)
            inner = st.WtW[None] - w_a[:, None, None] * K
            Smat = np.eye(qr)[None] + np.swapaxes(Lam_r, 1, 2) @ inner @ Lam_r / s2[lo:hi, None, None]
            c = np.einsum("sji,sj->si", Lam_r, ztr_r - w_a[:, None] * (ztr_a / d) @ st.cross)
            v_r = linalg.gaussian_draw(Smat, c / s2[lo:hi, None], rng)
            u_r = np.einsum("sij,sj->si", Lam_r, v_r)
            # v_a | v_r: b_a/σ² − C v_r = λ_a (Z_a'r − Z_a'Z_r u_r) / σ²
            mean_a = lam_a[:, None] * (ztr_a - u_r @ st.cross.T) / s2[lo:hi, None] / d
            v_a = mean_a + rng.standard_normal((m, La)) / np.sqrt(d)
            out[lo:hi, offsets[a]:offsets[a + 1]] = lam_a[:, None] * v_a
            out[lo:hi, cols_r] = u_r
        return out
