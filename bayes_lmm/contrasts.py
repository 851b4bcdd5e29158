"""Contrasts Cβ: parse what the user asked for into C, check estimability, summarise.

A linear function c'β is estimable when c lies in the row space of X (c = a'X for some a):
only then does its value not depend on how the prior resolves the directions of β that the
data cannot see (the null space of X, non-empty for the notes' overparameterized X).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import EstimabilityError, SpecificationError

_TOL = 1e-8


def _linear_expression(text: str, names: Sequence[str]) -> np.ndarray:
    """Parse ``"genotype[1] - genotype[2]"``, ``"Intercept + 0.5*a + b/2"`` into a vector.

    Labels are matched against X's column labels (longest first), then the expression is
    parsed with :mod:`ast` and only numbers, labels, ``+ - * /`` and parentheses are accepted.
    """
    placeholders: dict[str, int] = {}
    work = text
    for j in sorted(range(len(names)), key=lambda j: -len(names[j])):
        label = names[j]
        if label and label in work:
            token = f"__b{j}__"
            placeholders[token] = j
            work = work.replace(label, f" {token} ")
    try:
        tree = ast.parse(work.strip(), mode="eval")
    except SyntaxError:
        raise SpecificationError(
            f"cannot read contrast {text!r}: write a linear combination of the columns of X, "
            f"such as 'a - b' or '0.5*a + 0.5*b'; columns are {list(names)}"
        ) from None

    def walk(node) -> tuple[np.ndarray | None, float]:
        # returns (coefficient vector or None for a pure number, constant)
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return None, float(node.value)
        if isinstance(node, ast.Name):
            if node.id in placeholders:
                v = np.zeros(len(names))
                v[placeholders[node.id]] = 1.0
                return v, 0.0
            raise SpecificationError(
                f"contrast {text!r} names {node.id!r}, which is not a column of X; "
                f"columns are {list(names)}"
            )
        if isinstance(node, (ast.Subscript, ast.Attribute)):
            raise SpecificationError(
                f"contrast {text!r} refers to {ast.unparse(node)!r}, which is not a column of X; "
                f"columns are {list(names)}"
            )
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v, c = walk(node.operand)
            s = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return (None if v is None else s * v), s * c
        if isinstance(node, ast.BinOp):
            lv, lc = walk(node.left)
            rv, rc = walk(node.right)
            if isinstance(node.op, (ast.Add, ast.Sub)):
                s = 1.0 if isinstance(node.op, ast.Add) else -1.0
                if lv is None and rv is None:
                    return None, lc + s * rc
                vec = (lv if lv is not None else 0.0) + s * (rv if rv is not None else 0.0)
                if (lv is None and lc) or (rv is None and rc):
                    raise SpecificationError(f"contrast {text!r} adds a constant; Cβ has no constant term")
                return np.asarray(vec, dtype=float), 0.0
            if isinstance(node.op, ast.Mult):
                if lv is None:
                    return (None if rv is None else lc * rv), lc * rc
                if rv is None:
                    return lv * rc, 0.0
            if isinstance(node.op, ast.Div) and rv is None:
                if rc == 0:
                    raise SpecificationError(f"contrast {text!r} divides by zero")
                return (None if lv is None else lv / rc), lc / rc
        raise SpecificationError(
            f"cannot read contrast {text!r}: only numbers, column labels, + - * / and "
            f"parentheses are allowed (a contrast is linear in β)"
        )

    vec, const = walk(tree)
    if vec is None:
        raise SpecificationError(f"contrast {text!r} names no column of X")
    return vec


def _vector(value: Any, names: Sequence[str], label: str) -> np.ndarray:
    if isinstance(value, str):
        return _linear_expression(value, names)
    if isinstance(value, Mapping):
        vec = np.zeros(len(names))
        for key, weight in value.items():
            if key not in names:
                raise SpecificationError(
                    f"contrast {label!r} names {key!r}, which is not a column of X; columns are {list(names)}"
                )
            vec[list(names).index(key)] = float(weight)
        return vec
    arr = np.asarray(value, dtype=float).reshape(-1)
    if arr.size != len(names):
        raise SpecificationError(
            f"contrast {label!r} has {arr.size} coefficients but X has {len(names)} columns {list(names)}"
        )
    return arr


def contrast_matrix(spec: Any, names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Turn a contrast spec into (labels, C) with C of shape (r, p).

    Accepted forms: a string (``"genotype[1] - genotype[2]"``); a list of strings; a
    mapping ``label → string | vector | {column: weight}``; a C matrix (array, one row per
    contrast) or a 1-D vector; a DataFrame whose columns are X's labels (rows are contrasts).
    """
    p = len(names)
    if isinstance(spec, str):
        return [spec.strip()], _linear_expression(spec, names)[None, :]
    if isinstance(spec, pd.DataFrame):
        missing = [c for c in spec.columns if c not in names]
        if missing:
            raise SpecificationError(f"contrast columns {missing} are not columns of X {list(names)}")
        C = spec.reindex(columns=list(names), fill_value=0.0).to_numpy(dtype=float)
        return [str(i) for i in spec.index], C
    if isinstance(spec, Mapping):
        if not spec:
            raise SpecificationError("the contrast mapping is empty")
        labels = [str(k) for k in spec]
        return labels, np.vstack([_vector(v, names, str(k)) for k, v in spec.items()])
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, str) for s in spec):
        return [s.strip() for s in spec], np.vstack([_linear_expression(s, names) for s in spec])
    try:
        C = np.asarray(spec, dtype=float)
    except (TypeError, ValueError):
        raise SpecificationError(
            "a contrast must be a string, a mapping, a list of strings or a numeric C matrix"
        ) from None
    if C.ndim == 1:
        C = C[None, :]
    if C.ndim != 2 or C.shape[1] != p:
        raise SpecificationError(f"C must have {p} columns (one per column of X {list(names)}); got shape {C.shape}")
    if C.shape[0] == 0:
        raise SpecificationError("C has no rows")
    labels = [describe(row, names) for row in C]
    return labels, C


