"""The facade: ``fit`` (formula), ``fit_matrices`` (explicit X and Z), ``build``, ``reml``,
``compare``, ``simulate`` and ``sample_prior``.

Each fit runs the pipeline of :mod:`bayes_lmm.pipeline` (spec → design → priors → form →
graph → sampling → completion → results); this module only turns arguments into a spec, a
design and sampler options.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .dataprep import warn_integer_coded
from .design import Design, design_from_formula, design_from_matrices
from .errors import SpecificationError
from .pipeline import build, default_target_accept, resolve_parameterization, run_design
from .reml import RemlResult, reml_design
from .reml_residual import reml_residual
from .residual_draws import attach_residual
from .results import Fit
from .simulation import sample_prior, simulate
from .spec import ModelSpec, SamplerOptions, normalize_priors

__all__ = ["fit", "fit_matrices", "build", "reml", "compare", "simulate", "sample_prior", "run_design",
           "default_target_accept", "resolve_parameterization"]


def fit_matrices(
    y, X, Z: Mapping[str, Any] | None, *, x_names: Sequence[str] | None = None,
    priors: Mapping[str, Any] | None = None, parameterization: str = "auto",
    sampler: str = "auto", draws: int = 1000, tune: int = 1000, chains: int = 4,
    random_seed: int | None = None, target_accept: float | None = None, progressbar: bool = True,
    residual: Any = None,
) -> Fit:
    """Fit ``y = Xβ + Σ_j Z_j u_j + e`` from explicit matrices by NUTS.

    Parameters
    ----------
    y : array-like, shape (n,)
    X : array-like or DataFrame, shape (n, p)
        May be rank-deficient, like the notes' ``[1, genotype1, genotype2]``: the priors
        keep the posterior proper and only estimable Cβ are reported by :meth:`Fit.contrast`.
    Z : mapping of name to array-like or DataFrame (n, q_j)
        One variance component per block, ``u_j ~ N(0, σ_j² I)``; a DataFrame's columns name
        the levels. ``e ~ N(0, σ_e² I)``.
    x_names : sequence of str, optional
    priors : mapping, optional
        Overrides keyed by a column of X, a block name, ``fixed``, ``random``, ``Residual``.
    parameterization : {"auto", "marginal", "noncentered", "centered"}
        ``auto`` (default) integrates u out where that is cheap (one random block, nested
        intercepts, or at most 150 random coefficients left after solving out the largest
        intercept factor; up to 4 coefficients per level and 150 left on the compiled kernel)
        and samples u otherwise (each factor centered or non-centered by its data, or by the
        blocked Gibbs sampler, below); the
        choice is in ``fit.parameterization`` and ``fit.summary()``. With ``marginal`` u is
        still in the posterior, drawn from its exact conditional for every draw; with Normal
        priors on β (the default) β is integrated out too and drawn the same way.
    sampler : {"auto", "pymc", "nutpie", "numpyro", "gibbs"}
        ``auto`` (default) is nutpie when installed, else PyMC's NUTS, except where no exact
        form is cheap for NUTS and every random coefficient is its own variance component
        with R = σ²_e I (many levels on crossed factors): there the blocked Gibbs sampler,
        which draws β and u jointly given θ (one Cholesky of at most 2,000 coefficients per
        sweep) and each σ by slice sampling, centered and non-centered in turn. ``gibbs`` asks
        for it on any such design; ``numpyro`` runs NumPyro's NUTS on PyMC's JAX backend (needs
        ``pip install jax numpyro``).
    draws, tune, chains : int
        With the Gibbs sampler ``tune`` sweeps per chain are discarded as burn-in.
    random_seed : int, optional
    target_accept : float, optional
        Default (:func:`default_target_accept`): marginal 0.95 for small designs (a factor
        with fewer than 10 levels, or fewer than 50 rows), else 0.9; the latent forms 0.99
        for small designs, 0.95 or 0.9 for larger ones.
    progressbar : bool
    residual : KnownSD, HeteroSD, AR1, CompoundSymmetry or Unstructured, optional
        The residual covariance R (default ``σ²_e I``): ``Var(y) = ZGZ' + R``. With matrices,
        ``KnownSD`` takes an array of the n SDs; the other structures name columns, so pass
        them to :func:`fit` with a data frame. ``auto`` then samples u (non-centered).

    Returns
    -------
    Fit

    Examples
    --------
    The notes' Example 1 with X and Z typed in:

    >>> import numpy as np
    >>> import bayes_lmm as bl
    >>> X = np.array([[1, 1, 0]] * 5 + [[1, 0, 1]] * 5, dtype=float)
    >>> Z = np.eye(4)[[0, 0, 0, 1, 1, 2, 2, 2, 3, 3]]
    >>> fit = bl.fit_matrices(data.weight, X, {"pot": Z}, x_names=["mu", "g1", "g2"],
    ...                       random_seed=1)
    >>> fit.contrast(np.array([[0, 1, -1], [1, 1, 0], [1, 0, 1]]))  # doctest: +SKIP
    """
    options = SamplerOptions(sampler=sampler, draws=draws, tune=tune, chains=chains,
                             random_seed=random_seed, target_accept=target_accept,
                             progressbar=progressbar)
    spec = ModelSpec(formula=None, coding="full", priors=normalize_priors(priors),
                     parameterization=parameterization)
    design = attach_residual(design_from_matrices(y, X, Z, x_names=x_names), residual)
    return run_design(spec, design, options)


def fit(
    formula: str, data: pd.DataFrame, *, coding: str = "treatment", factors: Sequence[str] = (),
    priors: Mapping[str, Any] | None = None, parameterization: str = "auto",
    sampler: str = "auto", draws: int = 1000, tune: int = 1000, chains: int = 4,
    random_seed: int | None = None, target_accept: float | None = None, progressbar: bool = True,
    residual: Any = None,
) -> Fit:
    """Fit an lme4-style formula such as ``y ~ genotype + (1|pot)`` by NUTS.

    Parameters
    ----------
    formula : str
        Fixed part as in formulae/patsy (``a * x``); random terms ``(1|g)``, ``(1|a/b)``
        (nested), ``(1 + x|g)`` (correlated, LKJ prior), ``(x||g)`` (uncorrelated).
        Only the transforms log, exp, sqrt, scale, center may be called, besides
        ``C(x, Treatment("b"))`` / ``C(x, levels=[…])`` (factor, reference level),
        ``I(x**2)`` (arithmetic, parsed, never executed) and ``Q("my col")`` or backticks
        (names that are not identifiers). ``|`` outside parentheses is an error.
    data : DataFrame
        Never modified.
    coding : {"treatment", "full"}
        ``treatment``: reference level dropped (labels like ``genotype[2]``); ``full``: the
        notes' overparameterized X (``Intercept, genotype[1], genotype[2]``).
    factors : sequence of str
        Numeric columns to treat as categorical in the fixed part (e.g. genotype coded 1, 2).
    priors, parameterization, sampler, draws, tune, chains, random_seed, target_accept, progressbar
        As in :func:`fit_matrices`.
    residual : IID, KnownSD, HeteroSD, AR1, CompoundSymmetry or Unstructured, optional
        The residual covariance R (default ``σ²_e I``), its columns read from ``data``; the
        formula may then have no random term (a Bayesian GLS). Its SDs are in
        :meth:`Fit.variance_components` (``Residual`` or ``Residual[level]``), its correlations
        in :meth:`Fit.residual_structure`; priors by ``Residual``, ``Residual[level]`` and
        ``residual_correlation``.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import pandas as pd
    >>> import bayes_lmm as bl
    >>> data = pd.read_csv("models/data/seedling.csv")
    >>> fit = bl.fit("weight ~ genotype + (1|pot)", data, coding="full",
    ...              factors=["genotype"], random_seed=1)
    >>> fit.contrast({"g1-g2": "genotype[1] - genotype[2]"})  # doctest: +SKIP
    >>> fit.variance_components()  # doctest: +SKIP
    """
    options = SamplerOptions(sampler=sampler, draws=draws, tune=tune, chains=chains,
                             random_seed=random_seed, target_accept=target_accept,
                             progressbar=progressbar)
    spec = ModelSpec(formula=formula, coding=coding, priors=normalize_priors(priors),
                     parameterization=parameterization, factors=tuple(factors))
    design = design_from_formula(formula, data, coding=coding, factors=factors)
    warn_integer_coded(design.formula, design.data, design.factor_columns)
    return run_design(spec, attach_residual(design, residual), options)


def reml(formula_or_matrices: Any, data: pd.DataFrame | None = None, *, coding: str = "treatment",
         factors: Sequence[str] = (), x_names: Sequence[str] | None = None,
         residual: Any = None) -> RemlResult:
    """REML estimates of the variance components and GLS estimates of Cβ (no sampling).

    Parameters
    ----------
    formula_or_matrices : str, (y, X, Z) tuple, or Design
        A formula (then ``data`` is required), a tuple ``(y, X, Z)`` as for
        :func:`fit_matrices`, or a prepared :class:`Design`.
    data : DataFrame, optional
    coding, factors : as in :func:`fit`
    x_names : as in :func:`fit_matrices`
    residual : IID, KnownSD, HeteroSD, AR1, CompoundSymmetry or Unstructured, optional
        The residual covariance R (default ``σ²_e I``), ``V = ZGZ' + R``. Its columns are read
        from ``data`` (with a tuple or a Design, pass ``data`` too, or a Design built from a
        formula); ``KnownSD`` also takes an array. The formula may then have no random term
        (generalized least squares).

    Returns
    -------
    RemlResult
        ``fixed_effects`` (estimate, se), ``variance_components`` (sd, variance; residual SDs
        labelled ``Residual`` or ``Residual[level]``), ``correlations``,
        ``residual_structure`` (ρ or ``corr(t1,t2)``), ``loglik`` and ``contrast(spec)``.

    Examples
    --------
    >>> import pandas as pd
    >>> import bayes_lmm as bl
    >>> sleep = pd.read_csv("models/data/sleepstudy.csv")
    >>> r = bl.reml("Reaction ~ Days + (1 + Days|Subject)", sleep)
    >>> r.variance_components  # doctest: +SKIP
    >>> r.contrast("Intercept + Days")  # doctest: +SKIP
    >>> bl.reml("Reaction ~ Days + (1|Subject)", sleep,
    ...         residual=bl.AR1("Days", "Subject")).residual_structure  # doctest: +SKIP
    """
    if isinstance(formula_or_matrices, Design):
        design = formula_or_matrices
    elif isinstance(formula_or_matrices, str):
        if data is None:
            raise SpecificationError("bl.reml(formula, data): data is required with a formula")
        design = design_from_formula(formula_or_matrices, data, coding=coding, factors=factors)
        warn_integer_coded(design.formula, design.data, design.factor_columns)
    elif isinstance(formula_or_matrices, tuple) and len(formula_or_matrices) == 3:
        y, X, Z = formula_or_matrices
        design = design_from_matrices(y, X, Z, x_names=x_names)
    else:
        raise SpecificationError("bl.reml takes a formula and data, a (y, X, Z) tuple, or a Design")
    design = attach_residual(design, residual, data)
    if design.residual is None:
        return reml_design(design)
    return reml_residual(design, design.residual)


def compare(fits: Mapping[str, Fit]) -> pd.DataFrame:
    """Rank fitted models by PSIS-LOO (ArviZ's ``compare``), best first, indexed by the given names.

    Parameters
    ----------
    fits : mapping of str to Fit
        At least two fits of the same y.

    Returns
    -------
    DataFrame
        ArviZ's comparison table (``elpd_loo``, ``p_loo``, ``elpd_diff``, ``weight``, ...).

    Examples
    --------
    >>> with_batch = bl.fit("Yield ~ 1 + (1|Batch)", dye, random_seed=1)  # doctest: +SKIP
    >>> without = bl.fit_matrices(dye.Yield, np.ones((len(dye), 1)), None,
    ...                           random_seed=1)  # doctest: +SKIP
    >>> bl.compare({"batch": with_batch, "no batch": without})  # doctest: +SKIP
    """
    import arviz as az

    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise SpecificationError("bl.compare takes a mapping of at least two names to fits")
    for name, f in fits.items():
        if not isinstance(f, Fit):
            raise SpecificationError(f"bl.compare: {name!r} is not a bl.Fit")
    ns = {f.design.n for f in fits.values()}
    if len(ns) != 1:
        raise SpecificationError(f"bl.compare: the fits have different numbers of observations {sorted(ns)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.compare({name: f.log_likelihood() for name, f in fits.items()})
