"""The residual covariance R per posterior draw, in NumPy: row SDs, noise e ~ N(0, R),
pointwise log-likelihoods, blocks of R for Var(y), and its share of the variance.

``sigma`` holds the SD draws of the ``component`` dim, (S, c + r): the c random-effect SDs
of the design, then the r residual SDs (:func:`sd_labels`: ``Residual``, or
``Residual[level]``, none for :class:`~bayes_lmm.residual.KnownSD`). ``rcorr`` holds the
draws (S, m) of ``residual_correlation``: ρ (AR1, CS) or the upper triangle of the
correlation matrix over the times (Unstructured), or None.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .design import Design
from .errors import DataError, SpecificationError
from .residual import IID, STRUCTURES, ResolvedResidual, Unstructured
from .residual_data import RESIDUAL, check_unique_times, codes, column, time_positions

#: numbers held at once when per-draw group covariances are formed (draws are chunked)
_CHUNK_NUMBERS = 20_000_000


def resolved(design: Design) -> ResolvedResidual:
    """The design's residual structure (``σ²_e I`` when none was given)."""
    return design.residual if design.residual is not None else IID().resolve(n=design.n)


def sd_labels(design: Design) -> tuple[str, ...]:
    """Labels of the estimated residual SDs, in the order of the ``component`` dim."""
    return design.residual.sd_labels if design.residual is not None else (RESIDUAL,)


def component_names(design: Design) -> list[str]:
    """The ``component`` dim: random-effect components, then the residual SDs."""
    return list(design.components) + list(sd_labels(design))


def row_sd(design: Design, sigma: np.ndarray) -> np.ndarray:
    """The residual SD of every row per draw, (S, n)."""
    res = resolved(design)
    if res.known_sd is not None:
        return np.broadcast_to(res.known_sd, (sigma.shape[0], design.n))
    return sigma[:, len(design.components):][:, res.stratum]


def parts(design: Design, sigma: np.ndarray) -> np.ndarray:
    """Each residual SD's share of the mean over the rows of diag(R), (S, r): (n_level/n)·σ²."""
    res = resolved(design)
    weights = np.bincount(res.stratum, minlength=len(res.sd_labels)) / design.n
    return sigma[:, len(design.components):] ** 2 * weights


def mean_variance(design: Design, sigma: np.ndarray) -> np.ndarray:
    """The mean over the rows of diag(R) per draw, (S,) (known SDs included)."""
    res = resolved(design)
    if res.known_sd is not None:
        return np.full(sigma.shape[0], float(np.mean(res.known_sd**2)))
    return parts(design, sigma).sum(axis=1)


def correlation_matrices(res: ResolvedResidual, rcorr: np.ndarray) -> np.ndarray:
    """Unstructured: the T × T correlation matrix per draw (S, T, T) from its upper triangle."""
    T = len(res.time_labels)
    C = np.broadcast_to(np.eye(T), (rcorr.shape[0], T, T)).copy()
    iu = np.triu_indices(T, 1)
    C[:, iu[0], iu[1]] = rcorr
    C[:, iu[1], iu[0]] = rcorr
    return C


def correlation_between(res: ResolvedResidual, rcorr: np.ndarray | None, rows_a: np.ndarray,
                        rows_b: np.ndarray) -> np.ndarray:
    """corr(e_a, e_b) per draw for rows ``rows_a`` × ``rows_b``: (S, |a|, |b|)."""
    S = 1 if rcorr is None else rcorr.shape[0]
    same = rows_a[:, None] == rows_b[None, :]
    if not res.correlated:
        return np.broadcast_to(same.astype(float), (S,) + same.shape)
    group = res.group[rows_a][:, None] == res.group[rows_b][None, :]
    if res.kind == "ar1":
        lag = np.abs(res.time[rows_a][:, None] - res.time[rows_b][None, :]).astype(float)
        C = rcorr[:, 0, None, None] ** lag[None]
    elif res.kind == "cs":
        C = np.where(same[None], 1.0, rcorr[:, 0, None, None])
    else:
        C = correlation_matrices(res, rcorr)[:, res.time[rows_a][:, None], res.time[rows_b][None, :]]
    return np.where(group[None] | same[None], C, 0.0)


