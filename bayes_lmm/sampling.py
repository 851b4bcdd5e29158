"""One entry point over the samplers: the NUTS of PyMC, nutpie and NumPyro (through PyMC's JAX
backend), and the blocked Gibbs sampler (:mod:`bayes_lmm.gibbs_sampling`, handed in as a model).

All options are keyword-only and explicit; nothing is read from global state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import warnings

import arviz as az
import numpy as np
import pymc as pm
from threadpoolctl import threadpool_limits

from .errors import SpecificationError
from .nutpie_cache import clear_disk_cache, compile_nutpie


def nutpie_available() -> bool:
    """Whether the nutpie sampler (Rust NUTS) is installed."""
    return importlib.util.find_spec("nutpie") is not None


def numpyro_available() -> bool:
    """Whether NumPyro's NUTS can run (the jax and numpyro packages are installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("jax", "numpyro"))


def resolve_sampler(sampler: str) -> str:
    """``auto`` → nutpie when installed, else PyMC (the fit may still pick the Gibbs sampler:
    :func:`bayes_lmm.pipeline.build_with_form`); an explicit choice is checked."""
    if sampler == "auto":
        return "nutpie" if nutpie_available() else "pymc"
    if sampler == "nutpie" and not nutpie_available():
        raise SpecificationError(
            "sampler='nutpie' needs the nutpie package: pip install nutpie "
            "(or pip install 'bayes_lmm[fast]'), or use sampler='pymc'"
        )
    if sampler == "numpyro" and not numpyro_available():
        raise SpecificationError(
            "sampler='numpyro' needs the jax and numpyro packages: pip install jax numpyro "
            "(or pip install 'bayes_lmm[jax]'), or use sampler='nutpie' or 'pymc'"
        )
    return sampler


#: nutpie models compiled in this process, by structure signature (see graph.model_signature)
_COMPILED: dict[tuple, object] = {}


def clear_compiled_cache(*, disk: bool = False) -> int:
    """Forget the compiled models kept for reuse in this process, and with ``disk=True`` also
    those cached on disk for later processes (see :mod:`bayes_lmm.nutpie_cache`).

    Parameters
    ----------
    disk : bool
        Also remove the compiled models bayes_lmm stored on disk.

    Returns
    -------
    int
        The number of files removed from disk.

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> bl.clear_compiled_cache()
    0
    """
    _COMPILED.clear()
    return clear_disk_cache() if disk else 0


def _compiled_nutpie(model: pm.Model, cache_key: tuple | None, compile_note: str | None = None):
    import nutpie

    data = {v.name: v.get_value() for v in model.data_vars}
    if cache_key is not None:
        # names of data, dims and variables depend on the factors' names: part of the key
        cache_key = (cache_key, tuple(sorted(data)), tuple(sorted(model.coords)),
                     tuple(v.name for v in model.free_RVs))
    if cache_key is not None and cache_key in _COMPILED:
        cached = _COMPILED[cache_key]
        # arrays the compiled functions do not read (rewritten away) are not nutpie's to update
        compiled = cached.with_data(**{k: v for k, v in data.items() if k in cached.shared_data})
        # labels (level names, coefficient names) may differ between fits of one structure
        original = compiled._coords
        coords = {k: type(original[k])(v) if k in original else list(v) for k, v in model.coords.items()}
        return dataclasses.replace(compiled, _coords=coords)
    problem = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            compiled = compile_nutpie(model, structure_key=cache_key, compile_note=compile_note)
        except (AttributeError, TypeError, ImportError) as exc:
            # nutpie internals this relies on moved: sample all the same, compiling as nutpie does
            problem, compiled = exc, None
        if compiled is None:
            compiled = nutpie.compile_pymc_model(model)
    if problem is not None:
        warnings.warn(f"bayes_lmm's on-disk cache of compiled models does not work with this "
                      f"nutpie version ({problem}); every new process compiles afresh (10–20 s)",
                      UserWarning, stacklevel=4)
    if cache_key is not None:
        _COMPILED[cache_key] = compiled
    return compiled


@contextlib.contextmanager
def _pymc_log_quiet(quiet: bool):
    """Without a progress bar, PyMC's INFO lines (NUTS init, "Sampling 4 chains…") are noise:
    raise its logger to WARNING for this call only and restore the level afterwards."""
    logger = logging.getLogger("pymc")
    level = logger.level
    if quiet:
        logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


#: the graph's standard-unit variables (σ = s·σ_std, β = μ + s·β_std, r = 2b − 1, the CPCs of :mod:`bayes_lmm.lkj`): internal
_STANDARD = re.compile(r"^((sigma|var)_.+_std|corr_.+_beta|.+_cpc_\d+_\d+|beta(_.+)?_std)$")


