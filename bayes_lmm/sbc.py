"""Simulation-based calibration (Talts et al. 2018) of a model template.

Draw θ = (β, σ_j, σ_e) and y from the prior, fit y with the same priors, and record the rank
of each true value among (thinned) posterior draws. If the sampler and the model are right,
every rank is uniform and a nominal 90% interval covers the truth in 90% of replications.

The priors must not depend on the data: auto-scaled defaults look at y, which differs in
every replication, so :func:`simulation_based_calibration` requires explicit priors for
``fixed``, ``random`` and ``Residual``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import scipy.stats

from .checks import replicate
from .design import RESIDUAL, design_from_formula, with_response
from .errors import BayesLMMError, SpecificationError
from .graph import build_model, correlation_labels
from .pipeline import run_design
from .priors import resolve_priors
from .residual_draws import attach_residual, component_names
from .spec import ModelSpec, SamplerOptions, normalize_priors


@dataclass(frozen=True)
class SBCResult:
    """Ranks of the true values and the summaries made from them.

    Attributes
    ----------
    ranks : DataFrame
        One row per replication and parameter: ``replication, parameter, truth, rank,
        n_ranks, in_50, in_90, divergences``.
    failures : int
        Replications that raised (for example a simulated y that is constant).
    seconds : float
    """

    ranks: pd.DataFrame
    failures: int
    seconds: float
    bins: int = 10

    def table(self) -> pd.DataFrame:
        """Per parameter: replications, coverage of the 50% and 90% intervals, and the
        chi-square test of rank uniformity over ``bins`` equal bins (``chi2``, ``p_value``)."""
        rows = []
        for name, grp in self.ranks.groupby("parameter", sort=False):
            L = int(grp["n_ranks"].iloc[0])
            # ranks take L + 1 values 0..L; bin them into equal-probability bins
            bins = np.minimum((grp["rank"].to_numpy() * self.bins) // (L + 1), self.bins - 1)
            observed = np.bincount(bins.astype(int), minlength=self.bins)
            chi2, p = scipy.stats.chisquare(observed)
            rows.append({"parameter": name, "replications": len(grp), "coverage_50": grp["in_50"].mean(),
                         "coverage_90": grp["in_90"].mean(), "chi2": float(chi2), "p_value": float(p)})
        return pd.DataFrame(rows)


def simulation_based_calibration(
    formula: str, data: pd.DataFrame, *, priors: Mapping[str, Any], replications: int,
    coding: str = "treatment", factors: Sequence[str] = (), parameterization: str = "auto",
    sampler: str = "auto", draws: int = 500, tune: int = 500, chains: int = 2,
    n_ranks: int = 99, random_seed: int, progressbar: bool = False, residual: Any = None,
) -> SBCResult:
    """Run SBC for the model ``formula`` on the design of ``data`` (its response is ignored).

    Parameters
    ----------
    formula, data, coding, factors
        The template: X and Z come from ``data``; y is simulated in every replication.
    priors : mapping
        Must give ``fixed``, ``random`` and ``Residual`` (data-independent priors).
    replications : int
    parameterization, sampler, draws, tune, chains
        How each replication is fitted.
    n_ranks : int
        Posterior draws are thinned to this many (evenly spaced) before ranking, which
        reduces the effect of autocorrelation on the rank histogram.
    random_seed : int
        Seeds the prior draws and every fit.
    residual : KnownSD, HeteroSD, AR1, CompoundSymmetry or Unstructured, optional
        The residual structure (columns of ``data``); its SDs and correlations are ranked too
        (``sigma[Residual…]``, ``residual_correlation[…]``).

    Returns
    -------
    SBCResult
    """
    given = dict(normalize_priors(priors))
    missing = [k for k in ("fixed", "random", RESIDUAL) if k not in given]
    if missing:
        raise SpecificationError(f"SBC needs data-independent priors; give priors for {missing}")
    if not isinstance(replications, int) or replications < 1:
        raise SpecificationError(f"replications must be a positive integer, got {replications!r}")
    template = attach_residual(design_from_formula(formula, data, coding=coding, factors=factors), residual)
    prior_set = resolve_priors(given, template)
    wanted = ["beta", "sigma"] + (["correlation"] if correlation_labels(template) else []) + (
        ["residual_correlation"] if template.residual is not None and template.residual.correlated else [])
    with build_model(template, prior_set, parameterization="noncentered"), warnings.catch_warnings():
        # only θ is drawn here (a correlated R's likelihood is a Potential); y comes below
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=replications, var_names=wanted, random_seed=random_seed).prior
    values = {k: prior[k].to_numpy().reshape(replications, -1) for k in wanted}
    # y | θ with fresh u ~ N(0, G) and e ~ N(0, R) (the prior predictive, whatever R is)
    ys = replicate(template, values["beta"], values["sigma"], None, values.get("correlation"), new_groups=True,
                   rng=np.random.default_rng(np.random.SeedSequence([random_seed, 1])),
                   rcorr=values.get("residual_correlation"))
    correlated_r = "residual_correlation" in values
    corr_labels = correlation_labels(template)
    ranked = ["beta", "sigma"] + (["correlation"] if corr_labels else []) + (
        ["residual_correlation"] if correlated_r else [])
    names = ([f"beta[{n}]" for n in template.x_names] + [f"sigma[{c}]" for c in component_names(template)]
             + [f"correlation[{c}]" for c in corr_labels]
             + [f"residual_correlation[{c}]" for c in (template.residual.corr_names if correlated_r else ())])
    truth = np.hstack([values[k] for k in ranked])
    spec = ModelSpec(formula=formula, coding=coding, priors=normalize_priors(priors),
                     parameterization=parameterization, factors=tuple(factors))
    seeds = np.random.SeedSequence(random_seed).generate_state(replications) % 2**31
    rows, failures, start = [], 0, time.perf_counter()
    for r in range(replications):
        options = SamplerOptions(sampler=sampler, draws=draws, tune=tune, chains=chains,
                                 random_seed=int(seeds[r]), progressbar=False)
        try:
            design = with_response(template, ys[r], f"simulated_{r}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = run_design(spec, design, options, conditional_u=False)
        except BayesLMMError:
            failures += 1
            continue
        post = np.concatenate([fit.idata.posterior[k].to_numpy() for k in ranked], axis=-1)
        flat = post.reshape(-1, post.shape[-1])
        thinned = post[:, :: max(1, (post.shape[1] * post.shape[0]) // n_ranks)].reshape(-1, post.shape[-1])[:n_ranks]
        lo50, hi50 = np.quantile(flat, [0.25, 0.75], axis=0)
        lo90, hi90 = np.quantile(flat, [0.05, 0.95], axis=0)
        div = fit.diagnostics().divergences
        for j, name in enumerate(names):
            t = truth[r, j]
            rows.append({"replication": r, "parameter": name, "truth": t,
                         "rank": int(np.sum(thinned[:, j] < t)), "n_ranks": len(thinned),
                         "in_50": bool(lo50[j] <= t <= hi50[j]), "in_90": bool(lo90[j] <= t <= hi90[j]),
                         "divergences": div})
        if progressbar:
            print(f"\rSBC {r + 1}/{replications}", end="", flush=True)
    if progressbar:
        print()
    return SBCResult(ranks=pd.DataFrame(rows), failures=failures, seconds=time.perf_counter() - start)
