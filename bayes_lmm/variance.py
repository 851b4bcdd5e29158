"""Variance components: σ and σ² tables, fractions of variance, ICCs and Var(y).

All functions take posterior draws as arrays with the draw axes flattened first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import residual_draws as _residual
from .contrasts import interval_bounds
from .design import RESIDUAL, Design
from .errors import SpecificationError


def _summ(flat: np.ndarray, prefix: str, prob: float, interval: str) -> dict[str, np.ndarray]:
    lower, upper = interval_bounds(flat, prob=prob, interval=interval)
    return {
        f"{prefix}_mean": flat.mean(axis=0),
        f"{prefix}_median": np.median(flat, axis=0),
        f"{prefix}_lower": lower,
        f"{prefix}_upper": upper,
    }


def weight_matrices(design: Design) -> list[np.ndarray]:
    """Per random block, W_b = the mean over the rows of z_i z_i' (k × k).

    Row i's variance from block b is z_i' G_b z_i (z_i: the values multiplying its level's
    coefficients), so the mean over the rows of the diagonal of Z_b G_b Z_b' is
    Σ_cc' (G_b)_cc' (W_b)_cc'. For a random intercept W_b = 1; for a slope on x the diagonal
    entry is mean(x²) and the intercept–slope entry mean(x). A dense block (matrix input, one
    component) has W_b = the mean of Σ_l z_il².
    """
    out = []
    for blk in design.blocks:
        if blk.dense is not None:
            out.append(np.array([[float(np.mean(np.sum(blk.dense**2, axis=1)))]]))
        else:
            out.append(blk.values.T @ blk.values / design.n)
    return out


def fraction_draws(design: Design, sigma: np.ndarray, corr: np.ndarray | None) -> np.ndarray:
    """Draws (S, c + 1) of each component's share of the average variance of one row.

    The denominator is the mean over the rows of Var(y_i) = diag(ZGZ')_i + σ_e²; component c
    of block b contributes Σ_c' (G_b)_cc' (W_b)_cc' (:func:`weight_matrices`), i.e. σ_c² w_cc
    plus half of each covariance term 2ρσ_cσ_c'·w_cc' it shares with another coefficient of
    its block. So the shares sum to 1, do not change when a covariate is rescaled (days to
    weeks, with the SDs rescaled accordingly), and are σ_c² / (Σ_k σ_k² + σ_e²) for random
    intercepts. With a strong negative intercept–slope correlation a share can fall below 0.
    """
    parts = []
    for (blk, sd, c), W in zip(block_draws(design, sigma, corr), weight_matrices(design)):
        G = correlation_to_covariance(sd, c, blk.n_coefs)
        parts.append(np.einsum("skm,km->sk", G, W))
    # each residual SD's share of the mean of diag(R) (known SDs count in the total only)
    parts.append(_residual.parts(design, sigma))
    var = np.concatenate(parts, axis=1)
    total = var[:, : len(design.components)].sum(axis=1) + _residual.mean_variance(design, sigma)
    return var / total[:, None]


def variance_table(sigma: np.ndarray, names: list[str], *, prob: float, interval: str = "eti",
                   fractions: np.ndarray | None = None) -> pd.DataFrame:
    """One row per component (``Residual`` last): SD and variance summaries and fraction.

    ``fractions`` are the draws of :func:`fraction_draws`; without them, σ_j² / Σ_k σ_k²
    (right for random intercepts only).
    """
    var = sigma**2
    frac = var / var.sum(axis=1, keepdims=True) if fractions is None else fractions
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
    total = var[:, : len(design.components)].sum(axis=1) + _residual.mean_variance(design, sigma)
    pos = {n: i for i, n in enumerate(names)}
    out = {}
    for comp, outer in nesting(design).items():
        shared = var[:, pos[comp]] + sum(var[:, pos[o]] for o in outer)
        out[comp] = shared / total
    return out


def slope_covariates(design: Design) -> list[str]:
    """Data columns that the random terms' left-hand sides read (``["Days"]``), in order."""
    out: list[str] = []
    for blk in design.blocks:
        if blk.encoder is not None:
            out += [v for v in blk.encoder.variables if v not in out]
    return out


def _at_row(design: Design, covariates: list[str], at: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """One data row holding the covariate values of ``at`` (0, or a factor's first level, for
    those not given) and its label ``"Days=0"``."""
    unknown = [k for k in at if k not in covariates]
    if unknown:
        raise SpecificationError(
            f"at= names {unknown}, which no random term uses; the random terms' covariates are {covariates}"
        )
    row, label = {}, []
    for v in covariates:
        col = design.data[v]
        if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
            levels = list(pd.Categorical(col).categories)
            value = at.get(v, levels[0])
            if value not in levels:
                raise SpecificationError(f"at={{{v!r}: {value!r}}}: {value!r} is not a level of {v!r}; levels are {levels}")
            row[v] = pd.Categorical([value], categories=levels)
        else:
            value = at.get(v, 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(value):
                raise SpecificationError(f"at={{{v!r}: {value!r}}}: {v!r} is numeric; give a finite number")
            row[v] = [float(value)]
        label.append(f"{v}={value:g}" if isinstance(row[v], list) else f"{v}={value}")
    return pd.DataFrame(row), ", ".join(label)


def icc_at_draws(design: Design, sigma: np.ndarray, corr: np.ndarray | None,
                 at: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], str]:
    """ICC per grouping factor for observations at the covariate values ``at``.

    With random slopes the variance block b adds to a row depends on its values z(x), so the
    correlation of two observations that share a level of factor g and both have covariates
    x is ICC_g(x) = Σ_{b of g, or of a factor g is nested in} z_b(x)' G_b z_b(x) /
    (Σ_b z_b(x)' G_b z_b(x) + σ_e²), per draw; for ``(Days|Subject)`` alone,
    Var(u0 + x·u1) / (Var(u0 + x·u1) + σ_e²) with Var(u0 + x·u1) = σ0² + 2ρσ0σ1·x + σ1²x².
    Rows are named by each factor's first component; the second value is the label of ``at``.
    """
    covariates = slope_covariates(design)
    frame, label = _at_row(design, covariates, at)
    var: dict[str, np.ndarray] = {}
    first: dict[str, object] = {}
    for blk, sd, c in block_draws(design, sigma, corr):
        z = blk.encoder.new_values(frame)[0]
        part = np.einsum("k,skm,m->s", z, correlation_to_covariance(sd, c, blk.n_coefs), z)
        var[blk.group] = var.get(blk.group, 0.0) + part
        first.setdefault(blk.group, blk)
    total = sum(var.values()) + _residual.mean_variance(design, sigma)
    out = {}
    for g, blk in first.items():
        outer = [h for h, other in first.items() if h != g and _nested(blk, other)]
        out[blk.components[0]] = (var[g] + sum(var[h] for h in outer)) / total
    return out, label


def _nested(a, b) -> bool:
    """Whether each level of block a's factor occurs with exactly one level of b's."""
    pairs = pd.DataFrame({"a": a.index, "b": b.index}).drop_duplicates()
    return bool(pairs["a"].is_unique and b.n_levels < a.n_levels)


def u_positions(design: Design, group: str, levels: Sequence[Any] | None) -> list[int]:
    """Positions in u of one grouping factor's entries (all its blocks), optionally of some levels.

    Raises :class:`SpecificationError` naming an unknown factor or level.
    """
    blocks = [b for b in design.blocks if b.group == group]
    if not blocks:
        raise SpecificationError(
            f"no random factor {group!r}; the model's factors are {list(dict.fromkeys(b.group for b in design.blocks))}"
        )
    wanted = None
    if levels is not None:
        wanted = [str(v) for v in ([levels] if isinstance(levels, (str, int, np.integer)) else levels)]
        known = blocks[0].levels
        missing = [v for v in wanted if v not in known]
        if missing:
            raise SpecificationError(
                f"factor {group!r} has no level(s) {missing}; its levels are {list(known[:10])}"
                f"{' …' if len(known) > 10 else ''}"
            )
    out, at = [], 0
    for b in design.blocks:
        size = b.n_levels * b.n_coefs
        if b.group == group:
            keep = range(b.n_levels) if wanted is None else [b.levels.index(v) for v in wanted]
            out += [at + lev * b.n_coefs + c for lev in keep for c in range(b.n_coefs)]
        at += size
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


def var_y_draws(design: Design, sigma: np.ndarray, corr: np.ndarray | None, rows: list[int],
                rcorr: np.ndarray | None = None) -> np.ndarray:
    """Draws of Var(y) = Z G Z' + R for the chosen rows: shape (draws, r, r)."""
    r = len(rows)
    out = np.zeros((sigma.shape[0], r, r))
    for blk, sd, c in block_draws(design, sigma, corr):
        k = blk.n_coefs
        z = blk.z_matrix()[rows].reshape(r, -1, k) if blk.dense is None else blk.dense[rows][:, :, None]
        Gb = correlation_to_covariance(sd, c, k)
        # Σ_levels z_a,l G z_b,l'
        out += np.einsum("alk,dkm,blm->dab", z, Gb, z)
    return out + _residual.r_draws(design, sigma, rcorr, list(rows))


__all__ = ["variance_table", "fraction_draws", "weight_matrices", "icc_draws", "icc_at_draws",
           "u_positions", "var_y_draws", "nesting", "RESIDUAL"]