def without_unconstrained(idata: az.InferenceData) -> az.InferenceData:
    """Drop the sampler's unconstrained copies of the parameters (``sigma_pot_std_log__``,
    ``corr_Subject_beta_logodds__``, …; nutpie stores them) and the graph's standard-unit
    variables (``sigma_pot_std``, ``corr_Subject_beta``, ``beta_std``) from
    ``idata.posterior``: they are internal, ``az.summary``/``az.plot_trace`` would list them
    beside β and σ, and the compiled kernel's trace has neither, so every fit holds the same
    variables whichever log-density was sampled."""
    internal = [name for name in idata.posterior.data_vars
                if str(name).endswith("__") or _STANDARD.match(str(name))]
    if internal:
        idata.posterior = idata.posterior.drop_vars(internal)
    return idata


def sample(
    model: pm.Model,
    *,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int | None,
    target_accept: float,
    progressbar: bool,
    cache_key: tuple | None = None,
    cores: int | None = None,
    kernel=None,
    compile_note: str | None = None,
    gibbs=None,
) -> az.InferenceData:
    """Run NUTS on ``model`` (or the Gibbs sampler) and return its InferenceData (posterior,
    sample_stats, observed_data).

    Parameters
    ----------
    model : pm.Model
    sampler : {"pymc", "nutpie", "numpyro", "gibbs"}
    draws, tune, chains : int
        With ``gibbs``, ``tune`` sweeps are discarded as burn-in.
    random_seed : int or None
        The same seed gives the same draws (bit-identical with PyMC).
    target_accept : float
        NUTS step-size adaptation target; higher means smaller steps and fewer divergences.
    progressbar : bool
        Also, with PyMC's and NumPyro's samplers, whether PyMC's INFO log lines appear.
    cache_key : tuple, optional
        Structure signature of ``model`` (nutpie only): a model compiled earlier in this
        process with the same signature is reused with this model's data, skipping
        compilation.
    cores : int, optional
        Chains run in parallel on this many threads (default: one per chain, at most the
        number of CPUs).
    kernel : KernelModel, optional
        nutpie only: sample the compiled kernel of ``model``'s exact form
        (:mod:`bayes_lmm.kernel_sampling`) instead of compiling the PyMC graph.
    compile_note : str, optional
        nutpie only: said once (logger ``bayes_lmm``, level WARNING) when the PyMC graph
        must be compiled, that is, when neither this process nor the disk cache holds it.
    gibbs : GibbsModel, optional
        ``gibbs`` only: the design's Gibbs model (:func:`bayes_lmm.gibbs_sampling.gibbs_model`);
        it samples the posterior of ``model``'s centered graph.
    """
    seed = random_seed if random_seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    cores = cores if cores is not None else max(1, min(chains, os.cpu_count() or 1))
    if sampler == "gibbs":
        if gibbs is None:
            raise ValueError("sampler='gibbs' needs the design's Gibbs model (gibbs=)")
        return gibbs.sample(draws=draws, tune=tune, chains=chains, random_seed=seed, cores=cores)
    if sampler == "nutpie":
        if kernel is not None:
            from .kernel_sampling import nutpie_model

            compiled = nutpie_model(kernel)
        else:
            compiled = _compiled_nutpie(model, cache_key, compile_note)
        import nutpie

        # chains run in parallel threads: a multi-threaded BLAS inside each gradient (the
        # Cholesky of the crossed and dense marginal forms) oversubscribes the cores and made
        # a 144-row crossed fit 4× slower (1.41 s against 0.34 s on 2 cores)
        with threadpool_limits(limits=1, user_api="blas"):
            return nutpie.sample(
                compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                progress_bar=progressbar, save_warmup=False, target_accept=target_accept,
            )
    if sampler == "numpyro":
        # one JAX device on a CPU: the chains run vectorised in one XLA program
        with model, _pymc_log_quiet(not progressbar):
            return pm.sample(
                draws=draws, tune=tune, chains=chains, random_seed=seed, target_accept=target_accept,
                progressbar=progressbar, nuts_sampler="numpyro", compute_convergence_checks=False,
                nuts_sampler_kwargs={"chain_method": "vectorized"}, idata_kwargs={"log_likelihood": False},
            )
    # PyMC's chains run in forked processes that inherit the limit: the same crossed fit took
    # 229 s with BLAS at its default thread count and 11.5 s limited
    with model, threadpool_limits(limits=1, user_api="blas"), _pymc_log_quiet(not progressbar):
        return pm.sample(
            draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
            target_accept=target_accept, progressbar=progressbar,
            compute_convergence_checks=False, return_inferencedata=True,
        )
