"""bayes_lmm: Bayesian linear mixed-effects models ``y = Xβ + Zu + e`` on PyMC and ArviZ.

>>> import bayes_lmm as bl
>>> fit = bl.fit("weight ~ genotype + (1|pot)", data, coding="full", factors=["genotype"])
>>> fit.contrast("genotype[1] - genotype[2]")
"""

from . import fit_methods as _fit_methods  # noqa: F401  (binds Fit.plot_* and Fit.save)
from .api import build, compare, fit, fit_matrices, reml, sample_prior, simulate
from .design import Design, design_from_formula, design_from_matrices
from .errors import BayesLMMError, DataError, EstimabilityError, SpecificationError
from .many import ManyFits, fit_many
from .persist import FileFormatError, load
from .reml import RemlResult
from .residual import AR1, IID, CompoundSymmetry, HeteroSD, KnownSD, Unstructured
from .results import Diagnostics, Fit
from .sampling import clear_compiled_cache
from .spec import (
    LKJ,
    Exponential,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    ModelSpec,
    Normal,
    Prior,
    StudentT,
)

__version__ = "0.1.0"

__all__ = [
    "fit", "fit_matrices", "fit_many", "ManyFits", "build", "reml", "RemlResult", "compare", "simulate", "sample_prior", "Fit", "Diagnostics", "Design", "design_from_formula",
    "design_from_matrices", "BayesLMMError", "DataError", "SpecificationError",
    "EstimabilityError", "FileFormatError", "load", "Prior", "Normal", "StudentT", "HalfNormal", "HalfStudentT",
    "HalfCauchy", "Exponential", "InverseGamma", "LKJ", "ModelSpec", "clear_compiled_cache",
    "IID", "KnownSD", "HeteroSD", "AR1", "CompoundSymmetry", "Unstructured",
]
