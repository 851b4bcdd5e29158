"""The one-dimensional steps of the blocked Gibbs sampler: each standard deviation given the
rest, by slice sampling (Neal 2003) on log σ.

Every conditional is the centered PyMC graph's joint density (:class:`bayes_lmm.likelihood.
latent.Centered`: u_c ~ N(0, σ_c²), y ~ N(Xβ + Zu, σ_e²)) as a function of one σ with the
rest fixed, up to a constant; ``tests/test_gibbs.py`` holds each to the graph's log-density.

* σ_c given u_c (centered):        log p(σ_c) − L_c log σ_c − ‖u_c‖²/(2σ_c²)
* σ_c given ũ_c = u_c/σ_c (non-centered, the other parameterization of the same model,
  Papaspiliopoulos, Roberts & Sköld 2007):  log p(σ_c) − (a σ_c² − 2 b σ_c)/(2σ_e²) with
  a = ‖Z_c ũ_c‖², b = (y − Xβ − Σ_{d≠c} Z_d u_d)'Z_c ũ_c
* σ_e given the residuals e:       log p(σ_e) − n log σ_e − ‖e‖²/(2σ_e²)

The centered step mixes well where a level's data pin u_c down, the non-centered one where
they do not; one after the other (interweaving, Yu & Meng 2011) the chain mixes at least as
well as the better of the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .likelihood.kernel import SD_FAMILIES

__all__ = ["SD_FAMILIES", "sd_log_prior", "centered", "noncentered", "residual", "slice_sample"]


def sd_log_prior(prior) -> Callable[[float], float]:
    """log p(σ) up to a constant for a standard deviation's prior (InverseGamma priors sit on
    σ², so their density in σ carries the Jacobian 2σ)."""
    kw = prior.kwargs()
    family = prior.family
    if family == "HalfNormal":
        c = 0.5 / kw["sigma"] ** 2
        return lambda s: -c * s * s
    if family == "HalfStudentT":
        nu, scale = float(kw["nu"]), float(kw["sigma"])
        return lambda s: -0.5 * (nu + 1.0) * math.log1p((s / scale) ** 2 / nu)
    if family == "HalfCauchy":
        scale = float(kw["beta"])
        return lambda s: -math.log1p((s / scale) ** 2)
    if family == "Exponential":
        lam = float(kw["lam"])
        return lambda s: -lam * s
    if family == "InverseGamma":
        alpha, beta = float(kw["alpha"]), float(kw["beta"])
        return lambda s: -(2.0 * alpha + 1.0) * math.log(s) - beta / (s * s)
    raise ValueError(f"the Gibbs sampler has no standard deviation prior of family {family!r}")


def centered(log_prior: Callable[[float], float], levels: int, sum_sq: float) -> Callable[[float], float]:
    """σ_c's conditional given u_c (``levels`` entries, ``sum_sq`` = ‖u_c‖²)."""
    return lambda s: log_prior(s) - levels * math.log(s) - 0.5 * sum_sq / (s * s)


def noncentered(log_prior: Callable[[float], float], a: float, b: float, sigma_e: float) -> Callable[[float], float]:
    """σ_c's conditional given ũ_c (see the module's docstring for a and b)."""
    h = 0.5 / (sigma_e * sigma_e)
    return lambda s: log_prior(s) - h * (a * s * s - 2.0 * b * s)


def residual(log_prior: Callable[[float], float], n: int, sum_sq: float) -> Callable[[float], float]:
    """σ_e's conditional given the residuals (``n`` rows, ``sum_sq`` = ‖e‖²)."""
    return lambda s: log_prior(s) - n * math.log(s) - 0.5 * sum_sq / (s * s)


#: log σ beyond which a density is taken as 0 (exp overflows near 709)
_T_MAX = 650.0


def slice_sample(log_density: Callable[[float], float], current: float, rng: np.random.Generator, *,
                 width: float = 1.0, max_steps: int = 64) -> float:
    """One slice-sampling update of σ > 0 on t = log σ (density p(σ)·σ there), stepping out
    by ``width`` and shrinking (Neal 2003, figs. 3 and 5): it leaves ``log_density`` invariant
    whatever the width; the width only sets how many evaluations a step takes."""

    def g(t: float) -> float:
        if abs(t) > _T_MAX:
            return -math.inf
        value = log_density(math.exp(t)) + t
        return value if value == value else -math.inf  # NaN → outside

    t0 = math.log(current)
    level = g(t0) - rng.exponential()
    left = t0 - width * rng.uniform()
    right = left + width
    steps = int(rng.integers(max_steps))
    k = max_steps - 1 - steps
    while steps > 0 and g(left) > level:
        left -= width
        steps -= 1
    while k > 0 and g(right) > level:
        right += width
        k -= 1
    while True:
        t = rng.uniform(left, right)
        if g(t) > level:
            return math.exp(t)
        if t < t0:
            left = t
        else:
            right = t
