"""Diagnostics of a fit: convergence, weakly identified components and flagged observations.

Everything here is cheap: NumPy over posterior means and the design, never a refit.
``Diagnostics.problems()`` says why a fit should not be trusted as is (it decides ``ok``);
``Diagnostics.notes()`` names observations that deserve a look (outliers, high Pareto k).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import residual_draws as _residual
from .checks import linear_predictor
from .design import Design

#: thresholds behind the diagnostics warnings
RHAT_MAX = 1.01
ESS_MIN_PER_CHAIN = 100
#: |y − posterior mean of Xβ + Zu| beyond this many posterior-mean σ_e flags a row
OUTLIER_Z = 4.0
#: PSIS-LOO estimates of rows with a Pareto k above this are unreliable (ArviZ's bound)
PARETO_K_MAX = 0.7
#: rows named in one message (the count says how many more)
LISTED_ROWS = 5


@dataclass(frozen=True)
class FlaggedRow:
    """One observation flagged by a screen: its row label, y and the statistic that flagged it."""

    row: str
    y: float
    value: float


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of a fit, and what the cheap screens found.

    Attributes
    ----------
    weakly_identified : tuple of str
        Variance components of factors with one observation per level: σ_j and σ_e then
        share one piece of information per level and are only weakly identified.
    outliers : tuple of FlaggedRow
        Rows with ``|y − E[Xβ + Zu]| / E[σ_e]`` > :data:`OUTLIER_Z` (``value``: that ratio).
    high_pareto_k : tuple of FlaggedRow
        Rows whose PSIS-LOO Pareto k exceeds :data:`PARETO_K_MAX` (``value``: k); filled
        once :meth:`Fit.loo` has run.

    Examples
    --------
    >>> diag = fit.diagnostics()  # doctest: +SKIP
    >>> diag.ok, diag.divergences, diag.max_rhat  # doctest: +SKIP
    >>> for line in diag.problems() + diag.notes():  # doctest: +SKIP
    ...     print(line)
    """

    divergences: int
    draws: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    chains: int
    target_accept: float
    weakly_identified: tuple[str, ...] = ()
    outliers: tuple[FlaggedRow, ...] = ()
    high_pareto_k: tuple[FlaggedRow, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        """Plain-language description of each problem, with what to do about it.

        Values are compared with their thresholds as printed (R-hat to 3 decimals, ESS to
        whole draws), so a message never reads "1.010 (> 1.01)".
        """
        out = []
        if self.divergences:
            out.append(
                f"{self.divergences} of {self.draws} draws ended in a divergence (target_accept "
                f"was {self.target_accept:g}); the posterior may be biased. Try "
                f"target_accept=0.99, parameterization='centered' for many groups with lots of "
                f"data each, or more informative priors on the variance components."
            )
        weak = self.weakly_identified
        if weak:
            sds = ", ".join(_sigma(c) for c in weak)
            out.append(
                f"{_factors(weak)} one observation per level, so {sds} and σ_e are only weakly "
                f"identified: the data inform mainly their combined variance, the split between "
                f"them rests on the priors. Drop the term, or give one of them an informative prior."
            )
        if round(self.max_rhat, 3) > RHAT_MAX:
            why = (f"as expected while {', '.join(_sigma(c) for c in weak)} and σ_e are weakly "
                   f"identified (above): the chains explore the broad ridge between them slowly") if weak else \
                "Run more tune/draws or check the model for weakly identified parameters"
            out.append(f"max R-hat is {self.max_rhat:.3f} (> {RHAT_MAX}): the chains disagree. {why}.")
        if round(self.min_ess_bulk) < ESS_MIN_PER_CHAIN * self.chains:
            out.append(
                f"smallest bulk ESS is {self.min_ess_bulk:.0f} (< {ESS_MIN_PER_CHAIN} per chain "
                f"× {self.chains}): intervals are imprecise. Draw more samples."
            )
        return out

    def notes(self) -> list[str]:
        """Observations that deserve a look; they do not make the fit not ``ok``."""
        out = []
        if self.outliers:
            out.append(
                f"{_count(self.outliers)} |y − posterior mean of Xβ + Zu| > {OUTLIER_Z:g} σ_e "
                f"(posterior mean): {_rows(self.outliers, '{:.1f} σ_e')}. Check for recording errors: "
                f"such rows inflate σ_e and pull their group's u."
            )
        if self.high_pareto_k:
            out.append(pareto_note(self.high_pareto_k))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "divergences": self.divergences, "draws": self.draws, "max_rhat": self.max_rhat,
            "min_ess_bulk": self.min_ess_bulk, "min_ess_tail": self.min_ess_tail,
            "chains": self.chains, "target_accept": self.target_accept,
        }


