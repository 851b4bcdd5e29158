"""Evaluating a parsed formula with ``formulae``: X, the random-term covariates and y.

Each encoder keeps formulae's fitted terms, so new data is encoded exactly as the training
data was (same levels, same stateful transforms such as ``scale``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from formulae import design_matrices
from formulae.environment import Environment

from .errors import BayesLMMError, DataError, SpecificationError
from .formula import ParsedFormula, RandomTerm, _columns_of, _split_top
from .formula_syntax import evaluate_arith

_NUMPY_TRANSFORMS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}


def _environment() -> Environment:
    # a fresh, closed namespace: no caller frame, no module globals
    return Environment([dict(_NUMPY_TRANSFORMS)])


def eval_frame(parsed: ParsedFormula, data: pd.DataFrame) -> pd.DataFrame:
    """The frame formulae evaluates: ``data`` plus the ``I(…)`` columns, with categorical
    columns ordered so that formulae keeps their category order (it sorts unordered ones)."""
    new = {name: evaluate_arith(expr, data) for name, expr in parsed.computed}
    for col in parsed.value_columns:
        if col in data.columns and isinstance(data[col].dtype, pd.CategoricalDtype) \
                and not data[col].dtype.ordered:
            new[col] = data[col].cat.as_ordered()
    if not new:
        return data
    frame = data.copy(deep=False)  # setting a column replaces it in the copy only
    for name, values in new.items():
        frame[name] = values
    return frame


def _evaluate(formula: str, data: pd.DataFrame, what: str):
    try:
        # ±inf from log(0) and the like is reported by the caller, naming the column and rows
        with np.errstate(divide="ignore", invalid="ignore"):
            return design_matrices(formula, data, na_action="error", env=_environment())
    except SpecificationError:
        raise
    except Exception as exc:
        raise SpecificationError(f"could not evaluate {what} {formula!r}: {exc}") from None


class FixedEncoder:
    """Builds X (with column labels) from data, and again from new data with the same encoding.

    ``coding="treatment"`` is formulae's default (first level is the reference, labels like
    ``genotype[2]``). ``coding="full"`` gives the notes' cell-effects X: an ``Intercept``
    column followed by every level of every factor term (``genotype[1]``, ``genotype[2]``),
    so X is rank-deficient and only estimable functions Cβ are identified.
    """

    def __init__(self, parsed: ParsedFormula, data: pd.DataFrame, coding: str):
        self.coding = coding
        self.parsed = parsed
        data = eval_frame(parsed, data)
        if coding == "treatment":
            dm = _evaluate(f"{parsed.response} ~ {parsed.fixed}", data, "fixed effects")
            self._parts = [dm.common]
        else:
            terms = [t.strip() for t in _split_top(parsed.fixed, "+") if t.strip()]
            dropped = [t for t in terms if t in ("0", "-1", "1")]
            terms = [t for t in terms if t not in ("0", "-1", "1")]
            self._parts = []
            if not any(t in ("0", "-1") for t in dropped):
                self._parts.append(_evaluate(f"{parsed.response} ~ 1", data, "intercept").common)
            for term in terms:
                dm = _evaluate(f"{parsed.response} ~ 0 + {term}", data, f"fixed term {term!r}")
                self._parts.append(dm.common)
        self.names = tuple(
            str(c) for part in self._parts for c in part.as_dataframe().columns
        )

    def matrix(self) -> np.ndarray:
        """X for the training data."""
        return np.column_stack([np.asarray(p.design_matrix, dtype=float) for p in self._parts])

    def new_matrix(self, data: pd.DataFrame) -> np.ndarray:
        """X for new data, using the training encoding (same levels, same columns)."""
        frame = eval_frame(self.parsed, data)
        try:
            blocks = [np.asarray(p.evaluate_new_data(frame).design_matrix, dtype=float) for p in self._parts]
        except BayesLMMError:
            raise
        except Exception as exc:
            raise DataError(f"could not build X for the new data: {exc}") from None
        return np.column_stack(blocks)


class RandomEncoder:
    """The per-row covariates of one random term's left-hand side (e.g. ``1``, ``Days``)."""

    def __init__(self, term: RandomTerm, data: pd.DataFrame, parsed: ParsedFormula):
        self.term = term
        self.parsed = parsed
        dm = _evaluate(f"{term.lhs}", eval_frame(parsed, data), f"random term ({term.lhs}|{term.group})")
        self._common = dm.common
        self.coef_names = tuple(
            "1" if str(c) == "Intercept" else str(c) for c in dm.common.as_dataframe().columns
        )

    def values(self) -> np.ndarray:
        return np.asarray(self._common.design_matrix, dtype=float)

    @property
    def variables(self) -> tuple[str, ...]:
        """Data columns the left-hand side reads (``("Days",)`` for ``(Days|Subject)``; the
        columns inside ``I(…)``, not the computed name)."""
        cols = _columns_of(self.term.lhs, dict(self.parsed.computed), self.parsed.factors)
        return tuple(dict.fromkeys(c for c, _, _ in cols))

    def new_values(self, data: pd.DataFrame) -> np.ndarray:
        frame = eval_frame(self.parsed, data)
        try:
            return np.asarray(self._common.evaluate_new_data(frame).design_matrix, dtype=float)
        except Exception as exc:
            raise DataError(
                f"could not build Z columns of ({self.term.lhs}|{self.term.group}) for new data: {exc}"
            ) from None


def response_values(parsed: ParsedFormula, data: pd.DataFrame) -> np.ndarray:
    """The response vector y, evaluated by formulae (so ``log(y) ~ …`` works)."""
    dm = _evaluate(f"{parsed.response} ~ 1", eval_frame(parsed, data), "response")
    if dm.response is None:
        raise SpecificationError(f"formula {parsed.formula!r} has no response")
    values = np.asarray(dm.response.design_matrix)
    if values.ndim == 2 and values.shape[1] != 1:
        raise DataError(
            f"response {parsed.response!r} must be numeric (one column); it encodes "
            f"{values.shape[1]} columns, so it looks categorical"
        )
    return values.reshape(-1).astype(float)
