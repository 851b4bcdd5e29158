"""Reading the columns of a residual structure from the data, with the checks that name
the column, the level, the value and the rows (see :mod:`bayes_lmm.residual`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .dataprep import natural_levels
from .errors import SpecificationError

RESIDUAL = "Residual"


def rows_text(where: np.ndarray, index: pd.Index) -> str:
    rows = [index[i] for i in np.flatnonzero(where)[:5]]
    return f"{rows}"[:-1] + (", …]" if where.sum() > 5 else "]")


def show(value: Any) -> str:
    """repr of a value without numpy's type wrapper (``1.5``, not ``np.float64(1.5)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def column(spec: str, data: pd.DataFrame | None, col: Any) -> pd.Series:
    if data is None:
        raise SpecificationError(f"residual={spec} names column {col!r}: it needs the data frame")
    if not isinstance(col, str) or col not in data.columns:
        raise SpecificationError(f"residual={spec}: column {col!r} is not in the data; columns are "
                                 f"{[str(c) for c in data.columns]}")
    series = data[col]
    missing = series.isna().to_numpy()
    if missing.any():
        raise SpecificationError(f"residual={spec}: column {col!r} has {int(missing.sum())} missing values "
                                 f"(rows {rows_text(missing, data.index)})")
    return series


def codes(series: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    levels = natural_levels(series)
    lookup = {lev: i for i, lev in enumerate(levels)}
    return series.map(lookup).to_numpy(dtype=np.int64), tuple(str(v) for v in levels)


def strata(spec: str, data: pd.DataFrame, col: str) -> tuple[np.ndarray, tuple[str, ...]]:
    idx, levels = codes(column(spec, data, col))
    counts = np.bincount(idx, minlength=len(levels))
    if (counts < 2).any():
        lone = [levels[i] for i in np.flatnonzero(counts < 2)]
        raise SpecificationError(f"residual={spec}: level(s) {lone} of {col!r} have one row; a residual SD "
                                 f"per level needs at least two rows in each (merge those levels)")
    if len(levels) < 2:
        raise SpecificationError(f"residual={spec}: column {col!r} has a single level {levels[0]!r}; "
                                 f"use the default residual (one SD) instead")
    return idx, tuple(f"{RESIDUAL}[{lev}]" for lev in levels)


def time_positions(spec: str, data: pd.DataFrame, col: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer positions of the time column (its values, or an ordered Categorical's codes)."""
    series = column(spec, data, col)
    if isinstance(series.dtype, pd.CategoricalDtype):
        if not series.dtype.ordered:
            raise SpecificationError(f"residual={spec}: time column {col!r} is an unordered Categorical; "
                                     f"make it ordered (pd.Categorical(..., ordered=True)) or integer")
        cats = series.cat.categories
        return series.cat.codes.to_numpy(dtype=np.int64), tuple(str(c) for c in cats)
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        raise SpecificationError(f"residual={spec}: time column {col!r} must hold integers or be an ordered "
                                 f"Categorical; it has dtype {series.dtype} (e.g. {show(series.iloc[0])})")
    values = series.to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        raise SpecificationError(f"residual={spec}: time column {col!r} must hold integers; value "
                                 f"{show(values[bad][0])} (rows {rows_text(bad, data.index)}) is not one")
    ints = values.astype(np.int64)
    return ints, tuple(str(v) for v in sorted(set(ints.tolist())))


def check_unique_times(spec: str, data: pd.DataFrame, time_col: str, group_col: str,
                        group: np.ndarray, time: np.ndarray, group_labels: tuple[str, ...]) -> None:
    key = pd.DataFrame({"g": group, "t": time})
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        first = np.flatnonzero(dup)[0]
        same = dup & (group == group[first]) & (time == time[first])
        raise SpecificationError(
            f"residual={spec}: time {show(data[time_col].iloc[first])} repeats within level "
            f"{group_labels[group[first]]!r} of {group_col!r} (rows {rows_text(same, data.index)}); "
            f"each time may appear once per group")