def r_draws(design: Design, sigma: np.ndarray, rcorr: np.ndarray | None, rows: list[int]) -> np.ndarray:
    """Draws of R for the chosen rows, (S, r, r)."""
    idx = np.asarray(rows, dtype=np.int64)
    d = row_sd(design, sigma)[:, idx]
    C = correlation_between(resolved(design), rcorr, idx, idx)
    return d[:, :, None] * C * d[:, None, :]


def batches(res: ResolvedResidual) -> list[np.ndarray]:
    """Groups with the same correlation pattern, each an array (groups, m) of rows (time order)."""
    by_key: dict[tuple, list[np.ndarray]] = {}
    for rows in res.groups:
        if res.time is not None:
            rows = rows[np.argsort(res.time[rows], kind="stable")]
            t = res.time[rows]
            key = tuple(t - t[0]) if res.kind == "ar1" else tuple(t)
        else:
            key = (len(rows),)
        by_key.setdefault(key, []).append(rows)
    return [np.vstack(groups) for groups in by_key.values()]


def _batch_covariances(res: ResolvedResidual, d_all: np.ndarray, rcorr, rows: np.ndarray):
    """Yield (draw slice, Σ (s, G_b, m, m)) for one batch of groups, in chunks of draws;
    ``d_all`` the row SDs (S, n) of :func:`row_sd`."""
    G, m = rows.shape
    step = max(1, _CHUNK_NUMBERS // max(G * m * m, 1))
    for start in range(0, d_all.shape[0], step):
        sl = slice(start, start + step)
        C = correlation_between(res, None if rcorr is None else rcorr[sl], rows[0], rows[0])
        d = d_all[sl][:, rows]
        yield sl, d[:, :, :, None] * C[:, None] * d[:, :, None, :]


def noise(design: Design, sigma: np.ndarray, rcorr: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Draws of e ~ N(0, R), (S, n)."""
    d = row_sd(design, sigma)
    z = rng.standard_normal(d.shape)
    res = resolved(design)
    if not res.correlated:
        return z * d
    out = np.empty(d.shape)
    for rows in batches(res):
        for sl, cov in _batch_covariances(res, d, rcorr, rows):
            L = np.linalg.cholesky(cov)
            out[sl][:, rows] = np.einsum("sgij,sgj->sgi", L, z[sl][:, rows])
    return out


def pointwise_loglik(design: Design, resid: np.ndarray, sigma: np.ndarray, rcorr: np.ndarray | None) -> np.ndarray:
    """log p(e_i | …) per draw and row for residuals ``resid`` = y − Xβ − Zu, (S, n).

    With R diagonal the rows are independent: log N(e_i | 0, R_ii). With R correlated within
    groups, the leave-one-out conditional log p(e_i | e_−i) of the group's multivariate normal
    (Bürkner, Gabry & Vehtari 2021, non-factorized models): with g = R_g⁻¹e_g and c = diag(R_g⁻¹),
    log p = ½ log(c_i / 2π) − ½ g_i²/c_i; PSIS-LOO over these is exact LOO for this model.
    """
    d = row_sd(design, sigma)
    res = resolved(design)
    if not res.correlated:
        return -0.5 * np.log(2 * np.pi) - np.log(d) - 0.5 * (resid / d) ** 2
    out = np.empty(resid.shape)
    for rows in batches(res):
        for sl, cov in _batch_covariances(res, d, rcorr, rows):
            P = np.linalg.inv(cov)
            g = np.einsum("sgij,sgj->sgi", P, resid[sl][:, rows])
            c = np.diagonal(P, axis1=-2, axis2=-1)
            out[sl][:, rows] = 0.5 * np.log(c / (2 * np.pi)) - 0.5 * g**2 / c
    return out


def joint_loglik(design: Design, resid: np.ndarray, sigma: np.ndarray, rcorr: np.ndarray | None) -> np.ndarray:
    """log N(e | 0, R) per draw, (S,) (for tests and the graph's check)."""
    res = resolved(design)
    if not res.correlated:
        return pointwise_loglik(design, resid, sigma, rcorr).sum(axis=1)
    d = row_sd(design, sigma)
    total = np.zeros(resid.shape[0])
    for rows in batches(res):
        for sl, cov in _batch_covariances(res, d, rcorr, rows):
            L = np.linalg.cholesky(cov)
            w = np.linalg.solve(L, resid[sl][:, rows][..., None])[..., 0]
            logdet = np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=(1, 2))
            total[sl] += -0.5 * (w**2).sum(axis=(1, 2)) - logdet - 0.5 * rows.size * np.log(2 * np.pi)
    return total


def attach_residual(design: Design, residual, data=None) -> Design:
    """The design with the residual structure ``residual`` resolved against its rows.

    ``data`` holds the structure's columns (default: the frame the design was built from);
    ``None`` and :class:`~bayes_lmm.residual.IID` leave R = σ²_e I.
    """
    if residual is None or isinstance(residual, IID):
        return design
    if not isinstance(residual, STRUCTURES):
        raise SpecificationError(f"residual= takes one of {[c.__name__ for c in STRUCTURES]}; "
                                 f"got {type(residual).__name__}")
    frame = data if data is not None else design.data
    resolved_r = residual.resolve(frame, n=design.n)
    if resolved_r.kind == "known" and not design.blocks:
        raise SpecificationError(
            "residual=KnownSD(...) with no random term leaves no variance parameter to estimate; add a "
            "random term such as (1|study) (a random-effects meta-analysis)")
    return dataclasses.replace(design, residual=dataclasses.replace(resolved_r, source=residual))


def _stratum_column(src) -> str | None:
    """The column whose levels pick a row's residual SD (None: one SD or known SDs)."""
    for attr in ("by", "sd_by"):
        if getattr(src, attr, None) is not None:
            return getattr(src, attr)
    return src.time if isinstance(src, Unstructured) else None


def for_new_rows(design: Design, new_data) -> Design:
    """A design whose residual structure describes the rows of ``new_data`` (for predictive
    draws of y there): the SD strata mapped to the fitted ``Residual[level]`` labels, known
    SDs and groups/times read from ``new_data``. Only :func:`row_sd` and :func:`noise` may be
    used on it."""
    n = len(new_data)
    y = np.zeros(n)
    res = design.residual
    if res is None:
        return dataclasses.replace(design, y=y)
    src = res.source
    stratum = np.zeros(n, dtype=np.int64)
    col = _stratum_column(src)
    if col is not None:
        if col not in new_data.columns:
            raise DataError(f"new data lack column {col!r}, which sets the residual SD of each row")
        lookup = {label: i for i, label in enumerate(res.sd_labels)}
        labels = [f"{RESIDUAL}[{v}]" for v in new_data[col].astype(str)]
        unknown = sorted({lab[len(RESIDUAL) + 1:-1] for lab in labels if lab not in lookup})
        if unknown:
            raise DataError(f"new data: level(s) {unknown} of {col!r} have no fitted residual SD; "
                            f"the fitted levels are {[lab[len(RESIDUAL) + 1:-1] for lab in res.sd_labels]}")
        stratum = np.array([lookup[lab] for lab in labels], dtype=np.int64)
    out = ResolvedResidual(res.kind, n, res.sd_labels, stratum, corr_names=res.corr_names,
                           time_labels=res.time_labels)
    if res.kind == "known":
        out = dataclasses.replace(out, known_sd=src.resolve(new_data, n=n).known_sd)
    elif res.correlated:
        spec = f"{type(src).__name__} (new data)"
        group, glabels = codes(column(spec, new_data, src.group))
        time = None
        if res.kind == "ar1":
            time = time_positions(spec, new_data, src.time)[0]
        elif res.kind == "un":
            time = stratum.copy()  # an Unstructured row's SD and correlations follow its time
        if time is not None:
            check_unique_times(spec, new_data, src.time, src.group, group, time, glabels)
        out = dataclasses.replace(out, group=group, group_labels=glabels, time=time)
    return dataclasses.replace(design, y=y, residual=out)
