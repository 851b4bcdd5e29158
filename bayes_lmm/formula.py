"""Parsing lme4-style formulas into response, fixed part and random terms.

``formulae`` evaluates the fixed and random-slope expressions (:mod:`bayes_lmm.encoders`).
This module adds what it lacks: ``(x || g)`` expansion, keeping track of which group terms
came from one ``( … | g)`` term (so that they are correlated, as in lme4), the notes'
overparameterized ``coding="full"``, and a closed list of safe transforms so that a formula
cannot run arbitrary code. Quoted names, ``I()`` arithmetic and ``C()`` level orders are
resolved first by :mod:`bayes_lmm.formula_syntax`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from formulae import model_description

from .errors import SpecificationError
from .formula_syntax import (
    FACTOR_MARK,
    FactorSpec,
    arith_columns,
    caret,
    mask,
    quote,
    references,
    rewrite,
    tokenize,
)

#: functions a formula may call; nothing else is reachable from a formula.
SAFE_TRANSFORMS = ("log", "exp", "sqrt", "scale", "center", "C", "I", "Q")
_MARK = re.compile(re.escape(f"`{FACTOR_MARK}") + r"(\d+)`")


def _check_calls(text: str) -> None:
    tokens = tokenize(text)
    for tok, nxt in zip(tokens, tokens[1:]):
        if tok.kind == "name" and nxt.kind == "op" and nxt.text == "(" and tok.text not in SAFE_TRANSFORMS:
            raise SpecificationError(
                f"function {tok.text!r} is not allowed in a formula; allowed transforms are "
                f"{', '.join(SAFE_TRANSFORMS)}" + caret(text, tok.start)
            )


def _top_level_groups(masked: str, formula: str, offset: int) -> list[tuple[int, int]]:
    """Spans (start, end) of the top-level parenthesised groups in ``masked`` (quotes blanked)."""
    spans, depth, start = [], 0, -1
    for i, ch in enumerate(masked):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecificationError("unbalanced ')' in formula" + caret(formula, offset + i))
            if depth == 0:
                spans.append((start, i + 1))
    if depth != 0:
        raise SpecificationError("unclosed '(' in formula" + caret(formula, offset + start))
    return spans


def _split_top(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses and quoted names."""
    parts, depth, last = [], 0, 0
    for i, ch in enumerate(mask(text)):
        depth += ch == "("
        depth -= ch == ")"
        if ch == sep and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return parts


def _has_top_bar(text: str) -> bool:
    depth = 0
    for ch in mask(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            return True
    return False


def _bar_outside_error(formula: str, response: str, rhs: str) -> SpecificationError:
    pieces = [t.strip() for t in _split_top(rhs, "+") if t.strip()]
    bars = [p for p in pieces if _has_top_bar(p)]
    fixed = [p for p in pieces if not _has_top_bar(p)]
    fixed_names = {p.replace(" ", "") for p in fixed}
    corrected = " + ".join(f"({p})" if p in bars else p for p in pieces)
    msg = (f"'|' outside parentheses in {formula!r}: random-effect terms go in parentheses, so "
           f"write {', '.join(f'({b})' for b in bars)}, as in '{response} ~ {corrected}'")
    slopes = [t.strip() for b in bars for t in _split_top(_split_top(b, "|")[0], "+")
              if t.strip() not in ("", "0", "1", "-1") and t.replace(" ", "") not in fixed_names]
    if slopes:
        keep = " + ".join(dict.fromkeys(slopes))
        msg += f" (or '{response} ~ {keep} + {corrected}' to keep the fixed effect of {keep})"
    return SpecificationError(msg + " — without them '|' would silently drop the random effect")


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
    """A formula split into response, fixed part and random terms.

    ``response``, ``fixed`` and each term's ``lhs`` are ``formulae`` text (quoted names in
    backticks, ``I(…)`` as the backticked name of a computed column, ``C(…)`` as its column).
    ``computed`` maps those computed names to their arithmetic; ``factors`` are the columns
    ``C(…)`` makes factors; ``columns`` every data column read (grouping included);
    ``value_columns`` the columns whose values enter y, X or Z (grouping excluded);
    ``fixed_columns`` those of the fixed part and ``fixed_bare`` those standing bare in it
    (not inside a function); ``factor_conflicts`` the ``C(…)`` columns also used as numbers.
    """

    formula: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]
    computed: tuple[tuple[str, str], ...] = ()
    factors: tuple[FactorSpec, ...] = ()
    columns: tuple[str, ...] = ()
    value_columns: tuple[str, ...] = ()
    fixed_columns: tuple[str, ...] = ()
    fixed_bare: tuple[str, ...] = ()
    factor_conflicts: tuple[str, ...] = ()

    @property
    def response_column(self) -> str | None:
        """The data column that is the response, or None for a transformed response."""
        toks = tokenize(self.response)
        if len(toks) == 1 and toks[0].kind in ("name", "quoted") and toks[0].text not in dict(self.computed):
            return toks[0].text
        return None


def _expand_lhs_uncorrelated(lhs: str) -> list[str]:
    terms = [t.strip() for t in _split_top(lhs, "+") if t.strip()]
    intercept = not any(t in ("0", "-1") for t in terms) and not re.search(r"-\s*1\b", lhs)
    out = ["1"] if intercept else []
    for t in terms:
        if t in ("0", "1", "-1"):
            continue
        out.append(f"0 + {t}")
    return out


