"""Thin adapter over the ``formulae`` package for lme4-style formulas.

``formulae`` parses and evaluates every expression. This module only adds what it lacks:
``(x || g)`` expansion, keeping track of which group terms came from one ``( … | g)`` term
(so that they are correlated, as in lme4), the notes' overparameterized ``coding="full"``,
and a closed namespace of safe transforms so that a formula cannot run arbitrary code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from formulae import design_matrices, model_description
from formulae.environment import Environment

from .errors import DataError, SpecificationError

#: functions a formula may call; nothing else is reachable from a formula.
SAFE_TRANSFORMS = ("log", "exp", "sqrt", "scale", "center", "C")
_NUMPY_TRANSFORMS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


def _environment() -> Environment:
    # a fresh, closed namespace: no caller frame, no module globals
    return Environment([dict(_NUMPY_TRANSFORMS)])


def _caret(formula: str, pos: int) -> str:
    return f"\n    {formula}\n    {' ' * pos}^"


def _check_calls(formula: str) -> None:
    for match in _CALL.finditer(formula):
        name = match.group(1)
        if name not in SAFE_TRANSFORMS:
            raise SpecificationError(
                f"function {name!r} is not allowed in a formula; allowed transforms are "
                f"{', '.join(SAFE_TRANSFORMS)}" + _caret(formula, match.start(1))
            )


def _top_level_groups(text: str, formula: str, offset: int) -> list[tuple[int, int]]:
    """Spans (start, end) of the top-level parenthesised groups in ``text``."""
    spans, depth, start = [], 0, -1
    for i, ch in enumerate(text):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecificationError("unbalanced ')' in formula" + _caret(formula, offset + i))
            if depth == 0:
                spans.append((start, i + 1))
    if depth != 0:
        raise SpecificationError("unclosed '(' in formula" + _caret(formula, offset + start))
    return spans


def _split_top(text: str, sep: str) -> list[str]:
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == sep and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return parts


@dataclass(frozen=True)
class RandomTerm:
    """One ``(lhs | group)`` term of a formula, after ``||`` and ``/`` expansion.

    ``lhs`` is the expression whose columns get random coefficients, ``group`` the
    grouping factor (``a`` or ``a:b``), ``variables`` the data columns forming it.
    """

    lhs: str
    group: str
    variables: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into response, fixed part and random terms."""

    formula: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]


def _expand_lhs_uncorrelated(lhs: str) -> list[str]:
    terms = [t.strip() for t in _split_top(lhs, "+") if t.strip()]
    intercept = not any(t in ("0", "-1") for t in terms) and not re.search(r"-\s*1\b", lhs)
    out = ["1"] if intercept else []
    for t in terms:
        if t in ("0", "1", "-1"):
            continue
        out.append(f"0 + {t}")
    return out


