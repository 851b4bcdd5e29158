"""Figures that teach: predictive checks, how uncertain variance components are, shrinkage.

Every function returns a matplotlib Figure and never shows it: the figure is closed in
pyplot's figure manager as soon as it is drawn, so a notebook shows it once, through the
returned Figure (the cell's last line), and not a second time when the cell ends; save it
with ``fig.savefig``. The intercept (a constant column of X) sits on an axis of its own,
since its scale is that of y, not of the effects. Layouts are constrained so that titles
and tick labels do not overlap.
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
    return _finish(ax.get_figure())


def _finish(fig):
    """Take ``fig`` out of pyplot's figure manager: the inline backend then does not draw it
    again at the end of the cell (the returned Figure still displays through its repr)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return fig


def intercept_columns(X: np.ndarray) -> list[int]:
    """Indices of the constant, nonzero columns of X (the intercept, whatever its name)."""
    X = np.asarray(X)
    return [j for j in range(X.shape[1]) if X[0, j] != 0 and np.all(X[:, j] == X[0, j])]


def _chains(fit: Fit, var: str) -> tuple[np.ndarray, list[str]]:
    """Draws of ``var`` as (chain, draw, k) and the labels of its last dimension."""
    da = fit.idata.posterior[var]
    arr = da.to_numpy()
    if arr.ndim == 2:
        return arr[:, :, None], [var]
    return arr.reshape(arr.shape[0], arr.shape[1], -1), [str(v) for v in da.coords[da.dims[2]].to_numpy()]


def _panels(fit: Fit, *, beta: bool, intercept: bool, sigma: bool, correlation: bool,
            contrasts: bool = False) -> list[tuple[str, np.ndarray, list[str]]]:
    """(title, draws as (chain, draw, k), labels) for each group of parameters on one scale."""
    out = []
    if beta:
        draws, labels = _chains(fit, "beta")
        icpt = intercept_columns(fit.design.X)
        rest = [j for j in range(len(labels)) if j not in icpt]
        if intercept and icpt:
            out.append(("β: intercept", draws[:, :, icpt], [labels[j] for j in icpt]))
        if rest:
            out.append(("β: fixed effects", draws[:, :, rest], [labels[j] for j in rest]))
    if sigma:
        draws, labels = _chains(fit, "sigma")
        out.append(("σ: standard deviations", draws, labels))
    if correlation and "correlation" in fit.idata.posterior:
        draws, labels = _chains(fit, "correlation")
        out.append(("random-effect correlations", draws, labels))
    if contrasts and "contrasts" in fit.idata.posterior:
        draws, labels = _chains(fit, "contrasts")
        out.append(("contrasts Cβ", draws, labels))
    return out


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
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False,
                             layout="constrained")
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
        ax.legend(fontsize="small")
    return _finish(fig)


def plot_forest(fit: Fit, *, prob: float = 0.95, intercept: bool = True, sigma: bool = False,
                contrasts: bool = False):
    """Forest plot: posterior median, 50% and ``prob`` equal-tailed intervals of β.

    One panel per scale, each with its own x axis: the intercept (a constant column of X;
    ``intercept=False`` leaves it out), the other columns of X, and on request the σ of
    every component (``sigma=True``) and the contrasts stored by ``fit.contrast(..., store=True)``
    (``contrasts=True``; never shown otherwise, so earlier contrasts do not appear).
    """
    import matplotlib.pyplot as plt

    panels = _panels(fit, beta=True, intercept=intercept, sigma=sigma, correlation=False,
                     contrasts=contrasts)
    if not panels:
        raise SpecificationError("nothing to plot: the model's only fixed effect is the intercept "
                                 "and intercept=False")
    sizes = [len(labels) for _, _, labels in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 0.9 + 0.35 * sum(sizes) + 0.5 * len(panels)),
                             height_ratios=[n + 0.8 for n in sizes], squeeze=False, layout="constrained")
    a = (1 - prob) / 2
    for ax, (title, draws, labels) in zip(axes[:, 0], panels):
        flat = draws.reshape(-1, draws.shape[-1])
        lo, q25, med, q75, hi = np.quantile(flat, [a, 0.25, 0.5, 0.75, 1 - a], axis=0)
        pos = np.arange(len(labels))
        ax.hlines(pos, lo, hi, color="C0", lw=1.2, label=f"{prob:.0%} interval")
        ax.hlines(pos, q25, q75, color="C0", lw=3.5, label="50% interval")
        ax.plot(med, pos, "o", color="white", mec="C0", label="median")
        ax.set_yticks(pos, labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        if title.startswith(("β: fixed", "contrasts")) and lo.min() < 0 < hi.max():
            ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(title, loc="left", fontsize="medium")
    # below the panels, where it covers no interval
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize="small", frameon=False)
    return _finish(fig)


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
    return _finish(fig)


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
    return _finish(fig)


def plot_trace(fit: Fit, *, beta: bool = True):
    """Trace plot: per row, the posterior density (left) and the draws of every chain (right)
    of one group of parameters on a common scale, with a legend naming each.

    Rows: the intercept, the other β (with ``beta=True``), the σ of every variance component
    and ``Residual``, and the random-effect correlations if the model has any. Colours tell
    the parameters apart, line styles the chains.
    """
    import matplotlib.pyplot as plt

    panels = _panels(fit, beta=beta, intercept=True, sigma=True, correlation=True)
    fig, axes = plt.subplots(len(panels), 2, figsize=(10, 2.3 * len(panels)), squeeze=False,
                             width_ratios=[1, 1.6], layout="constrained")
    styles = ["-", "--", ":", "-."]
    for (left, right), (title, draws, labels) in zip(axes, panels):
        n_chain = draws.shape[0]
        for j, label in enumerate(labels):
            colour = f"C{j % 10}"
            left.hist(draws[:, :, j].ravel(), bins=40, density=True, histtype="step", color=colour,
                      lw=1.4, label=label)
            for c in range(n_chain):
                right.plot(draws[c, :, j], color=colour, lw=0.6, alpha=0.7, ls=styles[c % len(styles)])
        left.set_title(f"{title}: posterior", loc="left", fontsize="medium")
        right.set_title(f"{title}: draws of {n_chain} chains", loc="left", fontsize="medium")
        right.set_xlabel("draw")
        left.set_yticks([])
        left.legend(fontsize="small", ncol=1 + len(labels) // 6)
    return _finish(fig)


def plot_diagnostics(fit: Fit, kind: str = "trace"):
    """Trace (``trace``, see :func:`plot_trace`) or rank (``rank``, ArviZ) plots of β and σ."""
    import arviz as az

    if kind == "trace":
        return plot_trace(fit)
    if kind == "rank":
        return _figure(az.plot_rank(fit.idata, var_names=["sigma"]))
    raise SpecificationError(f"kind must be 'trace' or 'rank', got {kind!r}")


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
    return _finish(fig)
