"""The diagnostics of a fit as a value (computed by :func:`bayes_lmm.convergence.diagnose`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