def pareto_note(rows: tuple[FlaggedRow, ...]) -> str:
    """The message naming the rows whose PSIS-LOO Pareto k is too high."""
    return (f"{_count(rows)} PSIS-LOO Pareto k > {PARETO_K_MAX}: {_rows(rows, 'k = {:.2f}')}. "
            f"Each is influential (an outlier, or one of the few rows of its group); their LOO "
            f"estimates are unreliable.")


def _sigma(component: str) -> str:
    return f"σ_{component[2:] if component.startswith('1|') else component}"


def _factors(components: tuple[str, ...]) -> str:
    names = [c.split("|", 1)[1] if "|" in c else c for c in components]
    quoted = ", ".join(repr(n) for n in dict.fromkeys(names))
    return f"factor {quoted} has" if len(set(names)) == 1 else f"factors {quoted} have"


def _count(rows: tuple[FlaggedRow, ...]) -> str:
    return "1 observation has" if len(rows) == 1 else f"{len(rows)} observations have"


def _rows(rows: tuple[FlaggedRow, ...], fmt: str) -> str:
    shown = ", ".join(f"row {r.row} (y = {r.y:g}, {fmt.format(r.value)})" for r in rows[:LISTED_ROWS])
    more = len(rows) - LISTED_ROWS
    return shown + (f" and {more} more" if more > 0 else "")


def single_observation_components(design: Design) -> tuple[str, ...]:
    """Components of the factors (index blocks) that have exactly one observation per level."""
    out: list[str] = []
    for blk in design.blocks:
        if blk.dense is not None:
            continue
        used = np.any(blk.values != 0, axis=1)
        counts = np.bincount(blk.index[used], minlength=blk.n_levels)
        if counts.size and np.all(counts == 1):
            out += list(blk.components)
    return tuple(out)


def flag_rows(design: Design, statistic: np.ndarray, bound: float) -> tuple[FlaggedRow, ...]:
    """Rows whose ``statistic`` exceeds ``bound``, the most extreme first."""
    hit = np.nonzero(statistic > bound)[0]
    hit = hit[np.argsort(-statistic[hit], kind="stable")]
    labels = design.row_labels or tuple(str(i) for i in range(design.n))
    return tuple(FlaggedRow(labels[i], float(design.y[i]), float(statistic[i])) for i in hit)


def residual_outliers(design: Design, beta: np.ndarray, u: np.ndarray | None,
                      sigma: np.ndarray) -> tuple[FlaggedRow, ...]:
    """Rows with |y − posterior mean of Xβ + Zu| / posterior mean of the row's residual SD
    (σ_e, or its stratum's SD, or the known SD) > :data:`OUTLIER_Z`.

    One pass over posterior means (Xβ + Zu is linear, so its mean is X·E[β] + Z·E[u]).
    ``u`` None (not drawn) means no screen: the residuals given u cannot be formed.
    """
    if design.blocks and u is None:
        return ()
    eta = linear_predictor(design, beta.mean(axis=0)[None], None if u is None else u.mean(axis=0)[None])[0]
    # the row SD is a gather of σ, so its mean is the gather of σ's mean (no draws × rows array:
    # 4,000 × 73,421 rows would be 2.3 GB)
    scale = _residual.row_sd(design, sigma.mean(axis=0, keepdims=True))[0]
    return flag_rows(design, np.abs(design.y - eta) / scale, OUTLIER_Z)


__all__ = ["Diagnostics", "FlaggedRow", "RHAT_MAX", "ESS_MIN_PER_CHAIN", "OUTLIER_Z", "PARETO_K_MAX",
           "single_observation_components", "flag_rows", "residual_outliers", "pareto_note"]