def _grouping(right: str, inner: str, formula: str, pos: int,
              computed: dict[str, str]) -> list[tuple[str, tuple[str, ...]]]:
    """The nested groupings of ``a/b`` (``a``, ``a:b``), each with its columns."""
    nested = []
    for g in _split_top(right, "/"):
        toks = tokenize(g)
        ok = len(toks) % 2 == 1 and all(
            (t.kind in ("name", "quoted") and t.text not in computed
             and not t.text.startswith(FACTOR_MARK))
            if k % 2 == 0 else (t.kind == "op" and t.text == ":")
            for k, t in enumerate(toks))
        if not ok:
            raise SpecificationError(
                f"grouping factor {g.strip()!r} in '({inner})' must be a column name (quote "
                f"other names as `my col` or Q(\"my col\")), or names joined by ':' or '/'"
                + caret(formula, pos)
            )
        nested.append(tuple(t.text for t in toks[::2]))
    groups = []
    for k in range(len(nested)):
        names = tuple(v for part in nested[: k + 1] for v in part)
        groups.append((":".join(names), names))
    return groups


def _columns_of(text: str, computed: dict[str, str], factors) -> list[tuple[str, str, bool]]:
    """(column, kind, bare) for every variable ``text`` reads: kind is ``column``, ``factor``
    (from C(…)) or ``computed`` (inside I(…))."""
    out = []
    for name, bare in references(text):
        if name.startswith(FACTOR_MARK):
            out.append((factors[int(name[len(FACTOR_MARK):])].column, "factor", bare))
        elif name in computed:
            out += [(c, "computed", False) for c in arith_columns(computed[name])]
        else:
            out.append((name, "column", bare))
    return out


def parse_formula(formula: str) -> ParsedFormula:
    """Split and validate an lme4-style formula.

    Raises
    ------
    SpecificationError
        If the formula is not a string, has no ``~``, calls a function outside
        :data:`SAFE_TRANSFORMS`, has ``|`` outside parentheses, or does not parse (the
        message shows where).
    """
    if not isinstance(formula, str) or not formula.strip():
        raise SpecificationError(f"formula must be a non-empty string, got {formula!r}")
    rw = rewrite(formula)
    text = rw.text
    _check_calls(text)
    masked = mask(text)
    if masked.count("~") != 1:
        raise SpecificationError(
            f"formula must have exactly one '~' separating response and predictors: {formula!r}"
        )
    tilde = masked.index("~")
    response, rhs = text[:tilde].strip(), text[tilde + 1 :]
    if not response:
        raise SpecificationError(f"formula has no response on the left of '~': {formula!r}")
    offset = tilde + 1
    spans = _top_level_groups(masked[offset:], text, offset)
    random: list[RandomTerm] = []
    fixed_text = list(rhs)
    for start, end in spans:
        inner = rhs[start + 1 : end - 1]
        minner = mask(inner)
        if "|" not in minner:
            continue
        for i in range(start, end):
            fixed_text[i] = " "
        double = "||" in minner
        cut = minner.index("||" if double else "|")
        left, right = inner[:cut].strip(), inner[cut + (2 if double else 1) :].strip()
        if not left or not right:
            raise SpecificationError(
                f"random-effect term '({inner})' needs an expression on both sides of '|'"
                + caret(text, offset + start)
            )
        lhs_parts = _expand_lhs_uncorrelated(left) if double else [left]
        for group, names in _grouping(right, inner, text, offset + start, dict(rw.computed)):
            for part in lhs_parts:
                random.append(RandomTerm(lhs=part, group=group, variables=names))
    fixed_rest = "".join(fixed_text)
    if _has_top_bar(fixed_rest):
        # shown as typed: Q(), I() and C() hold no top-level '|', so the original splits the same
        typed = mask(formula).index("~")
        raise _bar_outside_error(formula, formula[:typed].strip(), formula[typed + 1 :])
    fixed_terms = [t.strip() for t in _split_top(fixed_rest, "+") if t.strip()]
    fixed = " + ".join(fixed_terms) if fixed_terms else "1"
    computed = dict(rw.computed)
    used_fixed = _columns_of(fixed, computed, rw.factors)
    used_values = _columns_of(response, computed, rw.factors) + used_fixed + [
        c for t in random for c in _columns_of(t.lhs, computed, rw.factors)]
    grouping = [v for t in random for v in t.variables]
    factor_cols = {f.column for f in rw.factors}
    random = [RandomTerm(lhs=_unmark(t.lhs, rw), group=t.group, variables=t.variables) for t in random]
    response, fixed = _unmark(response, rw), _unmark(fixed, rw)
    expanded = f"{response} ~ {fixed}" + "".join(
        f" + ({t.lhs}|{':'.join(quote(v) for v in t.variables)})" for t in random)
    try:
        model_description(expanded)
    except Exception as exc:  # formulae raises its own ParseError/ScanError types
        raise SpecificationError(f"could not parse formula {formula!r}: {exc}") from None
    seen = set()
    for t in random:
        if (t.lhs, t.group) in seen:
            raise SpecificationError(f"random term ({t.lhs}|{t.group}) appears twice in {formula!r}")
        seen.add((t.lhs, t.group))
    unique = lambda cols: tuple(dict.fromkeys(cols))
    return ParsedFormula(
        formula=formula, response=response, fixed=fixed, random=tuple(random),
        computed=rw.computed, factors=unique(rw.factors),
        columns=unique([c for c, _, _ in used_values] + grouping),
        value_columns=unique(c for c, _, _ in used_values),
        fixed_columns=unique(c for c, _, _ in used_fixed),
        fixed_bare=unique(c for c, kind, bare in used_fixed if bare and kind == "column"),
        factor_conflicts=unique(c for c, kind, _ in used_values if kind != "factor" and c in factor_cols),
    )


def _unmark(text: str, rw) -> str:
    return _MARK.sub(lambda m: quote(rw.factors[int(m.group(1))].column), text)
