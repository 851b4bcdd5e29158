"""The design: y, X with column labels, and one block per random factor.

A random block holds, for each row, the index of its level and the values multiplying
that level's coefficients (1 for a random intercept, the covariate for a slope). Z is never
needed to fit: the graph gathers ``u[level_index]``. The dense Z, G and the symbolic
``Var(y) = ZGZ' + R`` are available for teaching and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .dataprep import check_columns, check_finite
from .dataprep import natural_levels as _natural_levels
from .dataprep import prepare_data as _prepare_data
from .encoders import FixedEncoder, RandomEncoder, response_values
from .errors import DataError, SpecificationError
from .formula import parse_formula
from .validate import check_finite as _check_finite
from .validate import check_response
from .validate import numeric_2d as _numeric_2d
from .validate import single_level_error as _single_level_error
from .var_structure import var_y_structure as _var_y_structure

RESIDUAL = "Residual"


@dataclass(frozen=True, eq=False)
class RandomBlock:
    """One random factor: ``u_b`` has one row per level and one column per coefficient.

    Attributes
    ----------
    group : str
        Grouping factor (``pot``, ``litter:animal``; the block name on the matrix path).
    coef_names : tuple of str
        Coefficients per level: ``("1",)`` for an intercept, ``("1", "Days")`` for a slope.
    levels : tuple of str
        Level labels in the order of u's entries.
    index : ndarray of int, shape (n,)
        Level of each row (rows that belong to no level have ``values`` 0).
    values : ndarray, shape (n, k)
        Row ``i`` contributes ``values[i] @ u_b[index[i]]`` to Zu.
    correlated : bool
        Whether the k coefficients share a full covariance matrix G_b (LKJ prior).
    components : tuple of str
        Name of the variance component of each coefficient (rows of the variance table).
    dense : ndarray or None
        Z block for matrix input that is not one-level-per-row (then index/values are unused).
    """

    group: str
    coef_names: tuple[str, ...]
    levels: tuple[str, ...]
    index: np.ndarray
    values: np.ndarray
    correlated: bool
    components: tuple[str, ...]
    dense: np.ndarray | None = None
    encoder: Any = field(default=None, repr=False)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_coefs(self) -> int:
        return len(self.coef_names)

    @property
    def u_labels(self) -> list[str]:
        """Coordinate labels of this block's entries of u, level-major."""
        if self.n_coefs == 1 and self.coef_names[0] in ("1", self.group):
            return [f"{self.group}[{lev}]" for lev in self.levels]
        return [f"{self.group}[{lev}, {c}]" for lev in self.levels for c in self.coef_names]

    def z_matrix(self) -> np.ndarray:
        """The dense n × (levels·k) block Z_b, columns in the order of :attr:`u_labels`."""
        if self.dense is not None:
            return self.dense.copy()
        n, k = self.values.shape
        z = np.zeros((n, self.n_levels * k))
        rows = np.arange(n)
        for c in range(k):
            z[rows, self.index * k + c] += self.values[:, c]
        return z


