"""The blocked Gibbs sampler for models whose every random coefficient is its own variance
component (crossed and nested intercepts, uncorrelated slopes) with R = σ²_e I, where no exact
form is cheap for NUTS: the 73,421-row crossed design with 2,972 × 1,128 levels took NUTS on the
latent form 1,099 s for an R-hat of 1.04.

One sweep:

1. (β, u) jointly from their Gaussian conditional given θ and y (exact; one Cholesky of the
   remainder after one factor is solved out level by level, :mod:`.likelihood.gibbs_system`);
   β and u never move one block at a time, so the intercept and the levels' means do not
   trade off against each other across sweeps;
2. each σ_c given u_c, then given ũ_c = u_c/σ_c (interweaving the centered and non-centered
   parameterizations; u_c is rescaled with σ_c), by slice sampling (:mod:`.gibbs_steps`);
3. σ_e given the residuals.

Every step leaves the posterior of the centered PyMC graph invariant (the graph is the
statement of the model; ``tests/test_gibbs.py`` holds the conditionals to it). Chains run in
threads; the Cholesky and the Schur complement run without the interpreter lock
(:mod:`.likelihood.lapack`, the compiled kernel). Each chain has its own stream spawned from
the one seed, so the draws do not depend on how the threads were scheduled.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import arviz as az
import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from . import gibbs_steps as steps
from .design import Design
from .errors import SpecificationError
from .graph import coords_for
from .likelihood import kernel
from .likelihood.gibbs import GibbsForm
from .likelihood.gibbs_system import LocationSystem
from .names import BETA_DIM, COMPONENT_DIM, U_DIM, block_key, coef_dim, level_dim, safe_name
from .priors import PriorSet

#: what ``fit.idata.posterior.attrs["log_density"]`` says of a Gibbs fit
LOG_DENSITY = "Gibbs conditionals of the PyMC graph"


@dataclass(frozen=True, eq=False)
class GibbsModel:
    """A design's location system, the σ priors' log-densities (components, then σ_e) and
    the rough scale of each σ from which chains start."""

    design: Design
    system: LocationSystem
    log_priors: tuple
    scales: np.ndarray
    beta_prior: tuple[np.ndarray, np.ndarray]

    def sample(self, *, draws: int, tune: int, chains: int, random_seed: int, cores: int) -> az.InferenceData:
        """:func:`sample_gibbs` of this model."""
        return sample_gibbs(self, draws=draws, tune=tune, chains=chains, random_seed=random_seed, cores=cores)


def unavailable(design: Design, prior_set: PriorSet) -> str | None:
    """Why the Gibbs sampler cannot sample this model, in words (None: it can)."""
    why = GibbsForm.why_not(design)
    if why is not None:
        return why
    odd = sorted({p.family for p in prior_set.beta} - {"Normal"})
    if odd:
        return f"a prior on β of family {', '.join(odd)} (the joint draw of β and u needs Normal priors)"
    priors = [prior_set.component(c) for c in design.components] + [prior_set.residual]
    odd = sorted({p.family for p in priors} - set(steps.SD_FAMILIES))
    if odd:
        return f"a standard deviation prior of family {', '.join(odd)}"
    return None


def gibbs_model(design: Design, prior_set: PriorSet) -> GibbsModel:
    """The Gibbs sampler's model of a design (statistics formed once, one pass over the rows)."""
    mu = np.array([prior.kwargs()["mu"] for prior in prior_set.beta], float)
    sd = np.array([prior.kwargs()["sigma"] for prior in prior_set.beta], float)
    lib = kernel.load()
    system = LocationSystem(design, mu, sd, schur=lib.gibbs_schur if lib is not None else None)
    priors = [prior_set.component(c) for c in design.components] + [prior_set.residual]
    resid_sd = float(np.std(system.y)) or 1.0
    scales = [0.5 * resid_sd / math.sqrt(max(float(np.mean(c.Z.data**2)), 1e-300)) for c in system.comps]
    return GibbsModel(design=design, system=system, log_priors=tuple(steps.sd_log_prior(p) for p in priors),
                      scales=np.array(scales + [resid_sd]), beta_prior=(mu, sd))


def sweep(model: GibbsModel, sigma: np.ndarray, sigma_e: float, rng: np.random.Generator):
    """One sweep from (σ, σ_e): returns (δ = β − β₀, [u_c], σ, σ_e, residuals); ``sigma`` is
    updated in place."""
    system = model.system
    n_e = system.comps[system.e].n_levels if system.e is not None else 0
    delta, u = system.draw(sigma, sigma_e, rng.standard_normal(system.r),
                           rng.standard_normal(n_e) if n_e else None)
    resid = system.y - system.fitted(delta, u)
    for j, comp in enumerate(system.comps):
        prior = model.log_priors[j]
        sigma[j] = steps.slice_sample(steps.centered(prior, comp.n_levels, float(u[j] @ u[j])), sigma[j], rng)
        v = comp.Z @ (u[j] / sigma[j])
        partial = resid + sigma[j] * v  # y − Xβ − Σ_{d≠j} Z_d u_d
        new = steps.slice_sample(steps.noncentered(prior, float(v @ v), float(partial @ v), sigma_e), sigma[j], rng)
        u[j] = u[j] * (new / sigma[j])
        resid = partial - new * v
        sigma[j] = new
    sigma_e = steps.slice_sample(steps.residual(model.log_priors[-1], system.n, float(resid @ resid)), sigma_e, rng)
    return delta, u, sigma, sigma_e, resid


