"""Residual structures: the notes' ``R = Var(e)`` beyond ``σ²_e I``.

Each public class is a frozen description holding column names; :meth:`resolve` checks it
against the data (one row per row of the design, in the design's order) and returns a
:class:`ResolvedResidual`: integer codes per row for the group, the time and the SD strata,
and the level labels. That object builds ``R`` (n × n, for tests and small data) and, what
the likelihoods use, the per-group blocks ``R_g = D_g C_g D_g``, with ``D_g`` the residual
SDs of the group's rows and ``C_g`` their correlation matrix:

==========================  =====================================  ===========================
structure                   ``C_g`` entry ``(s, t)``                SD labels
==========================  =====================================  ===========================
``IID()`` (default)         ``1{s = t}``                            ``Residual``
``KnownSD(column)``         ``1{s = t}``, D = diag(s) known         (none estimated)
``HeteroSD(by)``            ``1{s = t}``                            ``Residual[level]``
``AR1(time, group)``        ``ρ^|t − s|``                           ``Residual`` or by ``sd_by``
``CompoundSymmetry(group)`` ``ρ`` off the diagonal                  ``Residual`` or by ``sd_by``
``Unstructured(time, g)``   ``corr(t_s, t_t)``, a full matrix       ``Residual[time]``
==========================  =====================================  ===========================

The user's data are only read, never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecificationError
from .residual_data import (
    RESIDUAL,
    check_unique_times,
    codes,
    column,
    rows_text,
    show,
    strata,
    time_positions,
)

#: the most distinct times an :class:`Unstructured` residual may have
MAX_UNSTRUCTURED_TIMES = 8


@dataclass(frozen=True, eq=False)
class ResolvedResidual:
    """A residual structure checked against the data: codes per row and level labels.

    Attributes
    ----------
    kind : {"iid", "known", "hetero", "ar1", "cs", "un"}
    n : int
    sd_labels : tuple of str
        Labels of the estimated residual SDs, ``Residual`` or ``Residual[level]`` (empty for
        :class:`KnownSD`).
    stratum : ndarray of int, shape (n,)
        Which entry of ``sd_labels`` gives each row's SD.
    known_sd : ndarray or None
        The known SDs ``s`` of :class:`KnownSD`.
    group : ndarray of int or None
        The group of each row (rows of different groups are uncorrelated).
    time : ndarray of int or None
        AR(1): integer position of each row; Unstructured: index into ``time_labels``.
    corr_names : tuple of str
        ``("rho",)`` for AR1 and CS, ``corr(t1,t2)`` per pair for Unstructured.
    """

    kind: str
    n: int
    sd_labels: tuple[str, ...]
    stratum: np.ndarray
    known_sd: np.ndarray | None = None
    group: np.ndarray | None = None
    group_labels: tuple[str, ...] = ()
    time: np.ndarray | None = None
    time_labels: tuple[str, ...] = ()
    corr_names: tuple[str, ...] = ()
    #: the structure this was resolved from (``KnownSD("sigma")``, ...), for saving and new data
    source: Any = None

    @property
    def correlated(self) -> bool:
        return self.kind in ("ar1", "cs", "un")

    @property
    def groups(self) -> list[np.ndarray]:
        """Row indices of each group in data order (one row each when R is diagonal)."""
        if self.group is None:
            return [np.array([i]) for i in range(self.n)]
        return [np.flatnonzero(self.group == g) for g in range(len(self.group_labels))]

    def row_sd(self, sds: Any = None) -> np.ndarray:
        """The residual SD of every row: ``s`` for KnownSD, else ``sds[stratum]``."""
        if self.known_sd is not None:
            return self.known_sd.copy()
        sds = np.atleast_1d(np.asarray(sds, dtype=float))
        if sds.shape != (len(self.sd_labels),):
            raise SpecificationError(f"expected {len(self.sd_labels)} residual SDs {list(self.sd_labels)}, "
                                     f"got {sds.shape[0]}")
        return sds[self.stratum]

    def correlation(self, rows: np.ndarray, corr: Any = None) -> np.ndarray:
        """``C_g`` for the given rows of one group; ``corr`` is ρ or the full T × T matrix."""
        k = len(rows)
        if self.kind in ("iid", "known", "hetero"):
            return np.eye(k)
        if self.kind == "ar1":
            t = self.time[rows].astype(float)
            return float(corr) ** np.abs(t[:, None] - t[None, :])
        if self.kind == "cs":
            return np.full((k, k), float(corr)) + (1.0 - float(corr)) * np.eye(k)
        full = np.asarray(corr, dtype=float)
        T = len(self.time_labels)
        if full.shape != (T, T):
            raise SpecificationError(f"the Unstructured correlation must be {T} × {T} over times "
                                     f"{list(self.time_labels)}; got shape {full.shape}")
        t = self.time[rows]
        return full[np.ix_(t, t)]

    def block(self, g: int, sds: Any = None, corr: Any = None) -> np.ndarray:
        """``R_g = D_g C_g D_g`` for group ``g`` (its rows in data order, see :attr:`groups`)."""
        rows = self.groups[g]
        d = self.row_sd(sds)[rows]
        return d[:, None] * self.correlation(rows, corr) * d[None, :]

    def matrix(self, sds: Any = None, corr: Any = None) -> np.ndarray:
        """The dense n × n ``R`` (for tests and small data)."""
        R = np.zeros((self.n, self.n))
        if not self.correlated:
            np.fill_diagonal(R, self.row_sd(sds) ** 2)
            return R
        for g, rows in enumerate(self.groups):
            R[np.ix_(rows, rows)] = self.block(g, sds, corr)
        return R

    def corr_values(self, corr: Any) -> np.ndarray:
        """The named correlation parameters (:attr:`corr_names`) read from ρ or a matrix."""
        if self.kind in ("ar1", "cs"):
            return np.array([float(corr)])
        if self.kind == "un":
            full = np.asarray(corr, dtype=float)
            return full[np.triu_indices(len(self.time_labels), 1)]
        return np.zeros(0)


def _check_n(spec: str, data: pd.DataFrame | None, n: int | None) -> int:
    if data is not None and n is not None and len(data) != n:
        raise SpecificationError(f"residual={spec}: the data have {len(data)} rows; the design has {n}")
    if data is None and n is None:
        raise SpecificationError(f"residual={spec}: pass the data frame or the number of rows n")
    return len(data) if data is not None else int(n)


@dataclass(frozen=True)
class IID:
    """The default residual, ``R = σ²_e I`` (one SD labelled ``Residual``).

    Examples
    --------
    >>> bl.IID().resolve(n=3).matrix([2.0])  # doctest: +SKIP
    """

    def resolve(self, data: pd.DataFrame | None = None, *, n: int | None = None) -> ResolvedResidual:
        n = _check_n("IID()", data, n)
        return ResolvedResidual("iid", n, (RESIDUAL,), np.zeros(n, dtype=np.int64))


@dataclass(frozen=True)
class KnownSD:
    """Known residual SDs: ``R = diag(s²)`` with ``s`` from a column (or an array, for matrix
    input); no residual variance is estimated (the eight schools, meta-analysis).

    Parameters
    ----------
    column : str or array-like
        The column of ``s`` (positive, finite, no missing values), or the n values.

    Examples
    --------
    >>> bl.reml("y ~ 1 + (1|school)", schools, residual=bl.KnownSD("sigma"))  # doctest: +SKIP
    """

    column: Any

    def __post_init__(self):
        if not isinstance(self.column, str):
            try:
                values = tuple(float(v) for v in np.asarray(self.column, dtype=float).ravel())
            except (TypeError, ValueError):
                raise SpecificationError("KnownSD takes a column name or an array of numbers") from None
            object.__setattr__(self, "column", values)

    def resolve(self, data: pd.DataFrame | None = None, *, n: int | None = None) -> ResolvedResidual:
        if isinstance(self.column, str):
            spec = f"KnownSD({self.column!r})"
            n = _check_n(spec, data, n)
            series = column(spec, data, self.column)
            if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
                raise SpecificationError(f"residual={spec}: column {self.column!r} must be numeric "
                                         f"(dtype {series.dtype})")
            s, index, what = series.to_numpy(dtype=float), data.index, f"column {self.column!r}"
        else:
            spec = "KnownSD(array)"
            s = np.array(self.column)
            n = s.size if n is None and data is None else _check_n(spec, data, n)
            if s.size != n:
                raise SpecificationError(f"residual={spec}: {s.size} SDs given for {n} rows")
            index, what = pd.RangeIndex(n), "the array"
        for bad, word in ((np.isnan(s), "missing"), (np.isinf(s), "non-finite"), (s <= 0, "non-positive")):
            if bad.any():
                raise SpecificationError(f"residual={spec}: {what} has {word} SD {show(s[bad][0])} "
                                         f"(rows {rows_text(bad, index)}); known SDs must be positive and finite")
        return ResolvedResidual("known", n, (), np.zeros(n, dtype=np.int64), known_sd=s)


@dataclass(frozen=True)
class HeteroSD:
    """One residual SD per level of ``by`` (nlme ``varIdent``): labels ``Residual[level]``.

    Parameters
    ----------
    by : str
        A column whose levels each have at least two rows.

    Examples
    --------
    >>> bl.reml("distance ~ age + Sex + (1|Subject)", orth, residual=bl.HeteroSD("Sex"))  # doctest: +SKIP
    """

    by: str

    def resolve(self, data: pd.DataFrame | None = None, *, n: int | None = None) -> ResolvedResidual:
        spec = f"HeteroSD({self.by!r})"
        n = _check_n(spec, data, n)
        stratum, labels = strata(spec, data, self.by)
        return ResolvedResidual("hetero", n, labels, stratum)


def _sd_strata(spec: str, data: pd.DataFrame, sd_by: str | None, n: int):
    if sd_by is None:
        return np.zeros(n, dtype=np.int64), (RESIDUAL,)
    return strata(spec, data, sd_by)


@dataclass(frozen=True)
class AR1:
    """AR(1) within each level of ``group``: ``corr(e_s, e_t) = ρ^|t − s|`` over the integer (or
    ordered Categorical) ``time`` column, gaps allowed; SDs per level of ``sd_by`` if given.

    Parameters
    ----------
    time : str
        Integers (or an ordered Categorical, whose codes are the positions), each at most once
        per group.
    group : str
        Rows of different levels are uncorrelated.
    sd_by : str, optional
        One residual SD per level of this column (default: one SD, ``Residual``).

    Examples
    --------
    >>> bl.reml("y ~ x + (1|subject)", sim, residual=bl.AR1("time", "subject"))  # doctest: +SKIP
    """

    time: str
    group: str
    sd_by: str | None = None

    def resolve(self, data: pd.DataFrame | None = None, *, n: int | None = None) -> ResolvedResidual:
        spec = f"AR1({self.time!r}, {self.group!r})"
        n = _check_n(spec, data, n)
        group, glabels = codes(column(spec, data, self.group))
        time, tlabels = time_positions(spec, data, self.time)
        check_unique_times(spec, data, self.time, self.group, group, time, glabels)
        stratum, labels = _sd_strata(spec, data, self.sd_by, n)
        return ResolvedResidual("ar1", n, labels, stratum, group=group, group_labels=glabels,
                                time=time, time_labels=tlabels, corr_names=("rho",))


@dataclass(frozen=True)
class CompoundSymmetry:
    """Equal correlation ρ between any two residuals of one level of ``group`` (nlme
    ``corCompSymm``); SDs per level of ``sd_by`` if given.

    Parameters
    ----------
    group : str
    sd_by : str, optional
        As in :class:`AR1`.

    Examples
    --------
    >>> bl.reml("distance ~ age * Sex", orth, residual=bl.CompoundSymmetry("Subject"))  # doctest: +SKIP
    """

    group: str
    sd_by: str | None = None

    def resolve(self, data: pd.DataFrame | None = None, *, n: int | None = None) -> ResolvedResidual:
        spec = f"CompoundSymmetry({self.group!r})"
        n = _check_n(spec, data, n)
        group, glabels = codes(column(spec, data, self.group))
        stratum, labels = _sd_strata(spec, data, self.sd_by, n)
        return ResolvedResidual("cs", n, labels, stratum, group=group, group_labels=glabels,
                                corr_names=("rho",))


@dataclass(frozen=True)
class Unstructured:
    """A full residual covariance over the (at most 8) distinct times of each group, SAS
    ``TYPE=UN``: one SD per time (``Residual[time]``) and every correlation ``corr(t1,t2)``.

    Parameters
    ----------
    time : str
        Integers or an ordered Categorical, at most 8 distinct values, each at most once per
        group and in at least two rows.
    group : str

    Examples
    --------
    >>> bl.reml("distance ~ age * Sex", orth, residual=bl.Unstructured("occ", "Subject"))  # doctest: +SKIP
    """

    time: str
    group: str

    def resolve(self, data: pd.DataFrame | None = None, *, n: int | None = None) -> ResolvedResidual:
        spec = f"Unstructured({self.time!r}, {self.group!r})"
        n = _check_n(spec, data, n)
        group, glabels = codes(column(spec, data, self.group))
        pos, _ = time_positions(spec, data, self.time)
        check_unique_times(spec, data, self.time, self.group, group, pos, glabels)
        series = data[self.time]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.cat.remove_unused_categories()
        time, tlabels = codes(series)
        if len(tlabels) > MAX_UNSTRUCTURED_TIMES:
            raise SpecificationError(f"residual={spec}: {len(tlabels)} distinct times in {self.time!r} "
                                     f"({list(tlabels)[:10]}); Unstructured allows at most "
                                     f"{MAX_UNSTRUCTURED_TIMES} (use AR1 for long series)")
        if len(tlabels) < 2:
            raise SpecificationError(f"residual={spec}: {self.time!r} has a single time {tlabels[0]!r}")
        counts = np.bincount(time, minlength=len(tlabels))
        if (counts < 2).any():
            lone = [tlabels[i] for i in np.flatnonzero(counts < 2)]
            raise SpecificationError(f"residual={spec}: time(s) {lone} of {self.time!r} have one row; "
                                     f"a residual SD per time needs at least two rows in each")
        pairs = tuple(f"corr({tlabels[a]},{tlabels[b]})" for a in range(len(tlabels))
                      for b in range(a + 1, len(tlabels)))
        labels = tuple(f"{RESIDUAL}[{t}]" for t in tlabels)
        return ResolvedResidual("un", n, labels, time.copy(), group=group, group_labels=glabels,
                                time=time, time_labels=tlabels, corr_names=pairs)


#: the residual structures, for ``isinstance`` checks
STRUCTURES = (IID, KnownSD, HeteroSD, AR1, CompoundSymmetry, Unstructured)
