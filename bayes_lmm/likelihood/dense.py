"""Any design (the fallback of the exact forms): a dense q×q Cholesky of M (Woodbury and the
matrix determinant lemma), for moderate q."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt

from ..design import Design
from ..variance import block_draws, lambda_draws
from . import linalg
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, Centred, ExactForm


@dataclass(frozen=True, eq=False)
class DenseStats(Centred):
    """``WtW`` = Z'Z (q, q), ``WtX`` = Z'X (q, p), ``Wty`` = Z'y (q,)."""

    WtW: np.ndarray
    WtX: np.ndarray
    Wty: np.ndarray
    kind = "dense"


class DenseForm(ExactForm):
    name = "dense"

    @classmethod
    def applies(cls, design: Design) -> bool:
        return bool(design.blocks)

    @classmethod
    def cost(cls, design: Design) -> int:
        return sum(b.n_levels * b.n_coefs for b in design.blocks)

    @classmethod
    def cheap(cls, design: Design, *, dense_q_max: int = DENSE_Q_MAX) -> bool:
        return cls.cost(design) <= dense_q_max

    @classmethod
    def from_design(cls, design: Design, *, gram_numbers_max: int = GRAM_NUMBERS_MAX) -> DenseForm:
        X, y, common = Centred.columns(design)
        Z = linalg.sparse_z(design.blocks)
        return cls(design, DenseStats(WtW=np.asarray((Z.T @ Z).todense()), WtX=Z.T @ X, Wty=Z.T @ y, **common))

    def describe(self) -> str:
        return "q×q Cholesky"

    def structure(self) -> tuple:
        return (self.name, (), -1, True)

    def arrays(self) -> dict[str, np.ndarray]:
        st = self.stats
        return st.arrays() | {"WtW": st.WtW, "WtX": st.WtX, "Wty": st.Wty}

    def terms(self, t: dict, delta, lambdas: list, s2):
        # Λ diagonal when every block has one coefficient: Λ'Z'ZΛ = (λλ') ∘ Z'Z, no products
        vec, mat = linalg.lambda_product(lambdas, self.block_sizes())
        M = pt.eye(t["WtW"].shape[0]) + linalg.sandwich(vec, mat, t["WtW"]) / s2
        chol = pt.linalg.cholesky(M)
        b = linalg.lambda_t(vec, mat, linalg.columns(t["Wty"], t["WtX"], delta))
        w = pt.linalg.solve_triangular(chol, b, lower=True)
        return 2.0 * pt.log(pt.diagonal(chol)).sum(), pt.dot(w.T, w) / s2**2

    def draw_u(self, beta, sigma, corr, rng, chunk=None):
        """One q×q system per draw: v ~ N(M⁻¹Λ'Z'r/σ_e², M⁻¹), u = Λv."""
        st, design = self.stats, self.design
        s2 = sigma[:, -1] ** 2
        lams = [lambda_draws(sd, c, blk.n_coefs) for blk, sd, c in block_draws(design, sigma, corr)]
        S, q = beta.shape[0], st.WtW.shape[0]
        out = np.empty((S, q))
        blocks = design.blocks
        for s in range(S):
            lam_s = [lam[s] for lam in lams]
            Ztr = st.Wty - st.WtX @ st.delta(beta[s])
            # Λ is block-diagonal: Λ'Z'ZΛ and Λ'Z'r by blocks, O(q²k) instead of O(q³)
            A = linalg.block_scale(blocks, lam_s, linalg.block_scale(blocks, lam_s, st.WtW, "right"), "left")
            M = np.eye(q) + A / s2[s]
            b = linalg.block_scale(blocks, lam_s, Ztr, "left") / s2[s]
            v = linalg.gaussian_draw(M, b, rng)
            # u = Λv: v's rows by blocks times Λ_b'
            out[s] = linalg.block_scale(blocks, [lam.T for lam in lam_s], v, "right")
        return out
