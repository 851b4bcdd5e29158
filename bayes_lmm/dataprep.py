"""The data side of a formula: a private copy of the frame with factors set, and its checks.

Factors: ``factors=[…]`` and ``C(…)`` columns become categorical; the level order is a
pandas Categorical's own category order, else sorted values, unless ``C(x, levels=[…])``
gives one; ``Treatment("b")`` moves ``b`` first (the reference of treatment coding). Unused
categories are dropped, so X has no all-zero columns and marginal means have no empty cells.

Checks, each naming the column, the values and the rows: columns missing from the data,
missing values, ±inf in a numeric column, and text in a column that is otherwise numbers
(``"n/a"`` among hours), which would otherwise silently turn the column into a factor.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import DataError, SpecificationError
from .formula import ParsedFormula, parse_formula
from .formula_syntax import FactorSpec, quote

#: text that stands for a missing value; a numeric column holding it is a data problem
_MISSING_TOKENS = {"", "na", "n/a", "nan", "null", "none", "missing", "-", ".", "?", "#n/a", "n.a."}
#: a column is "numbers with a few text entries" when at least this share of its rows are numbers…
_NUMERIC_SHARE = 0.8
#: …and it has at most this many distinct text values
_FEW_TEXTS = 3
#: integer-coded columns with 2 to this many distinct values (not 0/1) get a factor hint
_HINT_MAX_LEVELS = 6


def natural_levels(values: pd.Series) -> list:
    """The levels of ``values`` present in the data: category order for a Categorical,
    else sorted (numbers numerically)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.cat.remove_unused_categories().cat.categories)
        return [c for c in values.cat.categories if c in present]
    uniq = pd.unique(values.dropna())
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def _rows(frame: pd.DataFrame, where: np.ndarray) -> str:
    rows = list(frame.index[where][:5])
    return f"{rows}"[:-1] + (", …]" if where.sum() > 5 else "]")


def _factor_levels(series: pd.Series, spec: FactorSpec | None, col: str) -> list:
    levels = natural_levels(series)
    if spec is None:
        return levels
    if spec.levels is not None:
        given = [str(v) for v in spec.levels]
        outside = [v for v in levels if str(v) not in given]
        if outside:
            where = series.astype(str).isin([str(v) for v in outside]).to_numpy()
            raise DataError(
                f"column {col!r} has values {outside[:5]} (rows {_rows(series.to_frame(), where)}) "
                f"that are not among the levels {list(spec.levels)} given to C({quote(col)}, levels=…)"
            )
        by_text = {str(v): v for v in levels}
        levels = [by_text[v] for v in given if v in by_text]  # levels with no rows are dropped
    if spec.reference is not None:
        first = [v for v in levels if str(v) == str(spec.reference)]
        if not first:
            raise DataError(
                f"reference level {spec.reference!r} of C({quote(col)}, Treatment(…)) is not a "
                f"level of {col!r} in the data; its levels are {levels}"
            )
        levels = first + [v for v in levels if str(v) != str(spec.reference)]
    return levels