@dataclass(frozen=True, eq=False)
class Design:
    """Everything numeric the model needs: y, X (+labels) and the random blocks.

    Build one with :func:`design_from_matrices` or :func:`design_from_formula`.

    Examples
    --------
    >>> design = bl.design_from_formula("weight ~ genotype + (1|pot)", data,
    ...                                 coding="full", factors=["genotype"])
    >>> design.X.shape, design.rank
    ((10, 3), 2)
    >>> design.var_y_structure(rows=range(3))  # doctest: +SKIP
    """

    y: np.ndarray
    X: np.ndarray
    x_names: tuple[str, ...]
    blocks: tuple[RandomBlock, ...]
    y_name: str = "y"
    row_labels: tuple[str, ...] = ()
    fixed_encoder: Any = field(default=None, repr=False)
    formula: str | None = None
    factor_columns: tuple[str, ...] = ()
    data: pd.DataFrame | None = field(default=None, repr=False)
    #: the residual structure R (:class:`~bayes_lmm.residual.ResolvedResidual`); None: σ²_e I
    residual: Any = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def components(self) -> tuple[str, ...]:
        """Variance components of the random part, in order (``Residual`` excluded)."""
        return tuple(c for b in self.blocks for c in b.components)

    @property
    def u_labels(self) -> list[str]:
        return [lab for b in self.blocks for lab in b.u_labels]

    @property
    def Z(self) -> np.ndarray:
        """The dense n × q matrix Z = [Z_1 … Z_m] (for teaching and tests only)."""
        if not self.blocks:
            return np.zeros((self.n, 0))
        return np.hstack([b.z_matrix() for b in self.blocks])

    @property
    def rank(self) -> int:
        return int(np.linalg.matrix_rank(self.X)) if self.p else 0

    def block(self, name: str) -> RandomBlock:
        for b in self.blocks:
            if b.group == name or name in b.components:
                return b
        raise SpecificationError(
            f"no random factor {name!r}; the model has {[b.group for b in self.blocks]}"
        )

    def G(self, covariances: Mapping[str, np.ndarray]) -> np.ndarray:
        """G = Var(u) given each block's k×k covariance (keyed by group), block-diagonal."""
        parts = [np.kron(np.eye(b.n_levels), np.asarray(covariances[b.group])) for b in self.blocks]
        if not parts:
            return np.zeros((0, 0))
        q = sum(p.shape[0] for p in parts)
        g = np.zeros((q, q))
        at = 0
        for p in parts:
            g[at : at + p.shape[0], at : at + p.shape[0]] = p
            at += p.shape[0]
        return g

    def var_y_structure(self, rows: Sequence[int] | slice | None = None) -> pd.DataFrame:
        """The symbolic block of ``Var(y) = ZGZ' + R`` for the chosen rows.

        Entries read like the notes' tables, e.g. ``σ²_litter + σ²_litter:animal + σ²_e``.
        For correlated random slopes, covariances appear as ``σ_(1,Days)|Subject`` and
        covariate values as factors.
        """
        return _var_y_structure(self, rows)


