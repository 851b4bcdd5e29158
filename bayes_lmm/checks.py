"""Predictive draws and posterior predictive checks for mixed models.

Replicated data are drawn in NumPy from the posterior draws of β, u and σ (so the same code
serves every parameterization): ``y_rep = Xβ + Zu + e`` conditional on the fitted u, or with
fresh ``u ~ N(0, G)`` per draw (``new_groups=True``), which asks whether the model could have
produced the observed spread *between* groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from . import residual_draws as _residual
from .design import Design
from .errors import SpecificationError
from .variance import block_draws, lambda_draws

ALL = "(all)"


def _zu(design: Design, u: np.ndarray) -> np.ndarray:
    """Zu for draws of u: (S, q) → (S, n), by index-gather per block."""
    out = np.zeros((u.shape[0], design.n))
    at = 0
    for blk in design.blocks:
        k = blk.n_coefs
        size = blk.n_levels * k
        ub = u[:, at : at + size]
        if blk.dense is not None:
            out += ub @ blk.dense.T
        else:
            ub = ub.reshape(u.shape[0], blk.n_levels, k)
            out += np.einsum("snk,nk->sn", ub[:, blk.index], blk.values)
        at += size
    return out


def fresh_u(design: Design, sigma: np.ndarray, corr: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """u ~ N(0, G) per draw: shape (S, q)."""
    S = sigma.shape[0]
    parts = []
    for blk, sd, c in block_draws(design, sigma, corr):
        lam = lambda_draws(sd, c, blk.n_coefs)
        z = rng.standard_normal((S, blk.n_levels, blk.n_coefs))
        parts.append(np.einsum("sij,slj->sli", lam, z).reshape(S, -1))
    return np.concatenate(parts, axis=1) if parts else np.zeros((S, 0))


def linear_predictor(design: Design, beta: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """Xβ + Zu for each draw: shape (S, n)."""
    eta = beta @ design.X.T
    if u is not None and design.blocks:
        eta = eta + _zu(design, u)
    return eta


def replicate(design: Design, beta, sigma, u, corr, *, new_groups: bool, rng, rcorr=None) -> np.ndarray:
    """Replicated y per draw, Xβ + Zu + e with e ~ N(0, R): shape (S, n). ``rcorr``: the draws
    of the residual correlation (AR1, CS, Unstructured)."""
    if new_groups:
        u = fresh_u(design, sigma, corr, rng)
    eta = linear_predictor(design, beta, u)
    return eta + _residual.noise(design, sigma, rcorr, rng)


def pointwise_loglik(design: Design, beta, sigma, u, rcorr=None) -> np.ndarray:
    """log N(y_i | x_i'β + z_i'u, R_ii) per draw and row (conditional on u): (S, n); with R
    correlated within groups, the leave-one-out conditional of each row given its group's
    other rows (:func:`bayes_lmm.residual_draws.pointwise_loglik`)."""
    mu = linear_predictor(design, beta, u)
    return _residual.pointwise_loglik(design, design.y[None, :] - mu, sigma, rcorr)


def _group_means(y: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Group means of each row of y (S, n) → (S, G)."""
    counts = np.bincount(codes, minlength=n_groups)
    sums = np.zeros((n_groups, y.shape[0]))
    np.add.at(sums, codes, y.T)  # one pass over the rows, whatever the number of groups
    return sums.T / np.maximum(counts, 1)


def _within_sd(y: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    means = _group_means(y, codes, n_groups)
    resid = y - means[:, codes]
    dof = max(y.shape[1] - n_groups, 1)
    return np.sqrt((resid**2).sum(axis=1) / dof)


#: test statistics: name → (needs a grouping, function of (y (S, n), codes, G))
STATISTICS: dict[str, tuple[bool, Callable]] = {
    "mean": (False, lambda y, c, g: y.mean(axis=1)),
    "sd": (False, lambda y, c, g: y.std(axis=1, ddof=1)),
    "sd_group_means": (True, lambda y, c, g: _group_means(y, c, g).std(axis=1, ddof=1)),
    "max_group_mean": (True, lambda y, c, g: _group_means(y, c, g).max(axis=1)),
    "min_group_mean": (True, lambda y, c, g: _group_means(y, c, g).min(axis=1)),
    "within_group_sd": (True, _within_sd),
}


def grouping_codes(design: Design, groups: Sequence[str] | None) -> dict[str, np.ndarray]:
    """Integer codes per row for each grouping: the model's factors or named data columns."""
    out: dict[str, np.ndarray] = {}
    if groups is None:
        for blk in design.blocks:
            if blk.dense is None and blk.group not in out:
                out[blk.group] = blk.index
        return out
    for name in groups:
        blk = next((b for b in design.blocks if b.group == name and b.dense is None), None)
        if blk is not None:
            out[name] = blk.index
            continue
        if design.data is None or not all(c in design.data.columns for c in name.split(":")):
            cols = [] if design.data is None else list(design.data.columns)
            raise SpecificationError(
                f"grouping {name!r} is neither a random factor of the model nor a data column {cols}"
            )
        labels = design.data[name.split(":")].astype(str).agg(":".join, axis=1)
        out[name] = pd.factorize(labels)[0]
    return out


def check_table(y_obs: np.ndarray, y_rep: np.ndarray, codes: dict[str, np.ndarray],
                statistics: Sequence[str]) -> pd.DataFrame:
    """Posterior predictive p-values: one row per statistic and grouping.

    ``p_value`` = Pr(T(y_rep) ≥ T(y)); values near 0 or 1 flag a misfit.
    """
    unknown = [s for s in statistics if s not in STATISTICS]
    if unknown:
        raise SpecificationError(f"unknown statistics {unknown}; choose from {list(STATISTICS)}")
    rows = []
    for stat in statistics:
        grouped, fn = STATISTICS[stat]
        targets = codes.items() if grouped else [(ALL, np.zeros(len(y_obs), dtype=int))]
        for group, c in targets:
            g = int(c.max()) + 1
            if grouped and g < 2:
                continue
            t_obs = float(fn(y_obs[None, :], c, g)[0])
            t_rep = fn(y_rep, c, g)
            rows.append({"statistic": stat, "group": group, "observed": t_obs,
                         "replicated_mean": float(t_rep.mean()), "p_value": float((t_rep >= t_obs).mean())})
    return pd.DataFrame(rows, columns=["statistic", "group", "observed", "replicated_mean", "p_value"])
