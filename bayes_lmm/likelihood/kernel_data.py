"""The arrays the compiled kernel (:mod:`bayes_lmm.likelihood.kernel`) reads for one design.

The structure of a model (its blocks, levels, coefficients and priors) becomes integer and
float arrays here, so a new formula only fills new arrays: nothing is compiled per model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .. import lkj
from ..design import Design
from . import linalg
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, Centred
from .kernel import SD_FAMILIES

#: largest number of coefficients per level of the block the kernel eliminates
KERNEL_K_MAX = 4


@dataclass(frozen=True)
class SdPrior:
    """One standard deviation's prior as the kernel reads it: the family, its shape (ν of
    HalfStudentT, α of InverseGamma, else 0) and log of the scale factor (log σ = that + z,
    or + z/2 on InverseGamma's variance scale)."""

    family: str
    shape: float
    log_scale: float

    @classmethod
    def of(cls, prior) -> SdPrior:
        kw = prior.kwargs()
        family = prior.family
        if family in ("HalfNormal", "HalfStudentT"):
            return cls(family, float(kw.get("nu", 0.0)), math.log(kw["sigma"]))
        if family == "HalfCauchy":
            return cls(family, 0.0, math.log(kw["beta"]))
        if family == "Exponential":
            return cls(family, 0.0, -math.log(kw["lam"]))
        if family == "InverseGamma":
            return cls(family, float(kw["alpha"]), 0.5 * math.log(kw["beta"]))
        raise ValueError(f"no standard deviation prior family {family!r}")


def eliminated_block(design: Design) -> int | None:
    """The block the kernel solves out level by level: not a dense Z block, at most
    :data:`KERNEL_K_MAX` coefficients, the most coefficients in all (levels·k); None if none."""
    candidates = [j for j, b in enumerate(design.blocks) if b.dense is None and b.n_coefs <= KERNEL_K_MAX]
    if not candidates:
        return None
    return max(candidates, key=lambda j: design.blocks[j].n_levels * design.blocks[j].n_coefs)


def remainder_size(design: Design, e: int | None) -> int:
    """Random coefficients left to the dense Cholesky after eliminating block ``e``."""
    return sum(b.n_levels * b.n_coefs for j, b in enumerate(design.blocks) if j != e)


@dataclass(frozen=True, eq=False)
class KernelData:
    """Everything the kernel reads, in its argument order (:meth:`arrays`), with the layout
    of the unconstrained vector x (``names``: PyMC's names of the value variables)."""

    names: tuple[str, ...]
    layout: dict
    beta0: np.ndarray
    beta_sd: np.ndarray

    @property
    def n_dim(self) -> int:
        return len(self.names)

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(ints, floats): the two arrays ``bl_lmm_evaluate`` reads (layout in kernel.c)."""
        L = self.layout
        G = L["counts"].shape[0]
        ke = L["grams"].shape[1]
        head = [len(L["sd_family"]), len(L["corr_eta"]), len(L["blocks"]), self.p, G, L["gram"].shape[0], ke,
                len(L["col_lam"])]
        ints = np.concatenate([np.array(head, dtype=np.int64)] + [np.asarray(L[k], dtype=np.int64).ravel() for k in
                              ("sd_family", "sd_x", "corr_x", "blocks", "col_lam", "col_start", "col_size")])
        floats = np.concatenate([np.asarray(L[k], dtype=float).ravel() for k in
                                 ("sd_shape", "sd_log_scale", "corr_eta", "stats", "counts", "gram", "grams")])
        return np.ascontiguousarray(ints), np.ascontiguousarray(floats)

    @property
    def n_sd(self) -> int:
        return self.layout["sd_family"].shape[0]

    @property
    def n_corr(self) -> int:
        return self.layout["corr_eta"].shape[0]

    @property
    def p(self) -> int:
        return self.beta0.shape[0]


def build_kernel_data(design: Design, sd_priors: list[SdPrior], eta: float, beta_mu: np.ndarray,
                      beta_sd: np.ndarray, names: tuple[str, ...], *, gram_numbers_max: int = GRAM_NUMBERS_MAX
                      ) -> KernelData:
    """The kernel's arrays for ``design`` with β ~ N(μ, diag(s²)) integrated out.

    ``sd_priors`` lists the σ_j in design order and σ_e last; ``names`` the unconstrained
    coordinates in PyMC's order (per block its σ's then its correlation's CPCs, σ_e last).
    """
    X, y, common = Centred.columns(design)
    beta0 = common["beta0"]
    B, p = len(design.blocks), design.p
    e = eliminated_block(design)
    blocks = np.zeros((B, 5), dtype=np.int64)
    sd_x, corr_x, corr_eta = [], [], []
    col_lam, col_start, col_size = [], [], []
    pos, sd0, n_corr, col = 0, 0, 0, 0
    for j, blk in enumerate(design.blocks):
        k = blk.n_coefs
        corr = blk.correlated and k > 1
        blocks[j] = (k, blk.n_levels, sd0, n_corr if corr else -1, -1 if j == e else col)
        sd_x.extend(range(pos, pos + k))
        pos += k
        sd0 += k
        if corr:
            # one coordinate per canonical partial correlation, each with its own Beta concentration
            conc = lkj.cpc_concentrations(k, eta)
            corr_x.extend(range(pos, pos + len(conc)))
            corr_eta.extend(conc)
            pos += len(conc)
            n_corr += len(conc)
        if j != e:
            for lev in range(blk.n_levels):
                col_lam.append(j)
                col_start.append(col + lev * k)
                col_size.append(k)
            col += blk.n_levels * k
    sd_x.append(pos)
    for j in range(p):
        col_lam.append(B + j)
        col_start.append(col + j)
        col_size.append(1)
    rest = [b for j, b in enumerate(design.blocks) if j != e]
    Zr = linalg.sparse_z(rest) if rest else sparse.csr_matrix((design.n, 0))
    R = sparse.hstack([Zr, sparse.csr_matrix(X), sparse.csr_matrix(y[:, None])], format="csr")
    m1 = R.shape[1]
    gram = np.asarray((R.T @ R).todense())
    if e is None:
        grams, counts = np.zeros((0, 1, 1, m1, m1)), np.zeros((0, 2))
    else:
        grams, counts = _eliminated_sums(design.blocks[e], R, gram_numbers_max)
    m = (np.asarray(beta_mu, float) - beta0) / beta_sd
    layout = {
        "sd_family": np.array([SD_FAMILIES.index(s.family) for s in sd_priors], dtype=np.int64),
        "sd_shape": np.array([s.shape for s in sd_priors], float),
        "sd_log_scale": np.array([s.log_scale for s in sd_priors], float),
        "sd_x": np.array(sd_x, dtype=np.int64),
        "corr_eta": np.array(corr_eta, float),
        "corr_x": np.array(corr_x, dtype=np.int64),
        "blocks": blocks,
        "col_lam": np.array(col_lam, dtype=np.int64),
        "col_start": np.array(col_start, dtype=np.int64),
        "col_size": np.array(col_size, dtype=np.int64),
        "stats": np.concatenate([[float(design.n)], m, beta_sd, beta0]).astype(float),
        "grams": grams,
        "counts": counts,
        "gram": gram,
    }
    if len(names) != pos + 1:
        raise ValueError(f"{len(names)} unconstrained names for {pos + 1} coordinates")
    return KernelData(names=tuple(names), layout=layout, beta0=beta0, beta_sd=np.asarray(beta_sd, float))


def level_groups(blk) -> tuple[np.ndarray, np.ndarray]:
    """The distinct Z_l'Z_l of a block's levels, flattened (G, k²), and each level's group."""
    L, k = blk.n_levels, blk.n_coefs
    EtE = np.zeros((L, k, k))
    np.add.at(EtE, blk.index, blk.values[:, :, None] * blk.values[:, None, :])
    keys, group = np.unique(EtE.reshape(L, k * k), axis=0, return_inverse=True)
    return keys, np.asarray(group).ravel()


def _eliminated_sums(blk, R, gram_numbers_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group of levels of block E with equal Z_l'Z_l: Σ_l h_la h_lb' (G, k, k, m1, m1),
    and (levels, Z_l'Z_l) (G, 1 + k²); h_l = Z_E,l'[Z_r X y] (one row per coefficient a)."""
    L, k = blk.n_levels, blk.n_coefs
    W = blk.values
    H = np.zeros((L, k, R.shape[1]))
    for a in range(k):
        Za = sparse.csr_matrix((W[:, a], (np.arange(len(W)), blk.index)), shape=(len(W), L))
        H[:, a, :] = np.asarray((Za.T @ R).todense())
    keys, group = level_groups(blk)
    G, m1 = len(keys), R.shape[1]
    if G * (k * m1) ** 2 > gram_numbers_max:
        raise ValueError(f"the grouped sums would take {G * (k * m1) ** 2:,} numbers")
    grams = np.zeros((G, k, k, m1, m1))
    counts = np.zeros((G, 1 + k * k))
    for g in range(G):
        Hg = H[group == g]
        grams[g] = np.einsum("lai,lbj->abij", Hg, Hg)
        counts[g, 0] = len(Hg)
        counts[g, 1:] = keys[g]
    return grams, counts


def kernel_applies(design: Design, *, dense_q_max: int = DENSE_Q_MAX, gram_numbers_max: int = GRAM_NUMBERS_MAX
                   ) -> bool:
    """Whether the kernel can evaluate ``design``: random blocks of at most
    :data:`KERNEL_K_MAX` coefficients, a remainder of at most ``dense_q_max`` coefficients and
    grouped sums that fit."""
    if not design.blocks or any(b.n_coefs > KERNEL_K_MAX and b.dense is None for b in design.blocks):
        return False
    e = eliminated_block(design)
    if remainder_size(design, e) > dense_q_max:
        return False
    if e is None:
        return True
    blk = design.blocks[e]
    m1 = remainder_size(design, e) + design.p + 1
    G = len(level_groups(blk)[0])
    return G * (blk.n_coefs * m1) ** 2 <= gram_numbers_max
