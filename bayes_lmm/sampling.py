"""One entry point over the NUTS samplers: PyMC's and nutpie's.

All options are keyword-only and explicit; nothing is read from global state.
"""

from __future__ import annotations

import importlib.util
import os
import warnings

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from .errors import SpecificationError


def nutpie_available() -> bool:
    """Whether the nutpie sampler (Rust NUTS) is installed."""
    return importlib.util.find_spec("nutpie") is not None


def resolve_sampler(sampler: str) -> str:
    """``auto`` → nutpie when installed, else PyMC; an explicit choice is checked."""
    if sampler == "auto":
        return "nutpie" if nutpie_available() else "pymc"
    if sampler == "nutpie" and not nutpie_available():
        raise SpecificationError(
            "sampler='nutpie' needs the nutpie package: pip install nutpie "
            "(or pip install 'bayes_lmm[fast]'), or use sampler='pymc'"
        )
    return sampler


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
) -> az.InferenceData:
    """Run NUTS on ``model`` and return its InferenceData (posterior, sample_stats, observed_data).

    Parameters
    ----------
    model : pm.Model
    sampler : {"pymc", "nutpie"}
    draws, tune, chains : int
    random_seed : int or None
        The same seed gives the same draws (bit-identical with PyMC).
    target_accept : float
        NUTS step-size adaptation target; higher means smaller steps and fewer divergences.
    progressbar : bool
    """
    seed = random_seed if random_seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    cores = max(1, min(chains, os.cpu_count() or 1))
    if sampler == "nutpie":
        import nutpie

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            compiled = nutpie.compile_pymc_model(model)
        idata = nutpie.sample(
            compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
            progress_bar=progressbar, save_warmup=False, target_accept=target_accept,
        )
        if "observed_data" not in idata.groups():
            observed = {
                rv.name: (("obs",), np.asarray(model.rvs_to_values[rv].data)) for rv in model.observed_RVs
            }
            idata.add_groups(observed_data=xr.Dataset(observed))
        return idata
    with model:
        return pm.sample(
            draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
            target_accept=target_accept, progressbar=progressbar,
            compute_convergence_checks=False, return_inferencedata=True,
        )