def design_from_matrices(
    y, X, Z: Mapping[str, Any] | None, *, x_names: Sequence[str] | None = None
) -> Design:
    """Build a :class:`Design` from explicit y, X and a mapping of Z blocks.

    Parameters
    ----------
    y : array-like, shape (n,)
    X : array-like or DataFrame, shape (n, p)
        May be rank-deficient (the notes' ``[1, genotype1, genotype2]``).
    Z : mapping of str to array-like or DataFrame, each (n, q_j)
        One variance component per block: ``u_j ~ N(0, σ_j² I)``. A DataFrame's columns
        name the levels. Blocks with one nonzero entry per row are fitted by index-gather.
    x_names : sequence of str, optional
        Labels of X's columns (default: the DataFrame's columns, else ``x0, x1, …``).

    Returns
    -------
    Design

    Examples
    --------
    >>> import numpy as np
    >>> import bayes_lmm as bl
    >>> X = np.array([[1, 1, 0]] * 5 + [[1, 0, 1]] * 5, dtype=float)
    >>> Z = np.eye(4)[[0, 0, 0, 1, 1, 2, 2, 2, 3, 3]]
    >>> design = bl.design_from_matrices(np.arange(10.0), X, {"pot": Z},
    ...                                  x_names=["mu", "g1", "g2"])
    >>> design.rank
    2
    """
    y_arr = _numeric_2d(np.asarray(y).reshape(-1) if np.ndim(y) == 2 and 1 in np.shape(y) else y, "y")
    check_response(y_arr, "y")
    n = y_arr.size
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns] if x_names is None else list(x_names)
    else:
        names = None if x_names is None else list(x_names)
    X_arr = _numeric_2d(X, "X")
    if X_arr.ndim == 1:
        X_arr = X_arr.reshape(-1, 1)
    if X_arr.ndim != 2 or X_arr.shape[0] != n:
        raise DataError(f"X must have shape (n, p) with n = len(y) = {n}; got {X_arr.shape}")
    if X_arr.shape[1] == 0:
        raise DataError("X has no columns; include at least an intercept column of ones")
    if names is None:
        names = [f"x{j}" for j in range(X_arr.shape[1])]
    if len(names) != X_arr.shape[1]:
        raise DataError(f"x_names has {len(names)} labels but X has {X_arr.shape[1]} columns")
    if len(set(names)) != len(names):
        dup = sorted({v for v in names if names.count(v) > 1})
        raise DataError(f"column labels of X must be unique; repeated: {dup}")
    _check_finite(X_arr, "X", names)
    if Z is None:
        Z = {}
    if not isinstance(Z, Mapping):
        raise SpecificationError(
            "Z must be a mapping from a random factor's name to its n × q_j block, "
            "e.g. {'pot': Z_pot}"
        )
    blocks = []
    for key, block in Z.items():
        name = str(key)
        if name == RESIDUAL:
            raise SpecificationError(f"{RESIDUAL!r} is reserved for σ_e; rename that Z block")
        levels = [str(c) for c in block.columns] if isinstance(block, pd.DataFrame) else None
        z = _numeric_2d(block, f"Z block {name!r}")
        if z.ndim == 1:
            z = z.reshape(-1, 1)
        if z.ndim != 2 or z.shape[0] != n:
            raise DataError(f"Z block {name!r} must have n = {n} rows; got shape {z.shape}")
        _check_finite(z, f"Z block {name!r}", levels)
        q = z.shape[1]
        if levels is None:
            levels = [str(j + 1) for j in range(q)]
        if len(set(levels)) != len(levels):
            raise DataError(f"Z block {name!r} has repeated level names")
        if q < 2:
            raise _single_level_error(name, levels[0] if levels else "?")
        unused = [levels[j] for j in range(q) if not np.any(z[:, j])]
        if unused:
            raise DataError(f"Z block {name!r}: levels {unused[:5]} have no observations (all-zero columns)")
        nonzero = (z != 0).sum(axis=1)
        if np.all(nonzero <= 1):
            index = np.where(nonzero == 1, np.argmax(z != 0, axis=1), 0)
            values = z[np.arange(n), index].reshape(-1, 1) * (nonzero == 1).reshape(-1, 1)
            dense = None
        else:
            index = np.zeros(n, dtype=int)
            values = np.zeros((n, 1))
            dense = z.copy()
        blocks.append(
            RandomBlock(
                group=name, coef_names=(name,), levels=tuple(levels), index=index.astype(np.int64),
                values=values, correlated=False, components=(name,), dense=dense,
            )
        )
    return Design(
        y=y_arr.copy(), X=X_arr.copy(), x_names=tuple(names), blocks=tuple(blocks),
        row_labels=tuple(str(i) for i in range(n)),
    )


# --------------------------------------------------------------------------- formulas


