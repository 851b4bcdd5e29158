"""Formula syntax that bayes_lmm reads itself, before ``formulae`` sees the formula.

* Quoted column names: ```my col``` (backticks, as in R) and ``Q("my col")`` (as in patsy).
* ``I(expr)`` (and formulae's ``{expr}``): arithmetic over numeric columns and numbers. The
  expression is parsed with :mod:`ast` and evaluated node by node from a whitelist
  (``+ - * / ** // %``, unary ``-``, ``log exp sqrt abs``); nothing in it is ever executed, so a
  formula (from a model card, say) cannot run code. The result enters X as a column named
  ``I(expr)``.
* ``C(x)``, ``C(x, Treatment("b"))``, ``C(x, Treatment(reference="b"))``, ``C(x, levels=[…])``:
  x is made a factor with that level order (the first level is the reference of treatment
  coding) and the term then reads plain ``x``, so labels are ``x[level]`` as with ``factors=``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import DataError, SpecificationError

_NAME = re.compile(r"[^\W\d][\w.]*")  # identifiers as Python and formulae read them, dots allowed
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
#: prefix of the placeholder that stands for a C(…) term until the formula is split
FACTOR_MARK = "\x00C"

_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.true_divide,
           ast.Pow: np.power, ast.FloorDiv: np.floor_divide, ast.Mod: np.mod}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}
_FUNCTIONS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs}
_ALLOWED = "+ - * / ** // %, unary -, log, exp, sqrt, abs, over numeric columns and numbers"


def caret(text: str, pos: int) -> str:
    return f"\n    {text}\n    {' ' * pos}^"


@dataclass(frozen=True)
class Token:
    """One lexical token: ``name``, ``quoted`` (backticks), ``string``, ``number`` or ``op``."""

    kind: str
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Tokens of a formula (or part of one); quoted names and strings are single tokens."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "`'\"":
            j = text.find(ch, i + 1)
            if j < 0:
                what = "backtick" if ch == "`" else "quote"
                raise SpecificationError(f"unclosed {what} {ch} in formula" + caret(text, i))
            if ch == "`" and j == i + 1:
                raise SpecificationError("empty backtick name `` in formula" + caret(text, i))
            out.append(Token("quoted" if ch == "`" else "string", text[i + 1 : j], i, j + 1))
            i = j + 1
            continue
        for kind, pattern in (("name", _NAME), ("number", _NUMBER)):
            m = pattern.match(text, i)
            if m:
                out.append(Token(kind, m.group(), i, m.end()))
                i = m.end()
                break
        else:
            width = 2 if text[i : i + 2] in ("**", "||", "//") else 1
            out.append(Token("op", text[i : i + width], i, i + width))
            i += width
    return out


def mask(text: str) -> str:
    """``text`` with the inside of quoted names and strings blanked to ``_`` (same length), so
    that a ``(``, ``|`` or ``+`` inside ```a name``` is not read as formula syntax."""
    out = list(text)
    for tok in tokenize(text):
        if tok.kind in ("quoted", "string"):
            out[tok.start + 1 : tok.end - 1] = "_" * (tok.end - tok.start - 2)
    return "".join(out)


def quote(name: str) -> str:
    """A column name as formula text: bare when it is a plain name, else in backticks."""
    return name if _NAME.fullmatch(name) else f"`{name}`"


def _closing(tokens: list[Token], at: int, text: str, open_: str = "(", close: str = ")") -> int:
    depth = 0
    for k in range(at, len(tokens)):
        t = tokens[k]
        if t.kind == "op" and t.text == open_:
            depth += 1
        elif t.kind == "op" and t.text == close:
            depth -= 1
            if depth == 0:
                return k
    raise SpecificationError(f"unclosed {open_!r} in formula" + caret(text, tokens[at].start))


def _calls(text: str, name: str) -> list[tuple[int, int, str]]:
    """Outermost calls ``name(…)``: (start, end, inner text), left to right."""
    tokens, out, k = tokenize(text), [], 0
    while k < len(tokens) - 1:
        t, nxt = tokens[k], tokens[k + 1]
        if t.kind == "name" and t.text == name and nxt.kind == "op" and nxt.text == "(":
            close = _closing(tokens, k + 1, text)
            out.append((t.start, tokens[close].end, text[nxt.end : tokens[close].start]))
            k = close + 1
        else:
            k += 1
    return out


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    return text


# --------------------------------------------------------------------------- I() arithmetic


def _placeholders(expr: str) -> tuple[str, dict[str, str]]:
    """``expr`` with quoted and dotted names replaced by identifiers Python can parse."""
    names: dict[str, str] = {}
    spans = []
    for tok in tokenize(expr):
        if tok.kind == "quoted" or (tok.kind == "name" and "." in tok.text):
            key = f"__bl{len(names)}__"
            names[key] = tok.text
            spans.append((tok.start, tok.end, key))
    return _replace(expr, spans), names


def _restore(piece: str, names: dict[str, str]) -> str:
    for key, name in names.items():
        piece = piece.replace(key, quote(name))
    return piece


def _arith_tree(expr: str) -> tuple[ast.Expression, dict[str, str], str]:
    src, names = _placeholders(expr)
    src = " ".join(src.split())
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError:
        raise SpecificationError(
            f"I({expr}) is not an arithmetic expression; I() takes {_ALLOWED}"
        ) from None

    def bad(node: ast.AST, why: str = "") -> SpecificationError:
        piece = _restore(ast.get_source_segment(src, node) or type(node).__name__, names)
        return SpecificationError(f"I({expr}): {piece!r} is not allowed{why}; I() takes {_ALLOWED}")

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                hint = " (write ** for a power)" if isinstance(node.op, ast.BitXor) else ""
                raise bad(node, hint)
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.UnaryOp):
            if type(node.op) not in _UNARY:
                raise bad(node)
            check(node.operand)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise bad(node, " (only numbers may be constants)")
        elif isinstance(node, ast.Call):
            func = node.func.id if isinstance(node.func, ast.Name) else None
            if func not in _FUNCTIONS or len(node.args) != 1 or node.keywords:
                raise bad(node, " (functions: one argument to log, exp, sqrt or abs)")
            check(node.args[0])
        elif not isinstance(node, ast.Name):
            raise bad(node)

    check(tree.body)
    return tree, names, src


def arith_columns(expr: str) -> list[str]:
    """The data columns an ``I(expr)`` reads (validating the expression)."""
    tree, names, _ = _arith_tree(expr)
    functions = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in functions:
            col = names.get(node.id, node.id)
            if col not in out:
                out.append(col)
    return out


def evaluate_arith(expr: str, frame: pd.DataFrame) -> np.ndarray:
    """The values of ``I(expr)`` over the rows of ``frame``, by walking the whitelisted tree."""
    tree, names, _ = _arith_tree(expr)

    def value(node: ast.AST):
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](value(node.operand))
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Call):
            return _FUNCTIONS[node.func.id](value(node.args[0]))
        col = names.get(node.id, node.id)
        if col not in frame.columns:
            raise DataError(f"column {col!r} used in I({expr}) is not in the data; columns are "
                            f"{[str(c) for c in frame.columns]}")
        series = frame[col]
        if isinstance(series.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(series):
            raise DataError(f"I({expr}) does arithmetic on column {col!r}, which is not numeric "
                            f"(dtype {series.dtype})")
        return series.to_numpy(dtype=float)

    with np.errstate(all="ignore"):
        out = np.asarray(value(tree.body), dtype=float)
    return np.full(len(frame), float(out)) if out.ndim == 0 else out


# --------------------------------------------------------------------------- C() factors


@dataclass(frozen=True)
class FactorSpec:
    """A column that ``C(…)`` makes a factor: optional level order and reference level."""

    column: str
    levels: tuple | None = None
    reference: object | None = None


def _literal(node: ast.AST, inner: str):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)) \
            and not isinstance(node.value, bool):
        return node.value
    raise SpecificationError(f"C({inner}): levels and references must be strings or numbers")


def _reference(node: ast.AST, inner: str, src: str):
    if isinstance(node, ast.Name) and node.id == "Treatment":
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Treatment":
        kws = {kw.arg: kw.value for kw in node.keywords}
        unknown = [k for k in kws if k not in ("reference", "ref")]
        if len(node.args) + len(kws) <= 1 and not unknown:
            value = node.args[0] if node.args else next(iter(kws.values()), None)
            return None if value is None else _literal(value, inner)
    piece = ast.get_source_segment(src, node)
    raise SpecificationError(
        f"C({inner}): {piece!r} is not supported; C() takes Treatment, Treatment('level') or "
        f"Treatment(reference='level') (the reference level), and levels=[…] (the level order)"
    )


def factor_spec(inner: str) -> FactorSpec:
    """Read the arguments of ``C(inner)``."""
    src, names = _placeholders(inner)
    try:
        call = ast.parse(f"C({' '.join(src.split())})", mode="eval").body
    except SyntaxError:
        raise SpecificationError(f"could not read C({inner}); write e.g. C(x), "
                                 f"C(x, Treatment('b')) or C(x, levels=['b', 'a'])") from None
    src = " ".join(src.split())
    if not call.args or len(call.args) > 2 or not isinstance(call.args[0], ast.Name):
        raise SpecificationError(f"C({inner}): the first argument must be a column name, then "
                                 f"optionally Treatment('level') and levels=[…]")
    column = names.get(call.args[0].id, call.args[0].id)
    contrast = call.args[1] if len(call.args) == 2 else None
    levels = None
    for kw in call.keywords:
        if kw.arg == "levels" and isinstance(kw.value, (ast.List, ast.Tuple)) and kw.value.elts:
            levels = tuple(_literal(e, inner) for e in kw.value.elts)
            if len({str(v) for v in levels}) != len(levels):
                raise SpecificationError(f"C({inner}): levels are repeated")
        elif kw.arg == "contrast" and contrast is None:
            contrast = kw.value
        else:
            raise SpecificationError(f"C({inner}): unknown or malformed argument {kw.arg!r}; "
                                     f"C() takes a column, Treatment('level') and levels=[…]")
    reference = None if contrast is None else _reference(contrast, inner, f"C({src})")
    return FactorSpec(column=column, levels=levels, reference=reference)


# --------------------------------------------------------------------------- the rewrite


@dataclass(frozen=True)
class Rewritten:
    """The formula after Q(), I() and C() are resolved, with what they stand for."""

    text: str
    computed: tuple[tuple[str, str], ...]  # (column name ``I(expr)``, expr)
    factors: tuple[FactorSpec, ...]  # indexed by the number after FACTOR_MARK


def rewrite(formula: str) -> Rewritten:
    """Resolve quoting, arithmetic and factor calls (see the module docstring)."""
    text = formula
    tokenize(text)  # unclosed quotes are reported against the formula as typed
    spans = []
    for start, end, inner in _calls(text, "Q"):
        toks = tokenize(inner)
        if len(toks) != 1 or toks[0].kind != "string" or "`" in toks[0].text:
            raise SpecificationError(f"Q({inner.strip()}) must hold one quoted column name, as in "
                                     f"Q(\"my col\")" + caret(formula, start))
        spans.append((start, end, f"`{toks[0].text}`"))
    text = _replace(text, spans)
    tokens = tokenize(text)
    spans = []
    for k, t in enumerate(tokens):
        if t.kind == "op" and t.text == "{":
            close = tokens[_closing(tokens, k, text, "{", "}")]
            spans += [(t.start, t.end, "I("), (close.start, close.end, ")")]
    text = _replace(text, spans)
    stray = [t for t in tokenize(text) if t.kind == "op" and t.text == "}"]
    if stray:
        raise SpecificationError("unbalanced '}' in formula" + caret(text, stray[0].start))
    computed: dict[str, str] = {}
    spans = []
    for start, end, inner in _calls(text, "I"):
        arith_columns(inner)  # validate now, before any data is looked at
        name = "I(" + " ".join(inner.replace("`", "").split()) + ")"
        computed[name] = inner
        spans.append((start, end, f"`{name}`"))
    text = _replace(text, spans)
    factors: list[FactorSpec] = []
    spans = []
    for start, end, inner in _calls(text, "C"):
        spec = factor_spec(inner)
        for other in factors:
            if other.column == spec.column and other != spec:
                raise SpecificationError(
                    f"column {spec.column!r} is given two different factor codings, C({inner}) "
                    f"and another C(…) with levels {other.levels} and reference {other.reference!r}"
                )
        factors.append(spec)
        spans.append((start, end, f"`{FACTOR_MARK}{len(factors) - 1}`"))
    text = _replace(text, spans)
    return Rewritten(text=text, computed=tuple(computed.items()), factors=tuple(factors))


def references(text: str) -> list[tuple[str, bool]]:
    """Names that ``text`` reads as variables, each with whether it stands bare (outside any
    function call); names followed by ``(`` are functions, not variables."""
    tokens = tokenize(text)
    out, stack = [], []
    for k, t in enumerate(tokens):
        nxt = tokens[k + 1] if k + 1 < len(tokens) else None
        is_call = nxt is not None and nxt.kind == "op" and nxt.text == "("
        if t.kind == "op" and t.text == "(":
            prev = tokens[k - 1] if k else None
            stack.append(prev is not None and prev.kind == "name")
        elif t.kind == "op" and t.text == ")" and stack:
            stack.pop()
        elif t.kind in ("name", "quoted") and not is_call:
            out.append((t.text, not any(stack)))
    return out