def prepare_data(data: pd.DataFrame, factors: Sequence[str],
                 parsed: ParsedFormula | None = None) -> pd.DataFrame:
    """A copy of ``data`` with ``factors`` and the formula's ``C(…)`` columns categorical and
    unused categories dropped; the caller's frame is never touched."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.shape[0] == 0:
        raise DataError("data has no rows")
    if data.columns.duplicated().any():
        dup = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
        raise DataError(f"data has duplicated column names: {dup}")
    specs = {f.column: f for f in parsed.factors} if parsed is not None else {}
    for col in factors:
        if col not in data.columns:
            raise DataError(f"factor column {col!r} is not in the data; columns are {list(data.columns)}")
    for col in specs:
        if col not in data.columns:
            raise DataError(f"column {col!r} in C({quote(col)}) is not in the data; columns are "
                            f"{[str(c) for c in data.columns]}")
    if parsed is not None:
        for col in parsed.factor_conflicts:
            if col not in factors and pd.api.types.is_numeric_dtype(data[col]) \
                    and not isinstance(data[col].dtype, pd.CategoricalDtype):
                raise SpecificationError(
                    f"numeric column {col!r} is used both as a factor, C({quote(col)}), and as a "
                    f"number elsewhere in {parsed.formula!r}; make a copy of the column for one of "
                    f"the two uses"
                )
    frame = data.copy()  # never touch the caller's data
    for col in parsed.value_columns if parsed is not None else ():
        # numbers held as Python objects (formulae cannot read them): the same numbers as floats
        if col in frame.columns and col not in factors and col not in specs \
                and frame[col].dtype == object and all(
                    isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                    for v in frame[col]):
            frame[col] = frame[col].astype(float)
    for col in dict.fromkeys([*factors, *specs]):
        frame[col] = pd.Categorical(frame[col], categories=_factor_levels(frame[col], specs.get(col), col))
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].cat.remove_unused_categories()
    return frame


def _text_in_numbers(series: pd.Series, strict: bool) -> np.ndarray | None:
    """Rows holding text in a column that is otherwise numbers (None if it is not that)."""
    present = series.notna().to_numpy()
    try:
        numbers = pd.to_numeric(series, errors="coerce").notna().to_numpy()
    except (TypeError, ValueError):  # values pandas cannot even try to read as numbers
        return None
    text = present & ~numbers
    if not text.any() or (not numbers.any() and not strict):
        return None
    if strict:
        return text
    values = {str(v).strip().lower() for v in series[text]}
    share = numbers.sum() / present.sum()
    if values <= _MISSING_TOKENS or (share >= _NUMERIC_SHARE and len(values) <= _FEW_TEXTS):
        return text
    return None


def check_columns(parsed: ParsedFormula, frame: pd.DataFrame, factors: Sequence[str] = ()) -> None:
    """Raise :class:`DataError` for a formula column that is absent, has missing values,
    holds ±inf, or holds text among numbers (see the module docstring)."""
    for col in parsed.columns:
        if col not in frame.columns:
            raise DataError(
                f"column {col!r} used in the formula is not in the data; columns are "
                f"{[str(c) for c in frame.columns]}"
            )
    for col in parsed.columns:
        missing = frame[col].isna()
        if missing.any():
            raise DataError(
                f"column {col!r} has {int(missing.sum())} missing values (rows "
                f"{_rows(frame, missing.to_numpy())}); remove or impute them first, "
                f"bayes_lmm never drops rows silently"
            )
    as_factor = set(factors) | {f.column for f in parsed.factors}
    response = parsed.response_column
    for col in parsed.value_columns:
        series = frame[col]
        if col in as_factor or isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == bool:
            continue
        if pd.api.types.is_numeric_dtype(series):
            infinite = np.isinf(series.to_numpy(dtype=float))
            if infinite.any():
                raise DataError(
                    f"column {col!r} has {int(infinite.sum())} infinite values (rows "
                    f"{_rows(frame, infinite)}); a linear mixed model needs finite numbers"
                )
            continue
        text = _text_in_numbers(series, strict=col == response)
        if text is not None:
            values = list(dict.fromkeys(str(v) for v in series[text]))
            what = "the response, which must be numeric," if col == response else "numeric"
            hint = "" if col == response else (
                f", or, if {col!r} is a factor, say so with factors=[{col!r}] or C({quote(col)})")
            raise DataError(
                f"column {col!r} is {what} but holds text {values[:5]} in {int(text.sum())} "
                f"row(s): {_rows(frame, text)}; fix or remove those rows{hint}"
            )


def check_finite(values: np.ndarray, names: Sequence[str], frame: pd.DataFrame, what: str) -> None:
    """Raise :class:`DataError` naming the column and rows of a non-finite entry of X or Z
    (a transform such as ``log(0)`` or ``I(x / 0)``)."""
    bad = ~np.isfinite(values)
    if bad.any():
        col = int(np.nonzero(bad.any(axis=0))[0][0])
        rows = bad[:, col]
        raise DataError(
            f"{what} column {names[col]!r} has {int(rows.sum())} non-finite values (rows "
            f"{_rows(frame, rows)}); the formula's transform gives ±inf or NaN there"
        )


def integer_coded_hints(formula: str, data: pd.DataFrame, factors: Sequence[str]) -> list[str]:
    """A hint per column that enters the fixed part bare as a number although it holds only a
    few distinct integers (e.g. genotype coded 1, 2, 3), so is likely a factor in disguise."""
    parsed = parse_formula(formula)
    skip = set(factors) | {f.column for f in parsed.factors}
    out = []
    for col in parsed.fixed_bare:
        if col in skip or col not in data.columns:
            continue
        series = data[col]
        if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == bool \
                or not pd.api.types.is_numeric_dtype(series):
            continue
        v = series.to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        uniq = np.unique(v)
        if v.size == 0 or np.any(uniq != np.round(uniq)) or not 2 <= uniq.size <= _HINT_MAX_LEVELS \
                or set(uniq) <= {0.0, 1.0} or v.size < 2 * uniq.size:
            continue
        shown = ", ".join(f"{u:g}" for u in uniq)
        out.append(
            f"column {col!r} holds only {uniq.size} distinct integers ({shown}) and enters the "
            f"fixed part as a numeric covariate (one slope); if it codes groups, make it a "
            f"factor with factors=[{col!r}] or C({quote(col)})"
        )
    return out


def warn_integer_coded(formula: str, data: pd.DataFrame, factors: Sequence[str]) -> None:
    """Warn, before any sampling, with each :func:`integer_coded_hints` hint (``bl.fit``,
    ``bl.reml``); the warning points at the caller's line."""
    for hint in integer_coded_hints(formula, data, factors):
        warnings.warn(hint, UserWarning, stacklevel=3)
