"""The methods of :class:`~bayes_lmm.results.Fit` that live above it: plots and saving.

The import rule puts :mod:`.results` below :mod:`.plots` and :mod:`.persist` (both take a
Fit), so ``results`` cannot import them; this module, imported by the package itself, binds
the thin methods ``Fit.plot_*`` and ``Fit.save`` that delegate to them. Every method is
defined here once, at import of :mod:`bayes_lmm`; nothing is changed later.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import persist as _persist
from . import plots as _plots
from .results import Fit


def plot_ppc(self: Fit, *, num_pp_samples: int = 50, random_seed: int | None = None):
    """See :func:`bayes_lmm.plots.plot_ppc`."""
    return _plots.plot_ppc(self, num_pp_samples=num_pp_samples, random_seed=random_seed)


def plot_variance_components(self: Fit, *, random_seed: int | None = None):
    """See :func:`bayes_lmm.plots.plot_variance_components`."""
    return _plots.plot_variance_components(self, random_seed=random_seed)


def plot_forest(self: Fit, *, prob: float = 0.95, intercept: bool = True, sigma: bool = False,
                contrasts: bool = False):
    """See :func:`bayes_lmm.plots.plot_forest`."""
    return _plots.plot_forest(self, prob=prob, intercept=intercept, sigma=sigma, contrasts=contrasts)


def plot_shrinkage(self: Fit, factor: str | None = None):
    """See :func:`bayes_lmm.plots.plot_shrinkage`."""
    return _plots.plot_shrinkage(self, factor)


def plot_var_y(self: Fit, rows: Sequence[int] | None = None):
    """See :func:`bayes_lmm.plots.plot_var_y`."""
    return _plots.plot_var_y(self, rows)


def plot_diagnostics(self: Fit, kind: str = "trace"):
    """See :func:`bayes_lmm.plots.plot_diagnostics`."""
    return _plots.plot_diagnostics(self, kind)


def plot_check(self: Fit, statistics: Sequence[str] = ("sd_group_means",), groups=None, *,
               random_seed: int | None = None):
    """See :func:`bayes_lmm.plots.plot_check`."""
    return _plots.plot_check(self, statistics, groups, random_seed=random_seed)


def save(self: Fit, path) -> Path:
    """Write the fit (InferenceData, spec, design inputs, seed) to one NetCDF file; see :func:`bl.load`."""
    return _persist.save(self, path)


METHODS = (plot_ppc, plot_variance_components, plot_forest, plot_shrinkage, plot_var_y, plot_diagnostics,
           plot_check, save)
for _method in METHODS:
    setattr(Fit, _method.__name__, _method)
