"""Predictions for new rows: pure functions of the design, the posterior draws and an rng."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import residual_draws as _residual
from . import variance as _variance
from .dataprep import prepare_data as _prepare_data
from .design import Design, _group_labels
from .errors import DataError, SpecificationError
from .spec import NEW_GROUPS


def predict_draws(design: Design, beta: np.ndarray, sigma: np.ndarray, u: np.ndarray | None,
                  corr: np.ndarray | None, new_data: pd.DataFrame, *, kind: str, new_groups: str,
                  rng: np.random.Generator, rcorr: np.ndarray | None = None) -> np.ndarray:
    """Draws of Xβ + Zu (``kind="mean"``) or of y (``"response"``) for new rows: (S, n_new).

    Levels not seen in training get effects drawn from G per draw (``new_groups="sample"``),
    zero (``"zero"``), or raise :class:`DataError` (``"error"``). With a residual structure,
    ``"response"`` adds e ~ N(0, R) for the new rows: their SDs by stratum (or the known SDs
    read from ``new_data``), correlated within the new rows of one group (AR1, CS,
    Unstructured); the new rows' residuals are not conditioned on the fitted rows'.
    """
    if kind not in ("mean", "response"):
        raise SpecificationError(f"kind must be 'mean' or 'response', got {kind!r}")
    if new_groups not in NEW_GROUPS:
        raise SpecificationError(f"new_groups must be one of {NEW_GROUPS}, got {new_groups!r}")
    if design.fixed_encoder is None:
        raise SpecificationError("predict needs a model fitted from a formula (bl.fit)")
    if not isinstance(new_data, pd.DataFrame) or new_data.shape[0] == 0:
        raise DataError("new_data must be a non-empty pandas DataFrame")
    Xn = design.fixed_encoder.new_matrix(new_data.copy())
    eta = beta @ Xn.T
    S = eta.shape[0]
    u_at = 0
    blocks = _variance.block_draws(design, sigma, corr)
    for (blk, sd, c), (index, values) in zip(blocks, new_data_blocks(design, new_data)):
        k = blk.n_coefs
        ub = u[:, u_at : u_at + blk.n_levels * k].reshape(S, blk.n_levels, k)
        seen = index >= 0
        if seen.any():
            eta[:, seen] += np.einsum("snk,nk->sn", ub[:, index[seen]], values[seen])
        if (~seen).any():
            labels = _new_labels(new_data, blk, ~seen)
            if new_groups == "error":
                raise DataError(
                    f"levels {sorted(set(labels))[:5]} of {blk.group!r} were not seen in training; "
                    f"use new_groups='sample' to draw their effects from G or 'zero' to ignore them"
                )
            if new_groups == "sample":
                L = _variance.lambda_draws(sd, c, k)  # G_b = L L'
                uniq = list(dict.fromkeys(labels))
                z = rng.standard_normal((S, len(uniq), k))
                unew = np.einsum("skm,slm->slk", L, z)
                pos = np.array([uniq.index(lab) for lab in labels])
                eta[:, ~seen] += np.einsum("snk,nk->sn", unew[:, pos], values[~seen])
        u_at += blk.n_levels * k
    if kind == "response":
        eta = eta + _residual.noise(_residual.for_new_rows(design, new_data), sigma, rcorr, rng)
    return eta


def _new_labels(data: pd.DataFrame, blk, mask: np.ndarray) -> list[str]:
    parts = [data[v].astype(str).to_numpy()[mask] for v in blk.encoder.term.variables]
    return [":".join(t) for t in zip(*parts)]


def new_data_blocks(design: Design, data: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """For new data: per block, (level index with -1 for unseen levels, values)."""
    frame = _prepare_data(data, [c for c in design.factor_columns if c in data.columns])
    out = []
    for blk in design.blocks:
        missing = [v for v in blk.encoder.term.variables if v not in frame.columns]
        if missing:
            raise DataError(f"new data lacks grouping column(s) {missing}")
        labels = _group_labels(frame, blk.encoder.term.variables).astype(str)
        lookup = {lev: i for i, lev in enumerate(blk.levels)}
        index = labels.map(lookup).fillna(-1).to_numpy(dtype=np.int64)
        out.append((index, blk.encoder.new_values(frame)))
    return out
