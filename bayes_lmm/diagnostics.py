"""Convergence diagnostics of a fit: pure functions of the posterior (and the design)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import arviz as az
import numpy as np

from .design import Design

#: thresholds behind the diagnostics warnings
RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of a fit."""

    divergences: int
    draws: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    chains: int
    target_accept: float

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """Plain-language description of each problem, with what to do about it."""
        out = []
        if self.divergences:
            out.append(
                f"{self.divergences} of {self.draws} draws ended in a divergence (target_accept "
                f"was {self.target_accept:g}); the posterior may be biased. Try "
                f"target_accept=0.99, parameterization='centered' for many groups with lots of "
                f"data each, or more informative priors on the variance components."
            )
        if self.max_rhat > RHAT_MAX:
            out.append(
                f"max R-hat is {self.max_rhat:.3f} (> {RHAT_MAX}): the chains disagree. "
                f"Run more tune/draws or check the model for weakly identified parameters."
            )
        if self.min_ess_bulk < ESS_MIN_PER_CHAIN * self.chains:
            out.append(
                f"smallest bulk ESS is {self.min_ess_bulk:.0f} (< {ESS_MIN_PER_CHAIN} per chain): "
                f"intervals are imprecise. Draw more samples."
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "divergences": self.divergences, "draws": self.draws, "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk, "min_ess_tail": self.min_ess_tail,
            "chains": self.chains, "target_accept": self.target_accept,
        }


def ess_rhat(post, var: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bulk ESS, tail ESS and R-hat of one posterior variable, per entry."""
    data = post[[var]]
    bulk = az.ess(data, method="bulk")[var].to_numpy()
    tail = az.ess(data, method="tail")[var].to_numpy()
    rhat = az.rhat(data)[var].to_numpy()
    return bulk, tail, rhat


def diagnose(idata, design: Design, *, judge_u: bool, target_accept: float) -> Diagnostics:
    """Divergences, max R-hat and min bulk/tail ESS over β, σ, correlations and (``judge_u``:
    where u was sampled) u.

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
    return Diagnostics(
        divergences=div, draws=int(post.sizes["chain"] * post.sizes["draw"]), max_rhat=extreme(rhat, np.max),
        min_ess_bulk=extreme(bulk, np.min), min_ess_tail=extreme(tail, np.min),
        chains=int(post.sizes["chain"]), target_accept=target_accept,
    )
