"""What the user asked for: priors, options and the model specification, as frozen values.

Nothing here looks at data; :mod:`bayes_lmm.design` turns a spec plus data into matrices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecificationError

#: prior families and their parameters, and what each may be placed on.
PRIOR_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "Normal": (("mu", "sigma"), "coefficient"),
    "StudentT": (("nu", "mu", "sigma"), "coefficient"),
    "HalfNormal": (("sigma",), "sd"),
    "HalfStudentT": (("nu", "sigma"), "sd"),
    "HalfCauchy": (("beta",), "sd"),
    "Exponential": (("lam",), "sd"),
    "InverseGamma": (("alpha", "beta"), "variance"),
    "LKJ": (("eta",), "correlation"),
}
_POSITIVE = {"sigma", "nu", "beta", "lam", "alpha", "eta"}

PARAMETERIZATIONS = ("auto", "noncentered", "centered", "marginal")
SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "gibbs")
CODINGS = ("treatment", "full")
NEW_GROUPS = ("sample", "zero", "error")


@dataclass(frozen=True)
class Prior:
    """A prior distribution, by family name and parameters.

    Parameters
    ----------
    family : str
        One of ``Normal``, ``StudentT`` (for β); ``HalfNormal``, ``HalfStudentT``,
        ``HalfCauchy``, ``Exponential`` (for a standard deviation σ); ``InverseGamma``
        (for a variance σ²); ``LKJ`` (for the correlation matrix of correlated random effects).
    params : mapping
        The family's parameters, named as in PyMC (``sigma``, ``nu``, ``beta``, ``lam``, ...).

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> bl.Prior("HalfNormal", (("sigma", 2.0),)) == bl.HalfNormal(2.0)
    True
    """

    family: str
    params: tuple[tuple[str, float], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.family not in PRIOR_FAMILIES:
            raise SpecificationError(
                f"unknown prior family {self.family!r}; choose one of {sorted(PRIOR_FAMILIES)}"
            )
        names, _ = PRIOR_FAMILIES[self.family]
        given = dict(self.params)
        missing = [p for p in names if p not in given]
        extra = [p for p in given if p not in names]
        if missing or extra:
            raise SpecificationError(
                f"prior {self.family} takes parameters {list(names)}; "
                f"missing {missing}, unknown {extra}"
            )
        for key, value in given.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SpecificationError(f"prior {self.family}: {key} must be a number, got {value!r}")
            if not math.isfinite(value) or (key in _POSITIVE and value <= 0):
                raise SpecificationError(
                    f"prior {self.family}: {key} must be finite"
                    + (" and positive" if key in _POSITIVE else "")
                    + f", got {value!r}"
                )
        # canonical order so that equal priors compare equal
        object.__setattr__(self, "params", tuple((p, float(given[p])) for p in names))

    @property
    def target(self) -> str:
        """What the prior is placed on: ``coefficient``, ``sd``, ``variance`` or ``correlation``."""
        return PRIOR_FAMILIES[self.family][1]

    def kwargs(self) -> dict[str, float]:
        """The parameters as keyword arguments for the PyMC distribution."""
        return dict(self.params)

    def __str__(self) -> str:
        inner = ", ".join(f"{k}={v:.4g}" for k, v in self.params)
        return f"{self.family}({inner})"

    @classmethod
    def from_value(cls, value: Any, *, key: str) -> Prior:
        """Accept a :class:`Prior` or a mapping ``{"dist": family, **params}`` (model cards)."""
        if isinstance(value, Prior):
            return value
        if isinstance(value, Mapping):
            params = dict(value)
            family = params.pop("dist", None)
            if family is None:
                raise SpecificationError(f"prior for {key!r} needs a 'dist' entry naming its family")
            return cls(str(family), tuple(params.items()))
        raise SpecificationError(
            f"prior for {key!r} must be a bl.Prior (e.g. bl.HalfNormal(10)) or a mapping, "
            f"got {type(value).__name__}"
        )


def Normal(mu: float = 0.0, sigma: float = 1.0) -> Prior:
    """Normal prior for a fixed effect β.

    Parameters
    ----------
    mu : float
        Mean.
    sigma : float
        Standard deviation.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> fit = bl.fit("weight ~ genotype + (1|pot)", data, factors=["genotype"],
    ...              priors={"fixed": bl.Normal(0, 10)})  # doctest: +SKIP
    """
    return Prior("Normal", (("mu", mu), ("sigma", sigma)))


def StudentT(nu: float, mu: float = 0.0, sigma: float = 1.0) -> Prior:
    """Student-t prior for a fixed effect β (keeps β sampled under the marginal form).

    Parameters
    ----------
    nu : float
        Degrees of freedom.
    mu : float
        Location.
    sigma : float
        Scale.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> bl.StudentT(3, 0, 10).family
    'StudentT'
    """
    return Prior("StudentT", (("nu", nu), ("mu", mu), ("sigma", sigma)))


def HalfNormal(sigma: float) -> Prior:
    """Half-normal prior for a standard deviation σ.

    Parameters
    ----------
    sigma : float
        Scale of the half-normal.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> fit = bl.fit("weight ~ genotype + (1|pot)", data, factors=["genotype"],
    ...              priors={"pot": bl.HalfNormal(2.0)})  # doctest: +SKIP
    """
    return Prior("HalfNormal", (("sigma", sigma),))


def HalfStudentT(nu: float, sigma: float) -> Prior:
    """Half-Student-t prior for a standard deviation σ.

    Parameters
    ----------
    nu : float
        Degrees of freedom.
    sigma : float
        Scale.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> priors = {"random": bl.HalfStudentT(3, 1.0)}
    """
    return Prior("HalfStudentT", (("nu", nu), ("sigma", sigma)))


def HalfCauchy(beta: float) -> Prior:
    """Half-Cauchy prior for a standard deviation σ (scale ``beta``).

    Parameters
    ----------
    beta : float
        Scale.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> priors = {"1|pot": bl.HalfCauchy(1.0)}
    """
    return Prior("HalfCauchy", (("beta", beta),))


def Exponential(lam: float) -> Prior:
    """Exponential prior for a standard deviation σ (rate ``lam``, mean ``1/lam``).

    Parameters
    ----------
    lam : float
        Rate.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> priors = {"Residual": bl.Exponential(1.0)}
    """
    return Prior("Exponential", (("lam", lam),))


def InverseGamma(alpha: float, beta: float) -> Prior:
    """Inverse-gamma prior placed on a variance σ² (not on σ).

    Parameters
    ----------
    alpha : float
        Shape.
    beta : float
        Scale.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> priors = {"pot": bl.InverseGamma(2.0, 1.0)}  # a prior on σ²_pot
    """
    return Prior("InverseGamma", (("alpha", alpha), ("beta", beta)))


def LKJ(eta: float = 2.0) -> Prior:
    """LKJ prior on the correlation matrix of correlated random effects (η = 1 is uniform).

    Parameters
    ----------
    eta : float
        Concentration; larger η pulls the correlations towards 0.

    Returns
    -------
    Prior

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> fit = bl.fit("Reaction ~ Days + (1 + Days|Subject)", sleep,
    ...              priors={"correlation": bl.LKJ(4.0)})  # doctest: +SKIP
    """
    return Prior("LKJ", (("eta", eta),))


@dataclass(frozen=True)
class SamplerOptions:
    """How to run NUTS. Every option is explicit; ``random_seed=None`` means fresh entropy."""

    sampler: str = "auto"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    random_seed: int | None = None
    target_accept: float | None = None
    progressbar: bool = True
    #: threads for the chains; None → one per chain up to the CPU count (fit_many uses 1 per worker)
    cores: int | None = None

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SpecificationError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            low = 0 if name == "tune" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SpecificationError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.random_seed is not None and (
            not isinstance(self.random_seed, int) or isinstance(self.random_seed, bool)
            or self.random_seed < 0
        ):
            raise SpecificationError(f"random_seed must be a non-negative integer or None, got {self.random_seed!r}")
        if self.cores is not None and (not isinstance(self.cores, int) or isinstance(self.cores, bool)
                                       or self.cores < 1):
            raise SpecificationError(f"cores must be a positive integer or None, got {self.cores!r}")
        if self.target_accept is not None and not (0.5 <= float(self.target_accept) < 1.0):
            raise SpecificationError(f"target_accept must lie in [0.5, 1), got {self.target_accept!r}")


@dataclass(frozen=True)
class ModelSpec:
    """The model the user asked for, independent of how it is sampled.

    Attributes
    ----------
    formula : str or None
        lme4-style formula, or None for the explicit-matrix path.
    coding : str
        ``treatment`` (reference level dropped) or ``full`` (the notes' overparameterized X).
    priors : tuple of (key, Prior)
        User overrides; everything else is auto-scaled by :mod:`bayes_lmm.priors`.
    parameterization : str
        ``noncentered``, ``centered``, ``marginal`` or ``auto``.
    factors : tuple of str
        Numeric columns treated as factors in the fixed part.

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> spec = bl.ModelSpec(formula="weight ~ genotype + (1|pot)", coding="full",
    ...                     factors=("genotype",))
    >>> spec.parameterization
    'auto'
    """

    formula: str | None = None
    coding: str = "treatment"
    priors: tuple[tuple[str, Prior], ...] = ()
    parameterization: str = "auto"
    factors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.coding not in CODINGS:
            raise SpecificationError(f"coding must be one of {CODINGS}, got {self.coding!r}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise SpecificationError(
                f"parameterization must be one of {PARAMETERIZATIONS}, got {self.parameterization!r}"
            )

    @property
    def prior_overrides(self) -> dict[str, Prior]:
        return dict(self.priors)


def normalize_priors(priors: Mapping[str, Any] | None) -> tuple[tuple[str, Prior], ...]:
    """Check the user's ``priors=`` mapping and freeze it into (key, Prior) pairs."""
    if priors is None:
        return ()
    if not isinstance(priors, Mapping):
        raise SpecificationError(
            f"priors must be a mapping from a name (a column of X, a variance component, "
            f"'fixed', 'random', 'Residual', 'correlation') to a prior; got {type(priors).__name__}"
        )
    out = []
    for key, value in priors.items():
        if not isinstance(key, str):
            raise SpecificationError(f"prior keys must be strings, got {key!r}")
        out.append((key, Prior.from_value(value, key=key)))
    return tuple(out)