def design_from_formula(
    formula: str, data: pd.DataFrame, *, coding: str = "treatment", factors: Sequence[str] = ()
) -> Design:
    """Build a :class:`Design` from an lme4-style formula and a DataFrame.

    Grouping columns are always treated as factors; ``factors`` names further columns
    (e.g. a numerically coded genotype) to treat as categorical in the fixed part, as does
    ``C(x)`` in the formula (``C(x, Treatment("b"))``, ``C(x, levels=[…])`` also set the
    reference level and the level order; see :mod:`bayes_lmm.dataprep`).
    The caller's DataFrame is copied, never modified.

    Parameters
    ----------
    formula : str
        As in :func:`bayes_lmm.fit`.
    data : DataFrame
    coding : {"treatment", "full"}
    factors : sequence of str

    Returns
    -------
    Design

    Examples
    --------
    >>> import pandas as pd
    >>> import bayes_lmm as bl
    >>> data = pd.read_csv("models/data/seedling.csv")
    >>> design = bl.design_from_formula("weight ~ genotype + (1|pot)", data,
    ...                                 coding="full", factors=["genotype"])
    >>> design.x_names
    ('Intercept', 'genotype[1]', 'genotype[2]')
    """
    parsed = parse_formula(formula)
    frame = _prepare_data(data, list(factors), parsed)
    check_columns(parsed, frame, factors)
    y = response_values(parsed, frame)
    check_response(y, parsed.response)
    fixed = FixedEncoder(parsed, frame, coding)
    X = fixed.matrix()
    check_finite(X, fixed.names, frame, "X")
    n = len(y)
    blocks: list[RandomBlock] = []
    by_key: dict[tuple[str, str], list] = {}
    order: list[tuple[str, str]] = []
    for term in parsed.random:
        enc = RandomEncoder(term, frame, parsed)
        check_finite(enc.values(), [f"{c}|{term.group}" for c in enc.coef_names], frame, "random-effect")
        key = (term.lhs, term.group)
        by_key[key] = [term, enc]
        order.append(key)
    for key in order:
        term, enc = by_key[key]
        labels = _group_labels(frame, term.variables)
        levels = _natural_levels(labels)
        if len(levels) < 2:
            raise _single_level_error(term.group, str(levels[0]))
        lookup = {lev: i for i, lev in enumerate(levels)}
        index = labels.map(lookup).to_numpy(dtype=np.int64)
        values = enc.values()
        comps = tuple(f"{c}|{term.group}" for c in enc.coef_names)
        blocks.append(
            RandomBlock(
                group=term.group, coef_names=enc.coef_names, levels=tuple(str(v) for v in levels),
                index=index, values=values, correlated=len(enc.coef_names) > 1, components=comps,
                encoder=enc,
            )
        )
    comps = [c for b in blocks for c in b.components]
    dup = sorted({c for c in comps if comps.count(c) > 1})
    if dup:
        raise SpecificationError(f"variance components {dup} are specified twice in {formula!r}")
    return Design(
        y=y, X=X, x_names=fixed.names, blocks=tuple(blocks), y_name=parsed.response,
        row_labels=tuple(str(i) for i in frame.index)[:n], fixed_encoder=fixed, formula=formula,
        factor_columns=tuple(factors), data=frame,
    )


def _group_labels(frame: pd.DataFrame, variables: Sequence[str]) -> pd.Series:
    parts = [frame[v].astype(str) for v in variables]
    labels = parts[0]
    for p in parts[1:]:
        labels = labels + ":" + p
    if len(variables) == 1 and isinstance(frame[variables[0]].dtype, pd.CategoricalDtype):
        return frame[variables[0]].astype(str)
    if len(variables) == 1:
        # natural (numeric-aware) level order for a single numeric column
        col = frame[variables[0]]
        if pd.api.types.is_numeric_dtype(col):
            order = [str(v) for v in sorted(pd.unique(col))]
            return pd.Series(pd.Categorical(col.astype(str), categories=order), index=frame.index)
    return labels


def with_response(template: Design, y: Any, name: str) -> Design:
    """The template design with its response replaced by ``y`` (validated, named ``name``)."""
    values = np.asarray(pd.to_numeric(pd.Series(np.asarray(y).ravel()), errors="coerce"), dtype=float)
    if values.shape != (template.n,):
        raise SpecificationError(f"response {name!r} has {values.size} values; the design has {template.n} rows")
    check_response(values, name)
    data = template.data
    if data is not None and template.formula is not None:
        # the formula's response column carries y, so a saved fit rebuilds with these values
        column = parse_formula(template.formula).response_column
        if column is not None and column in data.columns:
            data = data.copy()
            data[column] = values
    return dataclasses.replace(template, y=values, y_name=name, data=data)
