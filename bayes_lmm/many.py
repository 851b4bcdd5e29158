"""One mixed model, many responses, on Dask: ``fit_many`` and its tidy tables.

The random part of the formula is shared by every response (one gene, one sensor, one item
per response), so the design (X, the Z blocks) is built once, scattered to the workers, and
each response only swaps y. Each worker process compiles the model structure once and
reuses it for every response it receives (the compiled-model cache of
:mod:`bayes_lmm.sampling` lives in the worker process).

Per response the workers send back the draws of β and of the SDs (small) plus convergence
diagnostics, so every table can be recomputed at any interval mass without refitting;
``save_dir`` keeps the full InferenceData of each response on disk as well.
"""

from __future__ import annotations

import os
import re
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import contrasts as _contrasts
from .contrasts import interval_bounds
from .design import Design, design_from_formula, with_response
from .errors import BayesLMMError, SpecificationError
from .formula import parse_formula
from .pipeline import run_design
from .residual_draws import attach_residual, component_names
from .spec import ModelSpec, SamplerOptions, normalize_priors
from .variance import fraction_draws, weight_matrices

#: name of the response column in the shared template design (underscores appended if taken)
PLACEHOLDER = "response"


def variance_weights(design: Design) -> np.ndarray:
    """Mean of z_ic² over the rows for each variance component c (1 for an intercept).

    The diagonal of :func:`bayes_lmm.variance.weight_matrices`: the variance a component
    adds to one observation is σ_c² z_ic², its average over the rows σ_c² times this weight.
    """
    return np.concatenate([np.diag(W) for W in weight_matrices(design)]) if design.blocks else np.zeros(0)


