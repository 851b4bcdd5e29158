"""One random block (any number k of coefficients per level, not a dense Z block).

Z'Z is block-diagonal with one k×k block per level, so M splits into L small independent
k×k systems (closed forms for k ≤ 2): cost O(L·k³); with k = 1 the levels are summed by row
count beforehand (:class:`~bayes_lmm.likelihood.linalg.CountGroups`): cost O(distinct row
counts). The number of levels enters only as data shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

from ..design import Design
from ..variance import block_draws, lambda_draws
from . import linalg
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, Centred, ExactForm

#: largest k for which ``auto`` prefers the per-level closed form
K_MAX = 4


@dataclass(frozen=True, eq=False)
class GroupedStats(Centred):
    """Per level l: ``WtW`` (L, k, k) = W_l'W_l, ``WtX`` (L, k, p), ``Wty`` (L, k) with W_l the
    rows of level l; ``groups`` the k = 1 sums by row count (None for k > 1 or too many)."""

    WtW: np.ndarray
    WtX: np.ndarray
    Wty: np.ndarray
    groups: linalg.CountGroups | None
    kind = "grouped"


class GroupedForm(ExactForm):
    name = "grouped"

    @classmethod
    def applies(cls, design: Design) -> bool:
        return len(design.blocks) == 1 and design.blocks[0].dense is None

    @classmethod
    def cost(cls, design: Design) -> int:
        return design.blocks[0].n_coefs

    @classmethod
    def cheap(cls, design: Design, *, dense_q_max: int = DENSE_Q_MAX) -> bool:
        return design.blocks[0].n_coefs <= K_MAX

    @classmethod
    def from_design(cls, design: Design, *, gram_numbers_max: int = GRAM_NUMBERS_MAX) -> GroupedForm:
        X, y, common = Centred.columns(design)
        blk = design.blocks[0]
        L, k, p = blk.n_levels, blk.n_coefs, design.p
        W = blk.values
        WtW, WtX, Wty = np.zeros((L, k, k)), np.zeros((L, k, p)), np.zeros((L, k))
        np.add.at(WtW, blk.index, W[:, :, None] * W[:, None, :])
        np.add.at(WtX, blk.index, W[:, :, None] * X[:, None, :])
        np.add.at(Wty, blk.index, W * y[:, None])
        groups = None
        if k == 1:
            groups = linalg.CountGroups.build(WtW[:, 0, 0], WtX[:, 0, :], Wty[:, 0], np.zeros((L, 0)),
                                              max_numbers=gram_numbers_max)
        return cls(design, GroupedStats(WtW=WtW, WtX=WtX, Wty=Wty, groups=groups, **common))

    def describe(self) -> str:
        return "per-level closed form"

    def dynamic_levels(self) -> tuple[int, ...]:
        return (0,)

    def structure(self) -> tuple:
        return (self.name, (), -1, self.stats.groups is None)

    def arrays(self) -> dict[str, np.ndarray]:
        st = self.stats
        out = st.arrays() | {"WtW": st.WtW, "WtX": st.WtX, "Wty": st.Wty}
        if st.groups is not None:
            # the grouped form reads counts, values and the y/X sums only
            out |= st.groups.arrays(("counts", "values", "yy", "Xy", "XX"))
        return out

    def terms(self, t: dict, delta, lambdas: list, s2):
        """log|M| and B'M⁻¹B/σ_e⁴ for one block: L independent k×k systems."""
        lam, k = lambdas[0], self.design.blocks[0].n_coefs
        W = t["WtW"]
        if k == 1 and "group_yy" in t:
            # one coefficient: M is constant within a group of levels of equal Σ w² (the row
            # count for an intercept), so the sums run over those groups, not over levels
            lam2 = lam[0, 0] ** 2
            m = 1.0 + t["group_values"] * lam2 / s2
            gram = linalg.gram(t["group_yy"], t["group_Xy"], t["group_XX"], delta)
            return (t["group_counts"] * pt.log(m)).sum(), lam2 * (gram / m[:, None, None]).sum(axis=0) / s2**2
        # elementwise products and sums only: fast in both the C and the numba backends
        Wtr = linalg.columns(t["Wty"], t["WtX"], delta)  # (L, k, c)
        if k == 1:
            lam2 = lam[0, 0] ** 2
            m = 1.0 + W[:, 0, 0] * lam2 / s2
            return pt.log(m).sum(), lam2 * linalg.outer_sum(Wtr[:, 0], Wtr[:, 0], 1.0 / m) / s2**2
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
            cross = linalg.outer_sum(b0, b1, m01 / det)  # the two cross terms are transposes
            quad = linalg.outer_sum(b0, b0, m11 / det) - cross - cross.T + linalg.outer_sum(b1, b1, m00 / det)
            return pt.log(det).sum(), quad / s2**2
        tmp = (lam.T[None, :, :, None] * W[:, None, :, :]).sum(axis=2)  # Λ'W'W
        A = (tmp[:, :, :, None] * lam[None, None, :, :]).sum(axis=2)  # Λ'W'WΛ
        b = (Wtr[:, :, None, :] * lam[None, :, :, None]).sum(axis=1)  # (L, k, c): Λ' (W'R)_l
        M = pt.eye(k)[None] + A / s2
        logdet, Minv = linalg.small_spd(M)
        Mb = (Minv[:, :, :, None] * b[:, None, :, :]).sum(axis=2)  # (L, k, c)
        return logdet.sum(), (b[:, :, :, None] * Mb[:, :, None, :]).sum(axis=(0, 1)) / s2**2

    def draw_u(self, beta, sigma, corr, rng, chunk=None):
        st, blk = self.stats, self.design.blocks[0]
        L, k = blk.n_levels, blk.n_coefs
        chunk = chunk or linalg.chunk_size(L * k**2)
        S = beta.shape[0]
        s2 = sigma[:, -1] ** 2
        (_, sd, c), = block_draws(self.design, sigma, corr)
        lams = lambda_draws(sd, c, k)
        out = np.empty((S, L * k))
        for lo in range(0, S, chunk):
            hi = min(S, lo + chunk)
            Wtr = st.Wty[None] - np.einsum("lkp,sp->slk", st.WtX, st.delta(beta[lo:hi]))
            if k == 1:
                # elementwise: u_l | y ~ λ·N(λ (Z'r)_l / (σ² m_l), 1/m_l), m_l = 1 + λ² (Z'Z)_l / σ²
                lam = lams[lo:hi, 0, 0][:, None]
                m = 1.0 + st.WtW[None, :, 0, 0] * lam**2 / s2[lo:hi, None]
                v = lam * Wtr[..., 0] / s2[lo:hi, None] / m + rng.standard_normal(m.shape) / np.sqrt(m)
                out[lo:hi] = lam * v
                continue
            lam = lams[lo:hi]  # (s, k, k)
            A = np.einsum("sji,ljm,smn->slin", lam, st.WtW, lam)
            M = np.eye(k) + A / s2[lo:hi, None, None, None]
            b = np.einsum("sji,slj->sli", lam, Wtr) / s2[lo:hi, None, None]
            v = linalg.gaussian_draw(M, b, rng)
            out[lo:hi] = np.einsum("sij,slj->sli", lam, v).reshape(hi - lo, L * k)
        return out
