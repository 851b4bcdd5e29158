"""Concrete priors: a pure function of the spec's overrides and the design.

Default rule (auto-scaling, in the spirit of rstanarm), with s_y = sd(y) and ȳ = mean(y):

* β_k for a non-constant column x_k: ``Normal(0, 2.5·s_y / sd(x_k))``; for a 0/1 indicator
  column the scale is ``2.5·s_y`` (an indicator's effect is on the scale of y).
* β for a constant (intercept) column c: ``Normal(ȳ / c, s_int / |c|)`` with
  ``s_int = sqrt((2.5·s_y)² + Σ_k (mean(x_k)·scale_k)²)``, widened by the other columns'
  prior scales so that uncentred covariates (years, doses) are not squeezed.
* σ_j of a random intercept: ``HalfNormal(s_y)``; of a random slope on x:
  ``HalfNormal(s_y / sd(x))``.
* σ_e (``Residual``): ``Exponential(1 / s_y)``.
* correlations of correlated random effects: ``LKJ(eta=2)`` (for k ≥ 3 through its canonical
  partial correlations, :mod:`bayes_lmm.lkj`).
* with a residual structure (``residual=``): each residual SD ``Residual[level]``
  ``Exponential(1 / s_y)``; its correlation (``residual_correlation``) ``LKJ(eta=2)``: for
  AR(1) ρ = 2b − 1 with b ~ Beta(η, η) (density ∝ (1 − ρ²)^(η−1)), for compound symmetry
  ρ = a + (1 − a)b with a = −1/(n_max − 1) (R positive definite for the largest group), for
  Unstructured the LKJ(η) density of the correlation matrix over the times.

Every default can be overridden through ``priors={key: prior}`` with key a column of X,
``fixed`` (all β), a variance-component name, ``random`` (all σ_j), ``Residual`` or
``correlation``; with a residual structure ``Residual`` (every residual SD),
``Residual[level]`` (one) and ``residual_correlation``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .design import RESIDUAL, Design
from .errors import SpecificationError
from .residual_draws import sd_labels
from .spec import LKJ, Exponential, HalfNormal, Normal, Prior

_DEFAULT_KEYS = ("fixed", "random", RESIDUAL, "correlation")


@dataclass(frozen=True)
class PriorSet:
    """The priors actually used, one per parameter."""

    beta: tuple[Prior, ...]
    components: tuple[tuple[str, Prior], ...]  # random-effect σ_j (or σ_j²) by component name
    residual: Prior
    correlation: Prior
    x_names: tuple[str, ...]
    #: the residual SDs' priors by label (``Residual`` or ``Residual[level]``, none for KnownSD)
    residual_sds: tuple[tuple[str, Prior], ...] = ()
    #: the residual correlation's prior (AR1, CompoundSymmetry, Unstructured), else None
    residual_correlation: Prior | None = None

    def component(self, name: str) -> Prior:
        return dict(self.components)[name]

    def residual_sd(self, label: str) -> Prior:
        """The prior of one residual SD (``residual`` for the default σ²_e I)."""
        return dict(self.residual_sds).get(label, self.residual)

    def table(self) -> pd.DataFrame:
        """One row per parameter: what the prior is on and the distribution."""
        rows = [("β", name, str(p)) for name, p in zip(self.x_names, self.beta)]
        for name, p in self.components:
            rows.append(("σ²" if p.target == "variance" else "σ", name, str(p)))
        for label, p in self.residual_sds or ((RESIDUAL, self.residual),):
            rows.append(("σ²" if p.target == "variance" else "σ", label, str(p)))
        rows.append(("correlation", "all correlated blocks", str(self.correlation)))
        if self.residual_correlation is not None:
            rows.append(("correlation", "residual_correlation", str(self.residual_correlation)))
        return pd.DataFrame(rows, columns=["parameter", "name", "prior"]).set_index("name")


def _check_target(key: str, prior: Prior, wanted: tuple[str, ...]) -> None:
    if prior.target not in wanted:
        raise SpecificationError(
            f"prior {prior} cannot be used for {key!r}: it is a prior on a {prior.target}, "
            f"but {key!r} needs one on {' or '.join(wanted)}"
        )


def resolve_priors(overrides: dict[str, Prior], design: Design) -> PriorSet:
    """Combine the user's overrides with the auto-scaled defaults.

    Raises
    ------
    SpecificationError
        For a key that names no parameter (the message lists the valid keys) or a prior
        family that does not fit its parameter.
    """
    labels = sd_labels(design)
    correlated_r = design.residual is not None and design.residual.correlated
    valid = set(design.x_names) | set(design.components) | set(_DEFAULT_KEYS) | set(labels)
    if correlated_r:
        valid.add("residual_correlation")
    if design.residual is not None and design.residual.kind == "known":
        valid.discard(RESIDUAL)
    # the matrix path and formula users may name a component by its group too
    aliases = {b.group: b.components[0] for b in design.blocks if len(b.components) == 1}
    valid |= set(aliases)
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise SpecificationError(
            f"prior keys {unknown} name no parameter; valid keys are {sorted(valid)}"
        )
    y = design.y
    s_y = float(np.std(y)) if design.n > 1 else 1.0
    s_y = s_y if s_y > 0 else 1.0
    X = design.X
    scales, centres = [], []
    constant = []
    for j in range(design.p):
        col = X[:, j]
        sd = float(np.std(col))
        if sd == 0:
            constant.append(j)
            scales.append(np.nan)
        elif np.all(np.isin(col, (0.0, 1.0))):
            scales.append(2.5 * s_y)
        else:
            scales.append(2.5 * s_y / sd)
        centres.append(float(np.mean(col)))
    spread = sum(
        (centres[j] * scales[j]) ** 2 for j in range(design.p) if j not in constant
    )
    s_int = float(np.sqrt((2.5 * s_y) ** 2 + spread))
    beta = []
    for j, name in enumerate(design.x_names):
        if name in overrides:
            prior = overrides[name]
        elif "fixed" in overrides:
            prior = overrides["fixed"]
        elif j in constant:
            c = float(X[0, j]) if design.n else 1.0
            if c == 0:
                prior = Normal(0.0, 2.5 * s_y)
            else:
                mu = float(np.mean(y)) / c if j == constant[0] else 0.0
                prior = Normal(mu, s_int / abs(c))
        else:
            prior = Normal(0.0, scales[j])
        _check_target(name, prior, ("coefficient",))
        beta.append(prior)
    comps = []
    for blk in design.blocks:
        for c, comp in enumerate(blk.components):
            key = comp if comp in overrides else next(
                (a for a, target in aliases.items() if target == comp and a in overrides), None
            )
            if key is not None:
                prior = overrides[key]
            elif "random" in overrides:
                prior = overrides["random"]
            else:
                sd_x = 1.0
                if blk.dense is None:
                    col = blk.values[:, c]
                    sd_x = float(np.std(col)) if np.std(col) > 0 else float(np.mean(np.abs(col)) or 1.0)
                    if blk.coef_names[c] in ("1", blk.group):
                        sd_x = float(np.mean(np.abs(col[col != 0]))) if np.any(col) else 1.0
                prior = HalfNormal(s_y / sd_x)
            _check_target(comp, prior, ("sd", "variance"))
            comps.append((comp, prior))
    residual = overrides.get(RESIDUAL, Exponential(1.0 / s_y))
    _check_target(RESIDUAL, residual, ("sd", "variance"))
    residual_sds = []
    if design.residual is not None:
        for label in labels:
            prior = overrides.get(label, residual)
            _check_target(label, prior, ("sd", "variance"))
            residual_sds.append((label, prior))
    correlation = overrides.get("correlation", LKJ(2.0))
    _check_target("correlation", correlation, ("correlation",))
    residual_correlation = overrides.get("residual_correlation", LKJ(2.0)) if correlated_r else None
    if residual_correlation is not None:
        _check_target("residual_correlation", residual_correlation, ("correlation",))
    return PriorSet(
        beta=tuple(beta), components=tuple(comps), residual=residual,
        correlation=correlation, x_names=design.x_names, residual_sds=tuple(residual_sds),
        residual_correlation=residual_correlation,
    )
