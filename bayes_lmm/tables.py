"""The posterior tables of a fit: pure functions of the design and the posterior draws.

``post`` is the InferenceData's posterior (chains kept, for ESS and R-hat); every table is
a pandas DataFrame indexed by the names users wrote. Interval arguments: ``prob`` (mass)
and ``interval`` (``"eti"`` equal-tailed, ``"hdi"`` highest density).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import contrasts as _contrasts
from . import residual_draws as _residual
from . import variance as _variance
from .convergence import ess_rhat
from .design import Design
from .errors import SpecificationError
from .names import RESIDUAL_CORR_DIM
from .validate import row_selection


@dataclass(frozen=True)
class VarY:
    """Posterior summary of Var(y) for chosen rows: three row × row tables."""

    mean: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame


def draws(post, name: str) -> np.ndarray:
    """Posterior draws of a variable with chains and draws flattened: shape (S, …)."""
    if name not in post:
        raise SpecificationError(f"the posterior has no variable {name!r}")
    arr = post[name].to_numpy()
    return arr.reshape((-1,) + arr.shape[2:])


def corr_draws(post) -> np.ndarray | None:
    return draws(post, "correlation") if "correlation" in post else None


def component_names(design: Design) -> list[str]:
    return _residual.component_names(design)


def residual_corr_draws(post) -> np.ndarray | None:
    return draws(post, "residual_correlation") if "residual_correlation" in post else None


def fixed_effects(design: Design, post, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
    """Posterior of β: one row per column of X (see :meth:`bayes_lmm.Fit.fixed_effects`)."""
    table = _contrasts.summarize(draws(post, "beta"), design.x_names, prob=prob, interval=interval)
    table.index.name = "term"
    table["ess_bulk"], table["ess_tail"], table["r_hat"] = ess_rhat(post, "beta")
    P = _contrasts.row_space_projector(design.X)
    eye = np.eye(design.p)
    table["estimable"] = np.linalg.norm(eye - eye @ P, axis=1) < 1e-8
    return table[["mean", "sd", "median", "lower", "upper", "ess_bulk", "ess_tail", "r_hat", "estimable"]]


def variance_components(design: Design, post, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
    """One row per variance component plus ``Residual`` (see :meth:`bayes_lmm.Fit.variance_components`)."""
    sigma = draws(post, "sigma")
    fractions = _variance.fraction_draws(design, sigma, corr_draws(post))
    table = _variance.variance_table(sigma, component_names(design), prob=prob, interval=interval,
                                     fractions=fractions)
    bulk, _, rhat = ess_rhat(post, "sigma")
    table["ess_bulk"], table["r_hat"] = bulk, rhat
    return table


def variance_ratio(design: Design, post, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
    """σ_j²/σ_e² for each component (σ_e²: the mean of diag(R) with a residual structure)."""
    sigma = draws(post, "sigma")
    c = len(design.components)
    ratio = sigma[:, :c] ** 2 / _residual.mean_variance(design, sigma)[:, None]
    out = _contrasts.summarize(ratio, design.components, prob=prob, interval=interval)
    out.index.name = "component"
    return out[["mean", "median", "sd", "lower", "upper"]]


def icc(design: Design, post, prob: float = 0.95, *, interval: str = "eti",
        at: dict[str, Any] | None = None) -> pd.DataFrame:
    """Intraclass correlations, one row per random factor (see :meth:`bayes_lmm.Fit.icc`);
    with random slopes at the covariate values ``at``, in a column ``at``."""
    d, label = _icc_draws(design, post, at)
    out = _contrasts.summarize(np.column_stack(list(d.values())), list(d), prob=prob, interval=interval)
    out.index.name = "component"
    out = out[["mean", "median", "sd", "lower", "upper"]]
    return out if label is None else out.assign(at=label)


def _icc_draws(design: Design, post, at: dict[str, Any] | None) -> tuple[dict[str, np.ndarray], str | None]:
    sigma = draws(post, "sigma")
    if design.data is not None and _variance.slope_covariates(design):
        return _variance.icc_at_draws(design, sigma, corr_draws(post), at or {})
    if at:
        raise SpecificationError("at= sets the covariates of random slopes; this model has none")
    d = _variance.icc_draws(design, sigma, component_names(design))
    if not d:
        raise SpecificationError(
            "the model's random blocks are not random intercepts (explicit Z with "
            "non-indicator values), so there is no ICC"
        )
    return d, None


def random_effects(design: Design, post, prob: float = 0.95, *, interval: str = "eti",
                   group: str | None = None, levels: Sequence[Any] | None = None) -> pd.DataFrame:
    """Posterior of each entry of u (of one factor ``group``, and some of its ``levels``)."""
    if "u" not in post:
        raise SpecificationError("the model has no random effects")
    if levels is not None and group is None:
        raise SpecificationError("levels= needs group=<factor> to say whose levels they are")
    keep = slice(None) if group is None else _variance.u_positions(design, group, levels)
    labels = list(np.asarray(design.u_labels, dtype=object)[keep])
    out = _contrasts.summarize(draws(post, "u")[:, keep], labels, prob=prob, interval=interval)
    out.index.name = "u"
    return out[["mean", "median", "sd", "lower", "upper"]]


def random_effect_correlations(design: Design, post, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
    """Correlations between correlated random effects, e.g. ``(1,Days)|Subject``."""
    if "correlation" not in post:
        raise SpecificationError(
            "the model has no correlated random effects; write (1 + x | g) to model them"
        )
    labels = list(post["correlation"].coords["correlation_pair"].to_numpy())
    out = _contrasts.summarize(draws(post, "correlation"), labels, prob=prob, interval=interval)
    out.index.name = "correlation"
    bulk, _, rhat = ess_rhat(post, "correlation")
    out["ess_bulk"], out["r_hat"] = bulk, rhat
    return out.drop(columns=["prob_positive"])


def residual_structure(design: Design, post, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
    """Posterior of the residual correlation parameters, one row per ``rho`` or ``corr(t1,t2)``."""
    if "residual_correlation" not in post:
        kind = "σ²_e I" if design.residual is None else type(design.residual.source).__name__
        raise SpecificationError(
            f"the residual structure ({kind}) has no correlation parameters; fit with residual=bl.AR1(time, "
            "group), bl.CompoundSymmetry(group) or bl.Unstructured(time, group) to estimate one "
            "(residual SDs are in variance_components())")
    labels = list(post["residual_correlation"].coords[RESIDUAL_CORR_DIM].to_numpy())
    out = _contrasts.summarize(draws(post, "residual_correlation"), labels, prob=prob, interval=interval)
    out.index.name = "parameter"
    bulk, _, rhat = ess_rhat(post, "residual_correlation")
    out["ess_bulk"], out["r_hat"] = bulk, rhat
    return out.drop(columns=["prob_positive"])


def var_y(design: Design, post, rows: Sequence[int] | slice | None = None, prob: float = 0.95) -> VarY:
    """Posterior mean and interval of ``Var(y) = ZGZ' + R`` for chosen observations."""
    idx = row_selection(rows, design.n)
    vy = _variance.var_y_draws(design, draws(post, "sigma"), corr_draws(post), idx, residual_corr_draws(post))
    labels = [design.row_labels[i] for i in idx]
    a = (1 - prob) / 2

    def frame(m):
        return pd.DataFrame(m, index=labels, columns=labels)

    return VarY(mean=frame(vy.mean(axis=0)), lower=frame(np.quantile(vy, a, axis=0)),
                upper=frame(np.quantile(vy, 1 - a, axis=0)))


