"""Contrasts Cβ and marginal means: pure functions of the design (and of β's draws).

The reference grid crosses all levels of the categorical fixed factors, holds numeric
covariates at their means and sets random effects to zero; means are averaged equally over
the factors not asked for (as emmeans does).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import contrasts as _contrasts
from .design import Design
from .errors import SpecificationError
from .formula import parse_formula


def reference_grid(design: Design, factors: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """(grid, categorical fixed factors) for the marginal means of ``factors``."""
    if design.fixed_encoder is None or design.data is None:
        raise SpecificationError(
            "marginal means and pairwise contrasts need a model fitted from a formula "
            "(bl.fit); for explicit X give the contrast as a C matrix"
        )
    data = design.data
    for f in factors:
        if f not in data.columns:
            raise SpecificationError(f"{f!r} is not a column of the data")
    names = set(parse_formula(design.formula).fixed_columns)
    fixed_cols = [c for c in data.columns if c in names]
    cat = [c for c in fixed_cols if not pd.api.types.is_numeric_dtype(data[c])
           or isinstance(data[c].dtype, pd.CategoricalDtype)]
    for f in factors:
        if f not in cat:
            raise SpecificationError(
                f"{f!r} is not a categorical fixed-effect factor of the model; factors are {cat}"
            )
    levels = {c: list(pd.Categorical(data[c]).categories) for c in cat}
    grid = pd.DataFrame(list(itertools.product(*levels.values())), columns=list(levels))
    for c in fixed_cols:
        if c not in cat:
            grid[c] = float(data[c].mean())
    for c in data.columns:
        if c not in grid.columns:
            grid[c] = data[c].iloc[0]
    for c in cat:
        grid[c] = pd.Categorical(grid[c], categories=levels[c])
    return grid, cat


def marginal_matrix(design: Design, factors: str | Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(labels, C) with one row of C per level (or cell) of ``factors``: its marginal mean Cβ."""
    factors = [factors] if isinstance(factors, str) else list(factors)
    grid, _ = reference_grid(design, factors)
    Xg = design.fixed_encoder.new_matrix(grid)
    keys = grid[factors].astype(str).agg(":".join, axis=1)
    labels, rows = [], []
    for key in pd.unique(keys):
        labels.append(key)
        rows.append(Xg[(keys == key).to_numpy()].mean(axis=0))
    return labels, np.vstack(rows)


def pairwise_matrix(design: Design, factor: str) -> tuple[list[str], np.ndarray]:
    """(labels, C) of all pairwise differences of the marginal means of ``factor``."""
    labels, M = marginal_matrix(design, factor)
    out_labels, rows = [], []
    for a, b in itertools.combinations(range(len(labels)), 2):
        out_labels.append(f"{factor}[{labels[a]}] - {factor}[{labels[b]}]")
        rows.append(M[a] - M[b])
    if not rows:
        raise SpecificationError(f"factor {factor!r} has a single level; nothing to compare")
    return out_labels, np.vstack(rows)


def contrast_rows(design: Design, spec: Any = None, pairwise: str | None = None) -> tuple[list[str], np.ndarray]:
    """(labels, C) of a contrast spec or of ``pairwise=<factor>``, every row checked estimable."""
    if (spec is None) == (pairwise is None):
        raise SpecificationError("give either a contrast spec or pairwise=<factor>, not both or neither")
    if pairwise is not None:
        labels, C = pairwise_matrix(design, pairwise)
    else:
        labels, C = _contrasts.contrast_matrix(spec, design.x_names)
    _contrasts.check_estimable(labels, C, design.X, design.x_names)
    return labels, C


def with_contrasts(post, labels: Sequence[str], draws: np.ndarray):
    """A copy of the posterior with the draws (S, m) added to its ``contrasts`` variable (dim
    ``contrast``; a label stored before is replaced), for ArviZ's own plots and summaries."""
    shape = (post.sizes["chain"], post.sizes["draw"])
    stored = {}
    if "contrasts" in post:
        old = post["contrasts"]
        stored = {str(lab): old.sel(contrast=lab).to_numpy() for lab in old.coords["contrast"].to_numpy()}
    for j, lab in enumerate(labels):
        stored[lab] = draws[:, j].reshape(shape)
    names = list(stored)
    da = xr.DataArray(np.stack([stored[n] for n in names], axis=-1), dims=("chain", "draw", "contrast"),
                      coords={"chain": post["chain"], "draw": post["draw"], "contrast": names})
    return post.drop_vars(["contrasts", "contrast"], errors="ignore").assign(contrasts=da)
