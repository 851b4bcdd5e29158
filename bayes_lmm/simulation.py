"""Simulation from the model: ``simulate`` (one data set at given parameters) and
``sample_prior`` (draws from the priors alone)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm

from . import residual_draws as _draws
from .design import design_from_formula, design_from_matrices
from .errors import SpecificationError
from .graph import build_model
from .priors import resolve_priors
from .residual_draws import attach_residual, sd_labels
from .results import Fit
from .spec import normalize_priors

__all__ = ["simulate", "sample_prior"]


def _design_for(spec_or_fit: Any, data: pd.DataFrame | None, coding: str, factors: Sequence[str]):
    """A design for simulation: from a Fit, a formula with a template frame, or (X, Z)."""
    if isinstance(spec_or_fit, Fit):
        return spec_or_fit.design, spec_or_fit.prior_set, None
    if isinstance(spec_or_fit, str):
        if data is None:
            raise SpecificationError("simulating from a formula needs a template data frame (data=)")
        from .formula import parse_formula

        parsed = parse_formula(spec_or_fit)
        response = parsed.response_column
        if response is None:
            raise SpecificationError(f"cannot simulate a transformed response {parsed.response!r}")
        template = data.copy()
        if response not in template.columns:
            # placeholder values only to build X and Z; they are replaced below
            template[response] = np.random.default_rng(0).normal(size=len(template))
        return design_from_formula(spec_or_fit, template, coding=coding, factors=factors), None, (template, response)
    if isinstance(spec_or_fit, tuple) and len(spec_or_fit) == 2:
        X, Z = spec_or_fit
        n = np.shape(X)[0]
        placeholder = np.random.default_rng(0).normal(size=n)
        return design_from_matrices(placeholder, X, Z), None, None
    raise SpecificationError("bl.simulate takes a Fit, a formula (with data=) or an (X, Z) tuple")


def _residual_sds(design, params: Mapping[str, Any]) -> list[float]:
    """The residual SDs in the order of the ``component`` dim, from ``params["Residual"]``."""
    labels = sd_labels(design)
    if not labels:
        if "Residual" in params:
            raise SpecificationError("params['Residual'] is not used: the residual SDs are known (KnownSD)")
        return []
    if "Residual" not in params:
        raise SpecificationError(f"params['Residual'] (σ_e) is required: one SD or a mapping over {list(labels)}")
    given = params["Residual"]
    if not isinstance(given, Mapping):
        return [float(given)] * len(labels)
    given = {k if k in labels else f"Residual[{k}]": v for k, v in given.items()}
    missing, extra = [lab for lab in labels if lab not in given], [k for k in given if k not in labels]
    if missing or extra:
        raise SpecificationError(f"params['Residual'] must give each residual SD {list(labels)}; "
                                 f"missing {missing}, unknown {extra}")
    return [float(given[lab]) for lab in labels]


def _residual_correlation(design, params: Mapping[str, Any]) -> np.ndarray | None:
    """``params["residual_correlation"]`` as a (1, m) row, checked against the structure."""
    res = design.residual
    if res is None or not res.correlated:
        if "residual_correlation" in params:
            raise SpecificationError("params['residual_correlation'] is given, but R has no correlation "
                                     "(residual= AR1, CompoundSymmetry or Unstructured)")
        return None
    if "residual_correlation" not in params:
        raise SpecificationError(f"params['residual_correlation'] is required: {list(res.corr_names)}")
    given = params["residual_correlation"]
    if isinstance(given, Mapping):
        bad = [k for k in given if k not in res.corr_names]
        missing = [k for k in res.corr_names if k not in given]
        if bad or missing:
            raise SpecificationError(f"params['residual_correlation'] must give {list(res.corr_names)}; "
                                     f"missing {missing}, unknown {bad}")
        values = np.array([[float(given[k]) for k in res.corr_names]])
    else:
        values = np.full((1, len(res.corr_names)), float(given))
    if np.any(np.abs(values) >= 1):
        raise SpecificationError(f"params['residual_correlation'] must lie in (−1, 1); got {values[0].tolist()}")
    if res.kind == "un" and np.linalg.eigvalsh(_draws.correlation_matrices(res, values)[0]).min() <= 0:
        raise SpecificationError("params['residual_correlation']: the correlations do not form a positive "
                                 "definite matrix over the times")
    return values


def simulate(spec_or_fit: Any, params: Mapping[str, Any], *, random_seed: int | None,
             data: pd.DataFrame | None = None, coding: str = "treatment",
             factors: Sequence[str] = (), residual: Any = None) -> pd.DataFrame:
    """Simulate one data set from the model with given β and variance components.

    Parameters
    ----------
    spec_or_fit : Fit, formula str (with ``data`` as template) or (X, Z) tuple
    params : mapping
        ``beta``: mapping column label → value (missing labels are 0) or a vector;
        ``sd``: mapping variance component (``"1|pot"`` or ``"pot"``) → σ_j;
        ``Residual``: σ_e; optional ``correlation``: mapping ``"(1,Days)|Subject"`` → ρ.
        With ``residual=``: ``Residual`` is one SD (used for every stratum) or a mapping
        ``"Residual[level]"`` (or ``level``) → SD (not given for KnownSD), and
        ``residual_correlation`` is ρ (AR1, CompoundSymmetry) or a mapping ``"corr(t1,t2)"``
        → value (Unstructured).
    random_seed : int or None
        Required keyword: the same seed gives the same data.
    residual : KnownSD, HeteroSD, AR1, CompoundSymmetry or Unstructured, optional
        The residual structure R (default ``σ²_e I``; a Fit's own structure when simulating
        from a Fit), its columns read from ``data``.

    Returns
    -------
    DataFrame
        The template with its response column replaced by simulated values (formula or Fit),
        or a frame with a column ``y`` (matrices). The caller's frame is not modified.

    Examples
    --------
    >>> import pandas as pd
    >>> import bayes_lmm as bl
    >>> dye = pd.read_csv("models/data/dyestuff.csv")
    >>> sim = bl.simulate("Yield ~ 1 + (1|Batch)", {"beta": {"Intercept": 1500},
    ...                   "sd": {"Batch": 40}, "Residual": 50}, data=dye, random_seed=1)
    >>> sim.shape == dye.shape
    True
    """
    from . import checks

    design, _, formula_info = _design_for(spec_or_fit, data, coding, factors)
    if residual is not None:
        design = attach_residual(design, residual, data)
    if not isinstance(params, Mapping):
        raise SpecificationError("params must be a mapping with 'beta', 'sd' and 'Residual'")
    unknown = set(params) - {"beta", "sd", "Residual", "correlation", "residual_correlation"}
    if unknown:
        raise SpecificationError(f"unknown params {sorted(unknown)}; use 'beta', 'sd', 'Residual', 'correlation'"
                                 " (and 'residual_correlation')")
    beta_in = params.get("beta", {})
    if isinstance(beta_in, Mapping):
        bad = [k for k in beta_in if k not in design.x_names]
        if bad:
            raise SpecificationError(f"params['beta'] names {bad}, not columns of X {list(design.x_names)}")
        beta = np.array([float(beta_in.get(k, 0.0)) for k in design.x_names])
    else:
        beta = np.asarray(beta_in, dtype=float).reshape(-1)
        if beta.size != design.p:
            raise SpecificationError(f"params['beta'] has {beta.size} values; X has {design.p} columns")
    sd_in = dict(params.get("sd", {}))
    aliases = {b.group: b.components[0] for b in design.blocks if len(b.components) == 1}
    sd_in = {aliases.get(k, k): v for k, v in sd_in.items()}
    missing = [c for c in design.components if c not in sd_in]
    extra = [k for k in sd_in if k not in design.components]
    if missing or extra:
        raise SpecificationError(f"params['sd'] must give each component {list(design.components)}; "
                                 f"missing {missing}, unknown {extra}")
    sigma = np.array([[float(sd_in[c]) for c in design.components] + _residual_sds(design, params)])
    if np.any(sigma < 0):
        raise SpecificationError("standard deviations must be non-negative")
    from .graph import correlation_labels

    labels = correlation_labels(design)
    corr_in = dict(params.get("correlation", {}))
    bad = [k for k in corr_in if k not in labels]
    if bad:
        raise SpecificationError(f"params['correlation'] names {bad}; correlations are {labels}")
    corr = np.array([[float(corr_in.get(k, 0.0)) for k in labels]]) if labels else None
    rng = np.random.default_rng(random_seed)
    y = checks.replicate(design, beta[None], sigma, None, corr, new_groups=True, rng=rng,
                         rcorr=_residual_correlation(design, params))[0]
    if formula_info is not None:
        template, response = formula_info
        out = data.copy()
        out[response] = y
        return out
    if isinstance(spec_or_fit, Fit) and spec_or_fit.design.data is not None:
        out = spec_or_fit.design.data.copy()
        out[spec_or_fit.design.y_name] = y
        return out
    return pd.DataFrame({"y": y})


def sample_prior(formula_or_matrices: Any, data: pd.DataFrame | None = None, *, draws: int = 500,
                 coding: str = "treatment", factors: Sequence[str] = (),
                 priors: Mapping[str, Any] | None = None, random_seed: int | None = None):
    """Draws of every parameter and of y from the priors alone, before any fitting.

    Parameters
    ----------
    formula_or_matrices : str or (y, X, Z) tuple
        A formula (then ``data`` is required) or a tuple as for :func:`fit_matrices`.
    data : DataFrame, optional
    draws : int
        Number of prior draws.
    coding, factors : as in :func:`fit`
    priors : mapping, optional
        Overrides, as in :func:`fit_matrices`; the rest are the auto-scaled defaults.
    random_seed : int, optional

    Returns
    -------
    arviz.InferenceData
        ``prior`` (β, σ, u, ...) and ``prior_predictive`` (y) groups.

    Examples
    --------
    >>> import pandas as pd
    >>> import bayes_lmm as bl
    >>> data = pd.read_csv("models/data/seedling.csv")
    >>> prior = bl.sample_prior("weight ~ genotype + (1|pot)", data, factors=["genotype"],
    ...                         draws=200, random_seed=1)
    >>> prior.prior_predictive["y"].shape  # doctest: +SKIP
    (1, 200, 10)
    """
    if isinstance(formula_or_matrices, str):
        if data is None:
            raise SpecificationError("sample_prior(formula, data): data is required with a formula")
        design = design_from_formula(formula_or_matrices, data, coding=coding, factors=factors)
    elif isinstance(formula_or_matrices, tuple) and len(formula_or_matrices) == 3:
        design = design_from_matrices(*formula_or_matrices)
    else:
        raise SpecificationError("sample_prior takes a formula and data, or a (y, X, Z) tuple")
    prior_set = resolve_priors(dict(normalize_priors(priors)), design)
    with build_model(design, prior_set, parameterization="noncentered"):
        return pm.sample_prior_predictive(draws=draws, random_seed=random_seed)