def compare_reml(design: Design, post, reml, prob: float = 0.95) -> pd.DataFrame:
    """Bayes and REML (``reml``, a :class:`~bayes_lmm.reml.RemlResult`) side by side."""
    fe = fixed_effects(design, post, prob)
    rows = []
    for name in design.x_names:
        if fe.loc[name, "estimable"]:
            rows.append(("beta", name, fe.loc[name, "median"], fe.loc[name, "lower"],
                         fe.loc[name, "upper"], reml.fixed_effects.loc[name, "estimate"],
                         reml.fixed_effects.loc[name, "se"]))
    vc = variance_components(design, post, prob)
    for name in vc.index:
        rows.append(("sd", name, vc.loc[name, "sd_median"], vc.loc[name, "sd_lower"],
                     vc.loc[name, "sd_upper"], reml.variance_components.loc[name, "sd"], np.nan))
    if "correlation" in post:
        corr = random_effect_correlations(design, post, prob)
        for name in corr.index:
            rows.append(("correlation", name, corr.loc[name, "median"], corr.loc[name, "lower"],
                         corr.loc[name, "upper"], reml.correlations.loc[name, "estimate"], np.nan))
    out = pd.DataFrame(rows, columns=["kind", "name", "bayes_median", "bayes_lower",
                                      "bayes_upper", "reml", "reml_se"])
    return out.set_index(["kind", "name"])