def describe(vec: np.ndarray, names: Sequence[str]) -> str:
    """A readable label for a coefficient vector, e.g. ``genotype[1] - genotype[2]``."""
    parts = []
    for w, name in zip(vec, names):
        if abs(w) < 1e-12:
            continue
        sign = "-" if w < 0 else "+"
        mag = abs(w)
        term = name if np.isclose(mag, 1) else f"{mag:g}*{name}"
        parts.append((sign, term))
    if not parts:
        return "0"
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    for sign, term in parts[1:]:
        text += f" {sign} {term}"
    return text


def row_space_projector(X: np.ndarray) -> np.ndarray:
    """P with c P = c exactly when c is in the row space of X (P = X⁺X)."""
    return np.linalg.pinv(X) @ X


def check_estimable(labels: Sequence[str], C: np.ndarray, X: np.ndarray, names: Sequence[str]) -> None:
    """Raise :class:`EstimabilityError` for the first row of C outside the row space of X.

    The message names the contrast and the direction of β (a null-space vector of X)
    that it depends on, which the data cannot identify.
    """
    P = row_space_projector(X)
    scale = max(1.0, float(np.abs(X).max()))
    for label, row in zip(labels, C):
        residual = row - row @ P
        if np.linalg.norm(residual) > _TOL * scale * max(1.0, np.linalg.norm(row)):
            direction = residual / np.abs(residual).max()
            raise EstimabilityError(
                f"contrast {label!r} ({describe(row, names)}) is not estimable: it is not a linear "
                f"combination of rows of X. It changes along the direction "
                f"[{describe(direction, names)}] of β, which leaves Xβ unchanged, so the data "
                f"cannot identify it (only the prior does). Estimable functions here are "
                f"combinations such as cell means and differences between levels."
            )


def summarize(draws: np.ndarray, labels: Sequence[str], *, prob: float, interval: str = "eti",
              rope: tuple[float, float] | None = None) -> pd.DataFrame:
    """Summarise draws (shape (..., r)) of r contrasts: one row per contrast."""
    flat = draws.reshape(-1, draws.shape[-1])
    out = pd.DataFrame(index=pd.Index(list(labels), name="contrast"))
    out["mean"] = flat.mean(axis=0)
    out["median"] = np.median(flat, axis=0)
    out["sd"] = flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else 0.0
    lower, upper = interval_bounds(flat, prob=prob, interval=interval)
    out["lower"] = lower
    out["upper"] = upper
    out["prob_positive"] = (flat > 0).mean(axis=0)
    if rope is not None:
        lo, hi = validate_rope(rope)
        out["prob_in_rope"] = ((flat >= lo) & (flat <= hi)).mean(axis=0)
    return out


def validate_rope(rope) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in rope)
    except (TypeError, ValueError):
        raise SpecificationError(f"rope must be a pair (low, high), got {rope!r}") from None
    if not lo < hi:
        raise SpecificationError(f"rope must have low < high, got {rope!r}")
    return lo, hi


def interval_bounds(flat: np.ndarray, *, prob: float, interval: str) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed (``eti``) or highest-density (``hdi``) interval of each column."""
    if not 0 < prob < 1:
        raise SpecificationError(f"prob must lie strictly between 0 and 1, got {prob!r}")
    if interval == "eti":
        a = (1 - prob) / 2
        return np.quantile(flat, a, axis=0), np.quantile(flat, 1 - a, axis=0)
    if interval == "hdi":
        s = np.sort(flat, axis=0)
        n = s.shape[0]
        width = max(1, int(np.floor(prob * n)))
        if width >= n:
            return s[0], s[-1]
        spans = s[width:] - s[: n - width]
        best = np.argmin(spans, axis=0)
        cols = np.arange(s.shape[1])
        return s[best, cols], s[best + width, cols]
    raise SpecificationError(f"interval must be 'eti' or 'hdi', got {interval!r}")
