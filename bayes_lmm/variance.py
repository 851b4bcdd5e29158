"""Variance components: σ and σ² tables, fractions of variance, ICCs and Var(y).

All functions take posterior draws as arrays with the draw axes flattened first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .contrasts import interval_bounds
from .design import RESIDUAL, Design


def _summ(flat: np.ndarray, prefix: str, prob: float, interval: str) -> dict[str, np.ndarray]:
    lower, upper = interval_bounds(flat, prob=prob, interval=interval)
    return {
        f"{prefix}_mean": flat.mean(axis=0),
        f"{prefix}_median": np.median(flat, axis=0),
        f"{prefix}_lower": lower,
        f"{prefix}_upper": upper,
    }


def variance_table(sigma: np.ndarray, names: list[str], *, prob: float, interval: str = "eti") -> pd.DataFrame:
    """One row per component (``Residual`` last): SD and variance summaries and fraction.

    ``fraction_*`` is the posterior of σ_j² / (Σ_k σ_k² + σ_e²), the share of the
    variance of one observation (for random intercepts) that the component explains.
    """
    var = sigma**2
    frac = var / var.sum(axis=1, keepdims=True)
    cols = {}
    cols.update(_summ(sigma, "sd", prob, interval))
    cols.update(_summ(var, "variance", prob, interval))
    cols.update(_summ(frac, "fraction", prob, interval))
    return pd.DataFrame(cols, index=pd.Index(names, name="component"))


def nesting(design: Design) -> dict[str, list[str]]:
    """For each intercept block, the other intercept blocks whose levels it is nested in.

    Block A is nested in B when each level of A occurs with exactly one level of B.
    """
    blocks = [b for b in design.blocks if _is_intercept(b)]
    out = {}
    for a in blocks:
        outer = []
        for b in blocks:
            if a is b:
                continue
            pairs = pd.DataFrame({"a": a.index, "b": b.index}).drop_duplicates()
            if pairs["a"].is_unique and b.n_levels < a.n_levels:
                outer.append(b.components[0])
        out[a.components[0]] = outer
    return out


def _is_intercept(block) -> bool:
    if block.dense is not None or block.n_coefs != 1:
        return False
    vals = block.values[:, 0]
    return bool(np.all((vals == 0) | (vals == 1)))


def icc_draws(design: Design, sigma: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """ICC per random-intercept factor: the correlation of two observations that share its level.

    Sharing a level of a nested factor (``litter:animal``) implies sharing the outer level
    (``litter``), so its ICC is ``(σ²_litter + σ²_animal) / total``, the notes' ``ℓ + a``
    entry over the diagonal ``ℓ + a + e``. Crossed factors count alone.
    """
    var = sigma**2
    total = var.sum(axis=1)
    pos = {n: i for i, n in enumerate(names)}
    out = {}
    for comp, outer in nesting(design).items():
        shared = var[:, pos[comp]] + sum(var[:, pos[o]] for o in outer)
        out[comp] = shared / total
    return out


def correlation_to_covariance(sd: np.ndarray, corr: np.ndarray | None, k: int) -> np.ndarray:
    """G_b per draw (S, k, k) from SDs (S, k) and upper-triangle correlations (S, m) or None."""
    R = np.broadcast_to(np.eye(k), (sd.shape[0], k, k)).copy()
    if corr is not None and k > 1:
        iu = np.triu_indices(k, 1)
        R[:, iu[0], iu[1]] = corr
        R[:, iu[1], iu[0]] = corr
    return sd[:, :, None] * R * sd[:, None, :]


def block_draws(design: Design, sigma: np.ndarray, corr: np.ndarray | None):
    """Per random block: (block, SD draws (S, k), correlation draws (S, k(k−1)/2) or None).

    ``sigma`` holds the components' SDs in design order (σ_e last, ignored here) and ``corr``
    the correlations of the correlated blocks, one after the other.
    """
    out, at, c_at = [], 0, 0
    for blk in design.blocks:
        k = blk.n_coefs
        m = k * (k - 1) // 2 if blk.correlated else 0
        out.append((blk, sigma[:, at : at + k], corr[:, c_at : c_at + m] if m and corr is not None else None))
        at += k
        c_at += m
    return out


def lambda_draws(sd: np.ndarray, corr: np.ndarray | None, k: int) -> np.ndarray:
    """Λ_b per draw, shape (S, k, k), with G_b = Λ_b Λ_b' (lower Cholesky factor)."""
    unit = correlation_to_covariance(np.ones_like(sd), corr, k)  # the correlation matrix R_b
    return sd[:, :, None] * np.linalg.cholesky(unit)


def var_y_draws(design: Design, sigma: np.ndarray, corr: np.ndarray | None, rows: list[int]) -> np.ndarray:
    """Draws of Var(y) = Z G Z' + σ_e² I for the chosen rows: shape (draws, r, r)."""
    r = len(rows)
    out = np.zeros((sigma.shape[0], r, r))
    for blk, sd, c in block_draws(design, sigma, corr):
        k = blk.n_coefs
        z = blk.z_matrix()[rows].reshape(r, -1, k) if blk.dense is None else blk.dense[rows][:, :, None]
        Gb = correlation_to_covariance(sd, c, k)
        # Σ_levels z_a,l G z_b,l'
        out += np.einsum("alk,dkm,blm->dab", z, Gb, z)
    out += (sigma[:, -1] ** 2)[:, None, None] * np.eye(r)[None]
    return out


__all__ = ["variance_table", "icc_draws", "var_y_draws", "nesting", "RESIDUAL"]