def log_joint(model: GibbsModel, delta, u, sigma, sigma_e, resid) -> float:
    """The centered graph's log joint density (value scale, up to a constant)."""
    system = model.system
    mu, sd = model.beta_prior
    out = -0.5 * float((((delta + system.beta0 - mu) / sd) ** 2).sum())
    for j, comp in enumerate(system.comps):
        out += model.log_priors[j](sigma[j]) - comp.n_levels * math.log(sigma[j]) - 0.5 * float(u[j] @ u[j]) / sigma[j] ** 2
    return out + model.log_priors[-1](sigma_e) - system.n * math.log(sigma_e) - 0.5 * float(resid @ resid) / sigma_e**2


def run_chain(model: GibbsModel, *, draws: int, tune: int, seed: np.random.SeedSequence,
              stop: threading.Event | None = None) -> dict[str, np.ndarray]:
    """One chain: ``tune`` sweeps discarded, then ``draws`` kept; starts at the rough scales
    times exp(U(−1, 1)) (dispersed, so that R-hat can see a chain that has not forgotten its
    start). Returns early, with what it has, once ``stop`` is set."""
    rng = np.random.default_rng(seed)
    system, q = model.system, len(model.design.u_labels)
    start = model.scales * np.exp(rng.uniform(-1.0, 1.0, len(model.scales)))
    sigma, sigma_e = start[:-1].copy(), float(start[-1])
    out = {"beta": np.empty((draws, system.p)), "sigma": np.empty((draws, len(sigma) + 1)),
           "u": np.empty((draws, q)), "lp": np.empty(draws)}
    for it in range(tune + draws):
        if stop is not None and stop.is_set():
            break
        try:
            delta, u, sigma, sigma_e, resid = sweep(model, sigma, sigma_e, rng)
        except np.linalg.LinAlgError:
            names = list(model.design.components) + ["Residual"]
            at = ", ".join(f"{n} = {s:.3g}" for n, s in zip(names, np.append(sigma, sigma_e)))
            raise SpecificationError(
                f"the Gibbs sampler met a singular system at {at}: a component's columns are collinear with "
                "X or another component and its σ drifted far out; give that σ a tighter prior, or use "
                "sampler='nutpie'") from None
        if it >= tune:
            i = it - tune
            out["beta"][i] = system.beta0 + delta
            out["sigma"][i, :-1], out["sigma"][i, -1] = sigma, sigma_e
            for comp, u_c in zip(system.comps, u):
                out["u"][i, comp.u_index] = u_c
            out["lp"][i] = log_joint(model, delta, u, sigma, sigma_e, resid)
    return out


def sample_gibbs(model: GibbsModel, *, draws: int, tune: int, chains: int, random_seed: int, cores: int
                 ) -> az.InferenceData:
    """Run ``chains`` chains on ``cores`` threads (one BLAS thread each) and return the
    InferenceData of the centered graph's variables: ``beta``, ``sigma``, ``u`` and each
    block's ``u_<key>``, with the log joint density ``lp`` in ``sample_stats``."""
    seeds = np.random.SeedSequence(random_seed).spawn(chains)
    stop = threading.Event()
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=max(1, cores)) as pool:
        futures = [pool.submit(run_chain, model, draws=draws, tune=tune, seed=s, stop=stop) for s in seeds]
        try:
            pending = futures
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
                if any(f.exception() is not None for f in done):
                    stop.set()  # one chain failed: the others need not run on
        except BaseException:  # KeyboardInterrupt in a notebook: stop the chains, do not wait them out
            stop.set()
            raise
        results = [f.result() for f in futures]
    stacked = {k: np.stack([r[k] for r in results]) for k in results[0]}
    return as_inference_data(model.design, stacked)


def as_inference_data(design: Design, stacked: dict[str, np.ndarray]) -> az.InferenceData:
    """The draws with the centered graph's names and dims (as a NUTS fit of it has them)."""
    coords = coords_for(design)
    chains, draws = stacked["lp"].shape
    base = {"chain": np.arange(chains), "draw": np.arange(draws)}
    variables = {"beta": (("chain", "draw", BETA_DIM), stacked["beta"]),
                 "sigma": (("chain", "draw", COMPONENT_DIM), stacked["sigma"]),
                 "u": (("chain", "draw", U_DIM), stacked["u"])}
    used = {BETA_DIM, COMPONENT_DIM, U_DIM}
    offset = 0
    for blk in design.blocks:
        key = block_key(design, blk)
        size = blk.n_levels * blk.n_coefs
        block = stacked["u"][:, :, offset:offset + size].reshape(chains, draws, blk.n_levels, blk.n_coefs)
        variables[f"u_{safe_name(key)}"] = (("chain", "draw", level_dim(key), coef_dim(key)), block)
        used |= {level_dim(key), coef_dim(key)}
        offset += size
    posterior = xr.Dataset(variables, coords=base | {k: v for k, v in coords.items() if k in used})
    posterior.attrs["log_density"] = LOG_DENSITY
    stats = xr.Dataset({"lp": (("chain", "draw"), stacked["lp"])}, coords=base)
    return az.InferenceData(posterior=posterior, sample_stats=stats)
