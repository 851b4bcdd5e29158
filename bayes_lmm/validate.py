"""Checks of user input shared by the design builders: each raises a DataError naming the
column, value or row(s)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import DataError


def row_selection(rows, n: int) -> list[int]:
    if rows is None:
        return list(range(min(n, 10)))
    if isinstance(rows, slice):
        return list(range(n))[rows]
    idx = [int(r) for r in np.atleast_1d(rows)]
    bad = [r for r in idx if not -n <= r < n]
    if bad:
        raise DataError(f"rows {bad} are out of range for {n} observations")
    return [r % n for r in idx]


def numeric_2d(value, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numeric; it contains values that are not numbers") from None
    return arr


def check_finite(arr: np.ndarray, what: str, labels: Sequence[str] | None = None) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        if arr.ndim == 2:
            rows, cols = np.nonzero(bad)
            where = ", ".join(
                f"row {r}" + (f" column {labels[c]!r}" if labels is not None else f" column {c}")
                for r, c in list(zip(rows, cols))[:5]
            )
        else:
            where = ", ".join(f"row {r}" for r in np.nonzero(bad)[0][:5])
        raise DataError(f"{what} has {int(bad.sum())} missing or non-finite values (first: {where})")


def check_response(y: np.ndarray, name: str) -> None:
    """Raise :class:`DataError` naming the response if y is empty, non-finite or constant."""
    if y.ndim != 1:
        raise DataError(f"y must be one-dimensional, got shape {y.shape}")
    if y.size == 0:
        raise DataError("y is empty: there are no observations to fit")
    check_finite(y, f"response {name!r}")
    if y.size > 1 and np.ptp(y) == 0:
        raise DataError(f"response {name!r} is constant ({y[0]:g}); there is no variation to model")


def single_level_error(name: str, level: str) -> DataError:
    return DataError(
        f"random factor {name!r} has a single level ({level!r}); a variance component "
        f"needs at least two levels"
    )
