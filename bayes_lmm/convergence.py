"""Convergence of a fit: R-hat, ESS and divergences, pure functions of the posterior and the design."""

from __future__ import annotations

import arviz as az
import numpy as np

from .design import Design
from .diagnostics import Diagnostics, residual_outliers, single_observation_components


def ess_rhat(post, var: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk ESS, tail ESS and R-hat of one posterior variable, per entry."""
    data = post[[var]]
    bulk = az.ess(data, method="bulk")[var].to_numpy()
    tail = az.ess(data, method="tail")[var].to_numpy()
    rhat = az.rhat(data)[var].to_numpy()
    return bulk, tail, rhat


def diagnose(idata, design: Design, *, judge_u: bool, target_accept: float) -> Diagnostics:
    """Divergences, max R-hat and min bulk/tail ESS over β, σ, correlations and (``judge_u``:
    where u was sampled) u; the weakly identified components and the residual outliers
    (:mod:`bayes_lmm.diagnostics`; Pareto k is added by :meth:`bayes_lmm.Fit.loo`).

    After a marginal fit u is drawn exactly given each (β, θ) draw, so its mixing is that of
    β and θ; leaving it out keeps diagnostics cheap for 20,000 levels. For a rank-deficient X
    (the notes' full coding) β enters through its estimable functions: the distinct rows of Xβ.
    """
    post = idata.posterior
    judged = ("beta", "sigma", "u", "correlation") if judge_u else ("beta", "sigma", "correlation")
    names = [v for v in judged if v in post]
    data = post[names]
    if design.rank < design.p:
        # with a rank-deficient X only estimable functions are identified: judge convergence
        # on the distinct rows of Xβ (cell means), not on the prior-only null-space direction
        rows = np.unique(design.X, axis=0)
        cells = np.einsum("cdp,rp->cdr", post["beta"].to_numpy(), rows)
        data = data.assign(beta=(("chain", "draw", "cell"), cells))
    rhat = az.rhat(data)
    bulk = az.ess(data, method="bulk")
    tail = az.ess(data, method="tail")

    def extreme(ds, fn):
        vals = np.concatenate([np.atleast_1d(ds[v].to_numpy()).ravel() for v in names])
        vals = vals[np.isfinite(vals)]
        return float(fn(vals)) if vals.size else float("nan")

    div = 0
    if "sample_stats" in idata.groups() and "diverging" in idata.sample_stats:
        div = int(idata.sample_stats["diverging"].sum())
    flat = {v: post[v].to_numpy().reshape((-1,) + post[v].shape[2:]) for v in ("beta", "sigma", "u") if v in post}
    return Diagnostics(
        divergences=div, draws=int(post.sizes["chain"] * post.sizes["draw"]), max_rhat=extreme(rhat, np.max),
        min_ess_bulk=extreme(bulk, np.min), min_ess_tail=extreme(tail, np.min),
        chains=int(post.sizes["chain"]), target_accept=target_accept,
        weakly_identified=single_observation_components(design),
        outliers=residual_outliers(design, flat["beta"], flat.get("u"), flat["sigma"]),
    )
