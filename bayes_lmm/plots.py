"""Figures that teach: predictive checks, how uncertain variance components are, shrinkage.

Every function returns a matplotlib Figure and never shows it. They are built on ArviZ where
ArviZ has the plot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .checks import check_table, grouping_codes
from .errors import SpecificationError

if TYPE_CHECKING:  # pragma: no cover
    from .results import Fit


def _figure(axes):
    ax = np.asarray(axes).ravel()[0]
    return ax.get_figure()


def prior_draws(prior, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draws of a standard deviation from its prior (a variance prior is square-rooted)."""
    kw = prior.kwargs()
    fam = prior.family
    if fam == "HalfNormal":
        return np.abs(rng.normal(0, kw["sigma"], size))
    if fam == "HalfStudentT":
        return np.abs(kw["sigma"] * rng.standard_t(kw["nu"], size))
    if fam == "HalfCauchy":
        return np.abs(kw["beta"] * rng.standard_cauchy(size))
    if fam == "Exponential":
        return rng.exponential(1.0 / kw["lam"], size)
    if fam == "InverseGamma":
        return np.sqrt(kw["beta"] / rng.gamma(kw["alpha"], 1.0, size))
    raise SpecificationError(f"no draws for prior family {fam}")


def plot_ppc(fit: Fit, *, num_pp_samples: int = 50, random_seed: int | None = None):
    """Density of the observed y over densities of replicated data sets."""
    import arviz as az

    if "posterior_predictive" not in fit.idata.groups():
        fit.posterior_predictive(random_seed=random_seed)
    axes = az.plot_ppc(fit.idata, num_pp_samples=num_pp_samples, random_seed=random_seed)
    return _figure(axes)


def plot_variance_components(fit: Fit, *, random_seed: int | None = None):
    """Prior against posterior of every σ: how much the data taught us about each component."""
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(random_seed)
    names = fit.component_names
    sigma = fit.draws("sigma")
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    priors = dict(fit.prior_set.components)
    priors["Residual"] = fit.prior_set.residual
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        post = sigma[:, j]
        prior = prior_draws(priors[name], 20000, rng)
        hi = np.quantile(np.concatenate([post, prior]), 0.99)
        bins = np.linspace(0, hi, 60)
        ax.hist(prior, bins=bins, density=True, alpha=0.4, label="prior", color="grey")
        ax.hist(post, bins=bins, density=True, alpha=0.6, label="posterior", color="C0")
        ax.set_title(f"σ {name}")
        ax.set_xlabel("standard deviation")
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def plot_forest(fit: Fit, *, prob: float = 0.95, contrasts: bool = True):
    """Forest plot of the fixed effects and of the contrasts stored so far (``fit.contrast(..., store=True)``)."""
    import arviz as az

    names = ["beta"] + (["contrasts"] if contrasts and "contrasts" in fit.idata.posterior else [])
    axes = az.plot_forest(fit.idata, var_names=names, combined=True, hdi_prob=prob)
    return _figure(axes)


def plot_shrinkage(fit: Fit, factor: str | None = None):
    """Raw group means (centred) against posterior means of the group's random intercepts."""
    import matplotlib.pyplot as plt

    design = fit.design
    blocks = [b for b in design.blocks if b.dense is None and (factor is None or b.group == factor)]
    if not blocks:
        raise SpecificationError(f"no random factor {factor!r} with index form to plot")
    blk = blocks[0]
    offset = sum(b.n_levels * b.n_coefs for b in design.blocks[: design.blocks.index(blk)])
    u = fit.draws("u")[:, offset : offset + blk.n_levels * blk.n_coefs].reshape(-1, blk.n_levels, blk.n_coefs)
    post = u[:, :, 0].mean(axis=0)
    resid = design.y - design.X @ np.median(fit.draws("beta"), axis=0)
    raw = np.bincount(blk.index, weights=resid, minlength=blk.n_levels) / np.maximum(
        np.bincount(blk.index, minlength=blk.n_levels), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    lim = np.max(np.abs(np.concatenate([raw, post]))) * 1.1
    ax.plot([-lim, lim], [-lim, lim], color="grey", lw=1, ls="--", label="no shrinkage")
    ax.scatter(raw, post, color="C0")
    for r, p in zip(raw, post):
        ax.plot([r, r], [r, p], color="C0", alpha=0.3)
    ax.set_xlabel("raw group mean of y − Xβ̂")
    ax.set_ylabel(f"posterior mean of u ({blk.group}, {blk.coef_names[0]})")
    ax.set_title(f"Shrinkage of {blk.group} effects")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_var_y(fit: Fit, rows: Sequence[int] | None = None):
    """Heatmap of the posterior mean of Var(y) = ZGZ' + R for chosen rows."""
    import matplotlib.pyplot as plt

    vy = fit.var_y(rows=rows)
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(vy.mean.to_numpy(), cmap="viridis")
    ax.set_xticks(range(len(vy.mean)), vy.mean.columns, rotation=90)
    ax.set_yticks(range(len(vy.mean)), vy.mean.index)
    ax.set_title("posterior mean of Var(y)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def plot_diagnostics(fit: Fit, kind: str = "trace"):
    """Trace (``trace``) or rank (``rank``) plots of β and σ."""
    import arviz as az

    if kind == "trace":
        axes = az.plot_trace(fit.idata, var_names=["beta", "sigma"])
    elif kind == "rank":
        axes = az.plot_rank(fit.idata, var_names=["sigma"])
    else:
        raise SpecificationError(f"kind must be 'trace' or 'rank', got {kind!r}")
    return _figure(axes)


def plot_check(fit: Fit, statistics: Sequence[str] = ("sd_group_means",), groups=None,
               random_seed: int | None = None):
    """Histograms of replicated test statistics with the observed value marked."""
    import matplotlib.pyplot as plt

    from .checks import STATISTICS

    y_rep = fit.replicated(random_seed=random_seed)
    codes = grouping_codes(fit.design, groups)
    table = check_table(fit.design.y, y_rep, codes, statistics)
    fig, axes = plt.subplots(1, len(table), figsize=(3.6 * len(table), 3.0), squeeze=False)
    for ax, (_, row) in zip(axes[0], table.iterrows()):
        grouped, fn = STATISTICS[row["statistic"]]
        c = codes[row["group"]] if grouped else np.zeros(fit.design.n, dtype=int)
        ax.hist(fn(y_rep, c, int(c.max()) + 1), bins=40, color="grey", alpha=0.7)
        ax.axvline(row["observed"], color="C3", lw=2)
        ax.set_title(f"{row['statistic']} | {row['group']}\np = {row['p_value']:.3f}")
    fig.tight_layout()
    return fig