def parse_formula(formula: str) -> ParsedFormula:
    """Split and validate an lme4-style formula.

    Raises
    ------
    SpecificationError
        If the formula is not a string, has no ``~``, calls a function outside
        :data:`SAFE_TRANSFORMS`, or does not parse (the message shows where).
    """
    if not isinstance(formula, str) or not formula.strip():
        raise SpecificationError(f"formula must be a non-empty string, got {formula!r}")
    if formula.count("~") != 1:
        raise SpecificationError(
            f"formula must have exactly one '~' separating response and predictors: {formula!r}"
        )
    _check_calls(formula)
    lhs, rhs = formula.split("~")
    response = lhs.strip()
    if not response:
        raise SpecificationError(f"formula has no response on the left of '~': {formula!r}")
    offset = len(lhs) + 1
    spans = _top_level_groups(rhs, formula, offset)
    random: list[RandomTerm] = []
    fixed_text = list(rhs)
    for start, end in spans:
        inner = rhs[start + 1 : end - 1]
        if "|" not in inner:
            continue
        for i in range(start, end):
            fixed_text[i] = " "
        double = "||" in inner
        left, _, right = inner.partition("||" if double else "|")
        left, right = left.strip(), right.strip()
        if not left or not right:
            raise SpecificationError(
                f"random-effect term '({inner})' needs an expression on both sides of '|'"
                + _caret(formula, offset + start)
            )
        nested = [g.strip() for g in right.split("/")]
        for g in nested:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*(\s*:\s*[A-Za-z_][A-Za-z0-9_.]*)*", g):
                raise SpecificationError(
                    f"grouping factor {g!r} in '({inner})' must be a column name, or names "
                    f"joined by ':' or '/'" + _caret(formula, offset + start)
                )
        groups = []
        for k in range(len(nested)):
            names = tuple(v.strip() for part in nested[: k + 1] for v in part.split(":"))
            groups.append((":".join(names), names))
        lhs_parts = _expand_lhs_uncorrelated(left) if double else [left]
        for group, names in groups:
            for part in lhs_parts:
                random.append(RandomTerm(lhs=part, group=group, variables=names))
    fixed_terms = [t.strip() for t in _split_top("".join(fixed_text), "+") if t.strip()]
    fixed = " + ".join(fixed_terms) if fixed_terms else "1"
    expanded = f"{response} ~ {fixed}" + "".join(f" + ({t.lhs}|{t.group})" for t in random)
    try:
        model_description(expanded)
    except Exception as exc:  # formulae raises its own ParseError/ScanError types
        raise SpecificationError(f"could not parse formula {formula!r}: {exc}") from None
    seen = set()
    for t in random:
        if (t.lhs, t.group) in seen:
            raise SpecificationError(f"random term ({t.lhs}|{t.group}) appears twice in {formula!r}")
        seen.add((t.lhs, t.group))
    return ParsedFormula(formula=formula, response=response, fixed=fixed, random=tuple(random))


def _evaluate(formula: str, data: pd.DataFrame, what: str):
    try:
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
        try:
            blocks = [np.asarray(p.evaluate_new_data(data).design_matrix, dtype=float) for p in self._parts]
        except Exception as exc:
            raise DataError(f"could not build X for the new data: {exc}") from None
        return np.column_stack(blocks)


class RandomEncoder:
    """The per-row covariates of one random term's left-hand side (e.g. ``1``, ``Days``)."""

    def __init__(self, term: RandomTerm, data: pd.DataFrame):
        self.term = term
        dm = _evaluate(f"{term.lhs}", data, f"random term ({term.lhs}|{term.group})")
        self._common = dm.common
        self.coef_names = tuple(
            "1" if str(c) == "Intercept" else str(c) for c in dm.common.as_dataframe().columns
        )

    def values(self) -> np.ndarray:
        return np.asarray(self._common.design_matrix, dtype=float)

    @property
    def variables(self) -> tuple[str, ...]:
        """Data columns the left-hand side reads (``("Days",)`` for ``(Days|Subject)``)."""
        names: list[str] = []
        for t in self._common.terms.values():
            names += [v for v in sorted(getattr(t, "var_names", ())) if v not in names]
        return tuple(names)

    def new_values(self, data: pd.DataFrame) -> np.ndarray:
        try:
            return np.asarray(self._common.evaluate_new_data(data).design_matrix, dtype=float)
        except Exception as exc:
            raise DataError(
                f"could not build Z columns of ({self.term.lhs}|{self.term.group}) for new data: {exc}"
            ) from None


def response_values(parsed: ParsedFormula, data: pd.DataFrame) -> np.ndarray:
    """The response vector y, evaluated by formulae (so ``log(y) ~ …`` works)."""
    dm = _evaluate(f"{parsed.response} ~ 1", data, "response")
    if dm.response is None:
        raise SpecificationError(f"formula {parsed.formula!r} has no response")
    values = np.asarray(dm.response.design_matrix)
    if values.ndim == 2 and values.shape[1] != 1:
        raise DataError(
            f"response {parsed.response!r} must be numeric (one column); it encodes "
            f"{values.shape[1]} columns, so it looks categorical"
        )
    return values.reshape(-1).astype(float)