def variance_fraction_draws(sigma: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Draws (S, c + 1) of σ_c² w_c / (Σ_k σ_k² w_k + σ_e²), ``sigma`` with σ_e last.

    Right for uncorrelated components; :meth:`ManyFits.variance_fractions` uses
    :func:`bayes_lmm.variance.fraction_draws`, which also shares out the covariance terms
    of correlated coefficients (as ``Fit.variance_components`` does).
    """
    var = sigma**2 * np.append(weights, 1.0)[None, :]
    return var / var.sum(axis=1, keepdims=True)


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:100] or "response"


@dataclass(frozen=True)
class _Job:
    """What a worker needs besides the (scattered) template design."""

    spec: ModelSpec
    options: SamplerOptions
    save_path: str | None


def _fit_response(template: Design, job: _Job, name: str, y: np.ndarray) -> dict[str, Any]:
    """Fit one response on a worker; never raises, a failure comes back as ``error``."""
    start = time.perf_counter()
    try:
        design = with_response(template, y, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # u is only drawn when the full fit is kept on disk: the tables need β and σ
            fit = run_design(job.spec, design, job.options, conditional_u=job.save_path is not None)
        diag = fit.diagnostics()
        if job.save_path is not None:
            fit.save(job.save_path)
        return {
            "response": name, "beta": fit.draws("beta"), "sigma": fit.draws("sigma"),
            "correlation": fit.draws("correlation") if "correlation" in fit.idata.posterior else None,
            "diagnostics": diag.as_dict() | {"ok": diag.ok, "parameterization": fit.parameterization,
                                              "sampler": fit.sampler},
            "seconds": time.perf_counter() - start, "path": job.save_path,
        }
    except Exception as exc:  # noqa: BLE001 - a failed response is reported, never lost
        kind = type(exc).__name__ if isinstance(exc, BayesLMMError) else f"{type(exc).__name__} (internal)"
        return {"response": name, "error": f"{kind}: {exc}", "seconds": time.perf_counter() - start}


def _responses(data: pd.DataFrame, responses: Any) -> tuple[list[str], np.ndarray, list[str]]:
    """(names, values (n, R), response columns to drop from the shared data)."""
    if isinstance(responses, str):
        responses = [responses]
    if isinstance(responses, pd.DataFrame):
        if len(responses) != len(data):
            raise SpecificationError(f"responses has {len(responses)} rows; data has {len(data)}")
        names = [str(c) for c in responses.columns]
        values = responses.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        drop: list[str] = []
    elif isinstance(responses, np.ndarray):
        arr = responses.reshape(-1, 1) if responses.ndim == 1 else responses
        if arr.ndim != 2 or arr.shape[0] != len(data):
            raise SpecificationError(f"a response array must have shape (n rows = {len(data)}, responses), got {responses.shape}")
        names = [f"y{j}" for j in range(arr.shape[1])]
        values = np.asarray(arr, dtype=float)
        drop = []
    elif isinstance(responses, Sequence) and all(isinstance(r, str) for r in responses):
        missing = [r for r in responses if r not in data.columns]
        if missing:
            raise SpecificationError(f"response column(s) {missing} are not in the data")
        names = list(responses)
        values = data[names].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        drop = names
    else:
        raise SpecificationError("responses must be column names, a wide DataFrame or an (n, R) array")
    if not names:
        raise SpecificationError("responses is empty: nothing to fit")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecificationError(f"responses are named more than once: {dup}")
    return names, values, drop


def _template(formula: str, data: pd.DataFrame, drop: list[str], coding: str, factors: Sequence[str]) -> tuple[str, Design]:
    if not isinstance(formula, str) or "~" not in formula:
        raise SpecificationError(f"fit_many needs a formula with '~' and a right-hand side, got {formula!r}")
    if not isinstance(data, pd.DataFrame):
        raise SpecificationError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    frame = data.drop(columns=drop)
    # a response column name that no covariate uses
    placeholder = PLACEHOLDER
    while placeholder in frame.columns:
        placeholder += "_"
    rhs = formula.split("~", 1)[1]
    shared = f"{placeholder} ~ {rhs}"
    parse_formula(shared)  # the right-hand side's errors name the formula
    # placeholder values only: each response replaces them before fitting
    frame[placeholder] = np.random.default_rng(0).normal(size=len(frame))
    return shared, design_from_formula(shared, frame, coding=coding, factors=factors)


@dataclass
class ManyFits:
    """Results of :func:`fit_many`: one row per response (and component, coefficient, contrast).

    Attributes
    ----------
    failures : DataFrame
        ``response, error`` for each response that could not be fitted.
    seconds : float
        Wall time of the whole run.

    Examples
    --------
    >>> many = bl.fit_many("~ dose + (1|batch/plate)", data, responses=genes)  # doctest: +SKIP
    >>> many.variance_fractions(prob=0.95); many.failures  # doctest: +SKIP
    """

    design: Design = field(repr=False)
    results: dict[str, dict[str, Any]] = field(repr=False)
    failures: pd.DataFrame
    seconds: float

    @property
    def responses(self) -> list[str]:
        """Responses that were fitted, in the order given."""
        return list(self.results)

    def _long(self, prob: float, interval: str, draws_of, names: list[str], key: str) -> pd.DataFrame:
        rows = []
        for resp, res in self.results.items():
            d = draws_of(res)
            lower, upper = interval_bounds(d, prob=prob, interval=interval)
            for j, nm in enumerate(names):
                rows.append({"response": resp, key: nm, "mean": float(d[:, j].mean()),
                             "median": float(np.median(d[:, j])), "sd": float(d[:, j].std(ddof=1)),
                             "lower": float(lower[j]), "upper": float(upper[j])})
        return pd.DataFrame(rows, columns=["response", key, "mean", "median", "sd", "lower", "upper"])

    def variance_fractions(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Posterior of each component's fraction of the total variance, per response.

        Columns ``response, component, median, lower, upper`` (plus ``mean`` and ``sd``);
        the fraction is the component's share of the mean over the rows of Var(y_i), as in
        :meth:`Fit.variance_components`: σ_c² w_c / (Σ_k σ_k² w_k + σ_e²) with w_c from
        :func:`variance_weights` (1 for random intercepts) when no coefficients are
        correlated, plus half of each covariance term otherwise
        (:func:`bayes_lmm.variance.fraction_draws`); ``Residual`` last.
        """
        names = component_names(self.design)
        return self._long(prob, interval, lambda r: fraction_draws(self.design, r["sigma"], r.get("correlation")),
                          names, "component")

    def variance_components(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Posterior of each SD σ_c and σ_e, per response (columns as :meth:`variance_fractions`)."""
        return self._long(prob, interval, lambda r: r["sigma"], component_names(self.design), "component")

    def fixed_effects(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Posterior of β per response: ``response, coefficient, mean, median, sd, lower, upper``."""
        return self._long(prob, interval, lambda r: r["beta"], list(self.design.x_names), "coefficient")

    def contrast(self, spec: Any, prob: float = 0.95, *, interval: str = "eti",
                 rope: tuple[float, float] | None = None) -> pd.DataFrame:
        """Posterior of Cβ per response (``spec`` as in :meth:`Fit.contrast`), one row per pair.

        Raises
        ------
        EstimabilityError
            If a contrast is not estimable in the shared design; the message names it.
        """
        labels, C = _contrasts.contrast_matrix(spec, self.design.x_names)
        _contrasts.check_estimable(labels, C, self.design.X, self.design.x_names)
        parts = []
        for resp, res in self.results.items():
            table = _contrasts.summarize(res["beta"] @ C.T, labels, prob=prob, interval=interval, rope=rope)
            parts.append(table.reset_index().assign(response=resp))
        if not parts:
            return pd.DataFrame(columns=["response", "contrast", "mean", "median", "sd", "lower", "upper"])
        out = pd.concat(parts, ignore_index=True)
        return out[["response", *[c for c in out.columns if c != "response"]]]

    def diagnostics(self) -> pd.DataFrame:
        """Per response: divergences, max R-hat, min ESS, ``ok``, parameterization, seconds."""
        rows = [{"response": r, **res["diagnostics"], "seconds": res["seconds"]} for r, res in self.results.items()]
        return pd.DataFrame(rows)

    def paths(self) -> dict[str, str]:
        """The InferenceData file of each response (when ``save_dir`` was given)."""
        return {r: res["path"] for r, res in self.results.items() if res.get("path")}

    def load(self, response: str):
        """The full :class:`Fit` of one response, read back from ``save_dir``."""
        from .persist import load

        path = self.paths().get(response)
        if path is None:
            raise SpecificationError(f"no saved fit for response {response!r}; pass save_dir= to fit_many")
        return load(path)

    def __repr__(self) -> str:
        return (f"ManyFits({len(self.results)} responses fitted, {len(self.failures)} failed, "
                f"{self.seconds:.1f} s)")


def _connect(client: Any):
    """(client, owned): a Client, a scheduler address, or None for a local cluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpecificationError("fit_many runs on Dask: pip install 'dask[distributed]' "
                                 "(or pip install 'bayes_lmm[many]')") from None
    if client is None:
        workers = max(1, os.cpu_count() or 1)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        return Client(cluster), True
    if isinstance(client, str):
        try:
            return Client(client, timeout="30s"), True
        except OSError as exc:
            raise SpecificationError(f"cannot reach the Dask scheduler at {client!r}: {exc}") from None
    if isinstance(client, Client):
        return client, False
    raise SpecificationError(f"client must be a dask.distributed Client, a scheduler address or None, "
                             f"got {type(client).__name__}")


class _Progress:
    """One line on stderr: responses done, failed, and the rate."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.failed = total, enabled, 0, 0
        self.start = time.perf_counter()

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / self.total)
        rate = self.done / max(time.perf_counter() - self.start, 1e-9) * 60
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} responses, "
                         f"{self.failed} failed, {rate:.0f}/min")
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def fit_many(
    formula: str, data: pd.DataFrame, responses: Any, *, client: Any = None,
    coding: str = "treatment", factors: Sequence[str] = (), priors: Mapping[str, Any] | None = None,
    parameterization: str = "auto", sampler: str = "auto", draws: int = 1000, tune: int = 1000,
    chains: int = 4, random_seed: int | None = None, target_accept: float | None = None,
    save_dir: str | Path | None = None, progressbar: bool = True, residual: Any = None,
) -> ManyFits:
    """Fit the same mixed model to many responses on Dask, one posterior per response.

    Parameters
    ----------
    formula : str
        Its right-hand side (``~ x + (1|batch/plate)``) is shared by every response; the
        left-hand side may be omitted and is ignored.
    data : DataFrame
        The covariates and grouping columns (and the responses, if named by column).
        Never modified.
    responses : list of str, DataFrame or array
        Column names of ``data``; a wide DataFrame with one response per column (rows aligned
        with ``data``); or an (n, R) array (responses named ``y0, y1, …``).
    client : dask.distributed.Client, str or None
        ``None`` starts a local cluster with one single-threaded worker process per CPU
        (closed afterwards); a string is a scheduler address.
    coding, factors, priors, parameterization, sampler, draws, tune, chains, target_accept
        As in :func:`bayes_lmm.fit`; each response's priors are auto-scaled to its own y.
        Diagnostics cover β and σ (and u when ``save_dir`` keeps the full fits).
    random_seed : int, optional
        Each response gets its own seed derived from this one (same seed, same results).
    save_dir : path, optional
        Write each response's full fit to ``save_dir/<response>.nc`` (read with
        :meth:`ManyFits.load` or :func:`bayes_lmm.load`).
    progressbar : bool
        A one-line progress bar over responses on stderr.
    residual : KnownSD, HeteroSD, AR1, CompoundSymmetry or Unstructured, optional
        The residual structure R shared by every response (columns of ``data``).

    Returns
    -------
    ManyFits
        ``variance_fractions()``, ``fixed_effects()``, ``contrast(spec)``, ``diagnostics()``
        and ``failures`` (responses that failed, with the error; the others are kept).

    Examples
    --------
    >>> many = bl.fit_many("~ dose + (1|batch/plate)", data, responses=["g1", "g2"],
    ...                    client=None, random_seed=1)  # doctest: +SKIP
    >>> many.variance_fractions(prob=0.95)  # doctest: +SKIP
    """
    names, values, drop = _responses(data, responses)
    shared_formula, template = _template(formula, data, drop, coding, factors)
    template = attach_residual(template, residual, data)
    spec = ModelSpec(formula=shared_formula, coding=coding, priors=normalize_priors(priors),
                     parameterization=parameterization, factors=tuple(factors))
    seeds = (np.random.SeedSequence(random_seed).generate_state(len(names)) % 2**31).astype(int).tolist() \
        if random_seed is not None else [None] * len(names)
    base = SamplerOptions(sampler=sampler, draws=draws, tune=tune, chains=chains, random_seed=None,
                          target_accept=target_accept, progressbar=False, cores=1)
    out_dir = None
    if save_dir is not None:
        out_dir = Path(save_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    dask_client, owned = _connect(client)
    results: dict[str, dict[str, Any]] = {}
    failures: list[dict[str, str]] = []
    try:
        from distributed import as_completed

        shared = dask_client.scatter(template, broadcast=True)
        futures = {}
        for j, (name, seed) in enumerate(zip(names, seeds)):
            path = str(out_dir / f"{j:05d}_{_safe_filename(name)}.nc") if out_dir is not None else None
            job = _Job(spec=spec, options=replace(base, random_seed=seed), save_path=path)
            fut = dask_client.submit(_fit_response, shared, job, name, values[:, j], pure=False)
            futures[fut] = name
        progress = _Progress(len(names), progressbar)
        collected: dict[str, dict[str, Any]] = {}
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - e.g. a worker that died: report, keep the rest
                res = {"response": name, "error": f"{type(exc).__name__} (worker): {exc}"}
            collected[name] = res
            progress.update("error" in res)
    finally:
        if owned:
            cluster = getattr(dask_client, "cluster", None)
            dask_client.close()
            if cluster is not None:
                cluster.close()
    for name in names:  # the order given, not the order of completion
        res = collected[name]
        if "error" in res:
            failures.append({"response": name, "error": res["error"]})
        else:
            results[name] = res
    return ManyFits(design=template, results=results,
                    failures=pd.DataFrame(failures, columns=["response", "error"]),
                    seconds=time.perf_counter() - start)
