"""The :class:`Fit`: spec, design, priors and InferenceData, with the summaries users read.

Every table is a pandas DataFrame indexed by the names users wrote (columns of X, variance
components, contrast labels). Interval arguments: ``prob`` (mass) and ``interval``
(``"eti"`` equal-tailed, ``"hdi"`` highest density).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from . import checks as _checks
from . import contrasts as _contrasts
from . import diagnostics as _diagnostics
from . import display as _display
from . import marginal as _marginal
from . import plots as _plots
from . import variance as _variance
from .design import RESIDUAL, Design, _row_selection, new_data_blocks
from .diagnostics import ESS_MIN_PER_CHAIN, RHAT_MAX, Diagnostics  # noqa: F401 - re-exported
from .errors import DataError, SpecificationError
from .formula import parse_formula
from .graph import integrates_beta
from .priors import PriorSet
from .reml import reml_design
from .spec import NEW_GROUPS, ModelSpec, SamplerOptions


@dataclass(frozen=True)
class VarY:
    """Posterior summary of Var(y) for chosen rows: three row × row tables."""

    mean: pd.DataFrame
    lower: pd.DataFrame
    upper: pd.DataFrame


class Fit:
    """A fitted Bayesian linear mixed model.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` holds ``beta`` (dim ``coef``), ``sigma`` (dim ``component``: each σ_j
        and σ_e as ``Residual``), ``u`` (dim ``u``) and, for correlated random effects,
        ``correlation``; also ``sample_stats`` and ``observed_data``.
    design : Design
        y, X (``design.X``, ``design.x_names``), the random blocks, dense ``design.Z``.
    spec : ModelSpec
    options : SamplerOptions
    parameterization : str
        The parameterization actually used (``auto`` resolved).
    sampler : str
        The sampler actually used.
    """

    def __init__(self, *, spec: ModelSpec, options: SamplerOptions, design: Design,
                 prior_set: PriorSet, idata: az.InferenceData, parameterization: str,
                 sampler: str, target_accept: float):
        self.spec = spec
        self.options = options
        self.design = design
        self.prior_set = prior_set
        self.idata = idata
        self.parameterization = parameterization
        self.sampler = sampler
        self.target_accept = target_accept
        self._contrast_draws: dict[str, np.ndarray] = {}
        self._diagnostics: Diagnostics | None = None  # computed once: the draws never change
        self._high_pareto_k: tuple = ()  # rows loo() found influential

    # ------------------------------------------------------------------ draws
    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of a variable with chains and draws flattened: shape (S, …)."""
        if name not in self.idata.posterior:
            raise SpecificationError(f"the posterior has no variable {name!r}")
        arr = self.idata.posterior[name].to_numpy()
        return arr.reshape((-1,) + arr.shape[2:])

    @property
    def n_draws(self) -> int:
        post = self.idata.posterior
        return int(post.sizes["chain"] * post.sizes["draw"])

    @property
    def priors(self) -> pd.DataFrame:
        """The priors that were used, one row per parameter."""
        return self.prior_set.table()

    @property
    def component_names(self) -> list[str]:
        return list(self.design.components) + [RESIDUAL]

    # ------------------------------------------------------------------ tables
    def _ess_rhat(self, var: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data = self.idata.posterior[[var]]
        bulk = az.ess(data, method="bulk")[var].to_numpy()
        tail = az.ess(data, method="tail")[var].to_numpy()
        rhat = az.rhat(data)[var].to_numpy()
        return bulk, tail, rhat

    def fixed_effects(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Posterior of β: one row per column of X.

        Columns: ``mean, sd, median, lower, upper, ess_bulk, ess_tail, r_hat`` and
        ``estimable`` (False for a coefficient that alone is not estimable, e.g. γ1 under
        the notes' full coding: its posterior then reflects the prior, not the data).
        """
        beta = self.draws("beta")
        table = _contrasts.summarize(beta, self.design.x_names, prob=prob, interval=interval)
        table.index.name = "term"
        bulk, tail, rhat = self._ess_rhat("beta")
        table["ess_bulk"], table["ess_tail"], table["r_hat"] = bulk, tail, rhat
        P = _contrasts.row_space_projector(self.design.X)
        eye = np.eye(self.design.p)
        table["estimable"] = np.linalg.norm(eye - eye @ P, axis=1) < 1e-8
        return table[["mean", "sd", "median", "lower", "upper", "ess_bulk", "ess_tail", "r_hat", "estimable"]]

    def variance_components(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """One row per variance component plus ``Residual``.

        Columns: ``sd_mean, sd_median, sd_lower, sd_upper``, the same for ``variance``
        (σ²) and ``fraction``, and ``ess_bulk, r_hat`` of σ. ``fraction`` is the component's
        share of the mean over the rows of Var(y_i) = diag(ZGZ')_i + σ_e²: σ_j² for a random
        intercept, σ_j²·mean(x²) for a slope on x, and half of each covariance term
        2ρσσ'·mean(x) to each of the two correlated coefficients, so the fractions sum to 1
        and do not depend on the covariate's units (see :func:`variance.fraction_draws`).
        """
        sigma = self.draws("sigma")
        fractions = _variance.fraction_draws(self.design, sigma, self._corr_draws())
        table = _variance.variance_table(sigma, self.component_names, prob=prob, interval=interval,
                                         fractions=fractions)
        bulk, _, rhat = self._ess_rhat("sigma")
        table["ess_bulk"], table["r_hat"] = bulk, rhat
        return table

    def variance_ratio(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """σ_j²/σ_e² for each component: the notes' ratio that, if known, gives the Aitken model."""
        sigma = self.draws("sigma")
        ratio = sigma[:, :-1] ** 2 / sigma[:, -1:] ** 2
        out = _contrasts.summarize(ratio, self.design.components, prob=prob, interval=interval)
        out.index.name = "component"
        return out[["mean", "median", "sd", "lower", "upper"]]

    def icc(self, prob: float = 0.95, *, interval: str = "eti",
            at: dict[str, Any] | None = None) -> pd.DataFrame:
        """Intraclass correlations, one row per random factor.

        The correlation of two observations sharing that factor's level (and, for a nested
        factor, therefore its outer levels): for the notes' Example 2, ``(ℓ + a)/(ℓ + a + e)``
        for two samples of one animal and ``ℓ/(ℓ + a + e)`` for two animals of one litter.

        With random slopes the ICC depends on the covariates: it is given for two
        observations that both have the covariate values ``at`` (default: 0 for each
        numeric covariate of a random term, a factor's first level), e.g. for
        ``(Days|Subject)`` Var(u0 + x·u1) / (Var(u0 + x·u1) + σ_e²) at x = ``at["Days"]``,
        per draw with the correlation. Such tables gain a column ``at`` (``"Days=0"``).
        """
        d, label = self._icc_draws(at)
        draws = np.column_stack(list(d.values()))
        out = _contrasts.summarize(draws, list(d), prob=prob, interval=interval)
        out.index.name = "component"
        out = out[["mean", "median", "sd", "lower", "upper"]]
        return out if label is None else out.assign(at=label)

    def _icc_draws(self, at: dict[str, Any] | None) -> tuple[dict[str, np.ndarray], str | None]:
        sigma = self.draws("sigma")
        if self.design.data is not None and _variance.slope_covariates(self.design):
            return _variance.icc_at_draws(self.design, sigma, self._corr_draws(), at or {})
        if at:
            raise SpecificationError("at= sets the covariates of random slopes; this model has none")
        d = _variance.icc_draws(self.design, sigma, self.component_names)
        if not d:
            raise SpecificationError(
                "the model's random blocks are not random intercepts (explicit Z with "
                "non-indicator values), so there is no ICC"
            )
        return d, None

    def random_effects(self, prob: float = 0.95, *, interval: str = "eti", group: str | None = None,
                       levels: Sequence[Any] | None = None) -> pd.DataFrame:
        """Posterior of each entry of u (the BLUP-like predicted random effects).

        ``group`` keeps one grouping factor (``"Subject"``, ``"litter:animal"``) and ``levels``
        some of its levels; an unknown factor or level raises :class:`SpecificationError`.
        """
        if "u" not in self.idata.posterior:
            raise SpecificationError("the model has no random effects")
        if levels is not None and group is None:
            raise SpecificationError("levels= needs group=<factor> to say whose levels they are")
        keep = slice(None) if group is None else _variance.u_positions(self.design, group, levels)
        labels = list(np.asarray(self.design.u_labels, dtype=object)[keep])
        out = _contrasts.summarize(self.draws("u")[:, keep], labels, prob=prob, interval=interval)
        out.index.name = "u"
        return out[["mean", "median", "sd", "lower", "upper"]]

    def random_effect_correlations(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Correlations between correlated random effects, e.g. ``(1,Days)|Subject``."""
        if "correlation" not in self.idata.posterior:
            raise SpecificationError(
                "the model has no correlated random effects; write (1 + x | g) to model them"
            )
        labels = list(self.idata.posterior["correlation"].coords["correlation_pair"].to_numpy())
        out = _contrasts.summarize(self.draws("correlation"), labels, prob=prob, interval=interval)
        out.index.name = "correlation"
        bulk, _, rhat = self._ess_rhat("correlation")
        out["ess_bulk"], out["r_hat"] = bulk, rhat
        return out.drop(columns=["prob_positive"])

    # ------------------------------------------------------------------ contrasts
    def contrast(self, spec: Any = None, prob: float = 0.95, *, pairwise: str | None = None,
                 interval: str = "eti", rope: tuple[float, float] | None = None) -> pd.DataFrame:
        """Posterior of estimable functions Cβ.

        Parameters
        ----------
        spec : str, list of str, mapping, array or DataFrame
            ``"genotype[1] - genotype[2]"``; ``{"mu+g1": "Intercept + genotype[1]"}``;
            a C matrix with one row per contrast and one column per column of X; a mapping
            label → coefficient vector.
        prob : float
            Interval mass.
        pairwise : str, optional
            A factor of the formula: all pairwise differences of its marginal means
            (averaged over the other factors, as emmeans does). Instead of ``spec``.
        interval : {"eti", "hdi"}
        rope : (low, high), optional
            Region of practical equivalence; adds ``prob_in_rope``.

        Returns
        -------
        DataFrame
            One row per contrast: ``mean, median, sd, lower, upper, prob_positive``
            (and ``prob_in_rope``). The draws are also stored in ``idata.posterior`` as
            ``contrasts`` (dim ``contrast``) for ArviZ's own plots and summaries;
            :meth:`plot_forest` shows them only with ``contrasts=True``.

        Raises
        ------
        EstimabilityError
            If a row of C is not in the row space of X; the message names the contrast.
        """
        if (spec is None) == (pairwise is None):
            raise SpecificationError("give either a contrast spec or pairwise=<factor>, not both or neither")
        if pairwise is not None:
            labels, C = self._pairwise_matrix(pairwise)
        else:
            labels, C = _contrasts.contrast_matrix(spec, self.design.x_names)
        _contrasts.check_estimable(labels, C, self.design.X, self.design.x_names)
        draws = self.draws("beta") @ C.T
        self._store_contrasts(labels, draws)
        return _contrasts.summarize(draws, labels, prob=prob, interval=interval, rope=rope)

    def _store_contrasts(self, labels: Sequence[str], draws: np.ndarray) -> None:
        for j, lab in enumerate(labels):
            self._contrast_draws[lab] = draws[:, j]
        post = self.idata.posterior
        shape = (post.sizes["chain"], post.sizes["draw"])
        names = list(self._contrast_draws)
        stacked = np.stack([self._contrast_draws[n].reshape(shape) for n in names], axis=-1)
        da = xr.DataArray(stacked, dims=("chain", "draw", "contrast"),
                          coords={"chain": post["chain"], "draw": post["draw"], "contrast": names})
        post = post.drop_vars(["contrasts", "contrast"], errors="ignore")
        self.idata.posterior = post.assign(contrasts=da)

    def _reference_grid(self, factors: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
        design = self.design
        if design.fixed_encoder is None or design.data is None:
            raise SpecificationError(
                "marginal means and pairwise contrasts need a model fitted from a formula "
                "(bl.fit); for explicit X give the contrast as a C matrix"
            )
        data = design.data
        for f in factors:
            if f not in data.columns:
                raise SpecificationError(f"{f!r} is not a column of the data")
        names = set(parse_formula(design.formula).fixed_columns)
        fixed_cols = [c for c in data.columns if c in names]
        cat = [c for c in fixed_cols if not pd.api.types.is_numeric_dtype(data[c])
               or isinstance(data[c].dtype, pd.CategoricalDtype)]
        for f in factors:
            if f not in cat:
                raise SpecificationError(
                    f"{f!r} is not a categorical fixed-effect factor of the model; factors are {cat}"
                )
        levels = {c: list(pd.Categorical(data[c]).categories) for c in cat}
        grid = pd.DataFrame(list(itertools.product(*levels.values())), columns=list(levels))
        for c in fixed_cols:
            if c not in cat:
                grid[c] = float(data[c].mean())
        for c in data.columns:
            if c not in grid.columns:
                grid[c] = data[c].iloc[0]
        for c in cat:
            grid[c] = pd.Categorical(grid[c], categories=levels[c])
        return grid, cat

    def marginal_means(self, factors: str | Sequence[str], prob: float = 0.95, *,
                       interval: str = "eti") -> pd.DataFrame:
        """Posterior of the mean of each level (or cell) of one or more factors.

        The reference grid crosses all levels of the categorical fixed factors, holds numeric
        covariates at their means and sets random effects to zero; means are averaged
        equally over the factors not asked for (as emmeans does).
        """
        labels, C = self._marginal_matrix(factors)
        _contrasts.check_estimable(labels, C, self.design.X, self.design.x_names)
        out = _contrasts.summarize(self.draws("beta") @ C.T, labels, prob=prob, interval=interval)
        out.index.name = "level"
        return out[["mean", "median", "sd", "lower", "upper"]]

    def _marginal_matrix(self, factors: str | Sequence[str]) -> tuple[list[str], np.ndarray]:
        factors = [factors] if isinstance(factors, str) else list(factors)
        grid, _ = self._reference_grid(factors)
        Xg = self.design.fixed_encoder.new_matrix(grid)
        keys = grid[factors].astype(str).agg(":".join, axis=1)
        labels, rows = [], []
        for key in pd.unique(keys):
            labels.append(key)
            rows.append(Xg[(keys == key).to_numpy()].mean(axis=0))
        return labels, np.vstack(rows)

    def _pairwise_matrix(self, factor: str) -> tuple[list[str], np.ndarray]:
        labels, M = self._marginal_matrix(factor)
        out_labels, rows = [], []
        for a, b in itertools.combinations(range(len(labels)), 2):
            out_labels.append(f"{factor}[{labels[a]}] - {factor}[{labels[b]}]")
            rows.append(M[a] - M[b])
        if not rows:
            raise SpecificationError(f"factor {factor!r} has a single level; nothing to compare")
        return out_labels, np.vstack(rows)

    # ------------------------------------------------------------------ Var(y)
    def _corr_draws(self) -> np.ndarray | None:
        return self.draws("correlation") if "correlation" in self.idata.posterior else None

    def var_y(self, rows: Sequence[int] | slice | None = None, prob: float = 0.95) -> VarY:
        """Posterior mean and interval of ``Var(y) = ZGZ' + R`` for chosen observations."""
        idx = _row_selection(rows, self.design.n)
        draws = _variance.var_y_draws(self.design, self.draws("sigma"), self._corr_draws(), idx)
        labels = [self.design.row_labels[i] for i in idx]
        a = (1 - prob) / 2

        def frame(m):
            return pd.DataFrame(m, index=labels, columns=labels)

        return VarY(mean=frame(draws.mean(axis=0)), lower=frame(np.quantile(draws, a, axis=0)),
                    upper=frame(np.quantile(draws, 1 - a, axis=0)))

    # ------------------------------------------------------------------ prediction
    def predict_draws(self, new_data: pd.DataFrame, *, kind: str = "mean", new_groups: str = "sample",
                      random_seed: int | None = None) -> np.ndarray:
        """Draws of predictions for new rows: shape (S, n_new). See :meth:`predict`."""
        if kind not in ("mean", "response"):
            raise SpecificationError(f"kind must be 'mean' or 'response', got {kind!r}")
        if new_groups not in NEW_GROUPS:
            raise SpecificationError(f"new_groups must be one of {NEW_GROUPS}, got {new_groups!r}")
        design = self.design
        if design.fixed_encoder is None:
            raise SpecificationError("predict needs a model fitted from a formula (bl.fit)")
        if not isinstance(new_data, pd.DataFrame) or new_data.shape[0] == 0:
            raise DataError("new_data must be a non-empty pandas DataFrame")
        rng = np.random.default_rng(random_seed)
        Xn = design.fixed_encoder.new_matrix(new_data.copy())
        eta = self.draws("beta") @ Xn.T
        S = eta.shape[0]
        u = self.draws("u") if design.blocks else None
        sigma = self.draws("sigma")
        corr = self._corr_draws()
        u_at = 0
        blocks = _variance.block_draws(design, sigma, corr)
        for (blk, sd, c), (index, values) in zip(blocks, new_data_blocks(design, new_data)):
            k = blk.n_coefs
            ub = u[:, u_at : u_at + blk.n_levels * k].reshape(S, blk.n_levels, k)
            seen = index >= 0
            if seen.any():
                eta[:, seen] += np.einsum("snk,nk->sn", ub[:, index[seen]], values[seen])
            if (~seen).any():
                labels = _new_labels(new_data, blk, ~seen)
                if new_groups == "error":
                    raise DataError(
                        f"levels {sorted(set(labels))[:5]} of {blk.group!r} were not seen in training; "
                        f"use new_groups='sample' to draw their effects from G or 'zero' to ignore them"
                    )
                if new_groups == "sample":
                    L = _variance.lambda_draws(sd, c, k)  # G_b = L L'
                    uniq = list(dict.fromkeys(labels))
                    z = rng.standard_normal((S, len(uniq), k))
                    unew = np.einsum("skm,slm->slk", L, z)
                    pos = np.array([uniq.index(lab) for lab in labels])
                    eta[:, ~seen] += np.einsum("snk,nk->sn", unew[:, pos], values[~seen])
            u_at += blk.n_levels * k
        if kind == "response":
            eta = eta + rng.standard_normal(eta.shape) * sigma[:, -1:]
        return eta

    def predict(self, new_data: pd.DataFrame, *, kind: str = "mean", new_groups: str = "sample",
                random_seed: int | None = None, prob: float = 0.95) -> pd.DataFrame:
        """Predict for new rows, reusing the training encoding.

        Parameters
        ----------
        new_data : DataFrame
            Must contain the columns the formula uses (the response is not needed).
        kind : {"mean", "response"}
            ``mean``: Xβ + Zu; ``response``: adds e ~ N(0, σ_e²) (a prediction interval).
        new_groups : {"sample", "zero", "error"}
            For levels not seen in training: draw new effects from G per posterior draw,
            set them to zero (the population mean), or raise :class:`DataError`.
        random_seed : int, optional
            Same seed, same result.

        Returns
        -------
        DataFrame indexed like ``new_data``: ``mean, median, sd, lower, upper``.
        """
        draws = self.predict_draws(new_data, kind=kind, new_groups=new_groups, random_seed=random_seed)
        out = _contrasts.summarize(draws, [str(i) for i in new_data.index], prob=prob)
        out.index = new_data.index
        return out[["mean", "median", "sd", "lower", "upper"]]

    # ------------------------------------------------------------------ predictive checks
    def _replicated(self, *, new_groups: bool = False, random_seed: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(random_seed)
        u = self.draws("u") if self.design.blocks else None
        return _checks.replicate(self.design, self.draws("beta"), self.draws("sigma"), u,
                                 self._corr_draws(), new_groups=new_groups, rng=rng)

    def posterior_predictive(self, *, new_groups: bool = False, random_seed: int | None = None):
        """Replicated y for every posterior draw, stored as ``idata.posterior_predictive["y"]``.

        ``new_groups=False`` conditions on the fitted u (checks the within-group model);
        ``True`` draws fresh u ~ N(0, G) per draw (checks the between-group model too).
        """
        y_rep = self._replicated(new_groups=new_groups, random_seed=random_seed)
        post = self.idata.posterior
        da = xr.DataArray(y_rep.reshape(post.sizes["chain"], post.sizes["draw"], -1),
                          dims=("chain", "draw", "obs"),
                          coords={"chain": post["chain"], "draw": post["draw"]})
        if "posterior_predictive" in self.idata.groups():
            del self.idata.posterior_predictive
        self.idata.add_groups(posterior_predictive=xr.Dataset({"y": da}))
        return self.idata

    def check(self, statistics: Sequence[str] | None = None, groups: Sequence[str] | None = None, *,
              new_groups: bool = False, random_seed: int | None = None) -> pd.DataFrame:
        """Posterior predictive p-values of statistics that matter for mixed models.

        Parameters
        ----------
        statistics : sequence of str, optional
            From ``mean, sd`` (overall) and ``sd_group_means, max_group_mean,
            min_group_mean, within_group_sd`` (per grouping). Default: all.
        groups : sequence of str, optional
            Groupings for the grouped statistics: the model's random factors (default) or
            any data column, which is how a missing random factor shows up.
        new_groups : bool
            Replicate with fresh u from G instead of the fitted u.

        Returns
        -------
        DataFrame with columns ``statistic, group, observed, replicated_mean, p_value``;
        ``p_value = Pr(T(y_rep) ≥ T(y))``, values near 0 or 1 flag a misfit.
        """
        statistics = list(_checks.STATISTICS) if statistics is None else list(statistics)
        y_rep = self._replicated(new_groups=new_groups, random_seed=random_seed)
        return _checks.check_table(self.design.y, y_rep, _checks.grouping_codes(self.design, groups),
                                   statistics)

    def log_likelihood(self) -> az.InferenceData:
        """Add the pointwise log-likelihood (given u) as ``idata.log_likelihood["y"]``."""
        if "log_likelihood" not in self.idata.groups():
            u = self.draws("u") if self.design.blocks else None
            ll = _checks.pointwise_loglik(self.design, self.draws("beta"), self.draws("sigma"), u)
            post = self.idata.posterior
            da = xr.DataArray(ll.reshape(post.sizes["chain"], post.sizes["draw"], -1),
                              dims=("chain", "draw", "obs"),
                              coords={"chain": post["chain"], "draw": post["draw"]})
            self.idata.add_groups(log_likelihood=xr.Dataset({"y": da}))
        return self.idata

    def loo(self):
        """PSIS-LOO (ArviZ) of the observations given the random effects.

        Warns naming the observations whose Pareto k exceeds 0.7 (row, y and k: their LOO
        estimates are unreliable); :meth:`summary` lists them too from then on.
        """
        import warnings

        self.log_likelihood()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = az.loo(self.idata, pointwise=True)
        k = np.asarray(result.pareto_k, dtype=float)
        self._high_pareto_k = _diagnostics.flag_rows(self.design, k, _diagnostics.PARETO_K_MAX)
        if self._high_pareto_k:
            warnings.warn(_diagnostics.pareto_note(self._high_pareto_k), UserWarning, stacklevel=2)
        return result

    def prior_predictive(self, draws: int = 500, *, random_seed: int | None = None) -> az.InferenceData:
        """Draws of every parameter and of y from the priors alone (nothing is fitted)."""
        from .graph import build_model

        model = build_model(self.design, self.prior_set, parameterization="noncentered")
        with model:
            return pm.sample_prior_predictive(draws=draws, random_seed=random_seed)

    # ------------------------------------------------------------------ plots
    def plot_ppc(self, **kwargs):
        """See :func:`bayes_lmm.plots.plot_ppc`."""
        return _plots.plot_ppc(self, **kwargs)

    def plot_variance_components(self, **kwargs):
        """See :func:`bayes_lmm.plots.plot_variance_components`."""
        return _plots.plot_variance_components(self, **kwargs)

    def plot_forest(self, *, prob: float = 0.95, intercept: bool = True, sigma: bool = False,
                    contrasts: bool = False):
        """See :func:`bayes_lmm.plots.plot_forest`."""
        return _plots.plot_forest(self, prob=prob, intercept=intercept, sigma=sigma, contrasts=contrasts)

    def plot_shrinkage(self, factor: str | None = None):
        """See :func:`bayes_lmm.plots.plot_shrinkage`."""
        return _plots.plot_shrinkage(self, factor)

    def plot_var_y(self, rows: Sequence[int] | None = None):
        """See :func:`bayes_lmm.plots.plot_var_y`."""
        return _plots.plot_var_y(self, rows)

    def plot_diagnostics(self, kind: str = "trace"):
        """See :func:`bayes_lmm.plots.plot_diagnostics`."""
        return _plots.plot_diagnostics(self, kind)

    def plot_check(self, statistics: Sequence[str] = ("sd_group_means",), groups=None, **kwargs):
        """See :func:`bayes_lmm.plots.plot_check`."""
        return _plots.plot_check(self, statistics, groups, **kwargs)

    # ------------------------------------------------------------------ REML cross-check
    def compare_reml(self, prob: float = 0.95) -> pd.DataFrame:
        """Bayes and REML side by side: estimable fixed effects, SDs and correlations.

        Index: (kind, name) with kind ``beta``, ``sd`` or ``correlation``. Columns:
        ``bayes_median, bayes_lower, bayes_upper, reml`` (and ``reml_se`` for β).
        """
        r = reml_design(self.design)
        fe = self.fixed_effects(prob)
        rows = []
        for name in self.design.x_names:
            if fe.loc[name, "estimable"]:
                rows.append(("beta", name, fe.loc[name, "median"], fe.loc[name, "lower"],
                             fe.loc[name, "upper"], r.fixed_effects.loc[name, "estimate"],
                             r.fixed_effects.loc[name, "se"]))
        vc = self.variance_components(prob)
        for name in vc.index:
            rows.append(("sd", name, vc.loc[name, "sd_median"], vc.loc[name, "sd_lower"],
                         vc.loc[name, "sd_upper"], r.variance_components.loc[name, "sd"], np.nan))
        if "correlation" in self.idata.posterior:
            corr = self.random_effect_correlations(prob)
            for name in corr.index:
                rows.append(("correlation", name, corr.loc[name, "median"], corr.loc[name, "lower"],
                             corr.loc[name, "upper"], r.correlations.loc[name, "estimate"], np.nan))
        out = pd.DataFrame(rows, columns=["kind", "name", "bayes_median", "bayes_lower",
                                          "bayes_upper", "reml", "reml_se"])
        return out.set_index(["kind", "name"])

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> Diagnostics:
        """Divergences, max R-hat and min bulk/tail ESS over β, σ, correlations and u (u only
        for the latent parameterizations: after a marginal fit u is an exact conditional draw).

        For a rank-deficient X (the notes' full coding) β enters through its estimable
        functions: the distinct rows of Xβ. Also: the components of factors with one
        observation per level (weakly identified against σ_e), rows whose standardized
        residual |y − E[Xβ + Zu]| / E[σ_e] exceeds 4, and, once :meth:`loo` has run, rows
        with Pareto k > 0.7 (see :class:`bayes_lmm.diagnostics.Diagnostics`).
        """
        if self._diagnostics is None:
            self._diagnostics = self._convergence()
        return dataclasses.replace(self._diagnostics, high_pareto_k=self._high_pareto_k)

    def _convergence(self) -> Diagnostics:
        post = self.idata.posterior
        # after a marginal fit u is drawn exactly given each (β, θ) draw, so its mixing is that
        # of β and θ; leaving it out keeps diagnostics cheap for 20,000 levels
        judged = ("beta", "sigma", "correlation") if self.parameterization == "marginal" else \
            ("beta", "sigma", "u", "correlation")
        names = [v for v in judged if v in post]
        data = post[names]
        if self.design.rank < self.design.p:
            # with a rank-deficient X only estimable functions are identified: judge convergence
            # on the distinct rows of Xβ (cell means), not on the prior-only null-space direction
            rows = np.unique(self.design.X, axis=0)
            cells = np.einsum("cdp,rp->cdr", post["beta"].to_numpy(), rows)
            data = data.assign(beta=(("chain", "draw", "cell"), cells))
        rhat = az.rhat(data)
        bulk = az.ess(data, method="bulk")
        tail = az.ess(data, method="tail")

        def extreme(ds, fn):
            vals = np.concatenate([np.atleast_1d(ds[v].to_numpy()).ravel() for v in names])
            vals = vals[np.isfinite(vals)]
            return float(fn(vals)) if vals.size else float("nan")

        div = 0
        if "sample_stats" in self.idata.groups() and "diverging" in self.idata.sample_stats:
            div = int(self.idata.sample_stats["diverging"].sum())
        u = self.draws("u") if "u" in post else None
        return Diagnostics(
            divergences=div, draws=self.n_draws, max_rhat=extreme(rhat, np.max),
            min_ess_bulk=extreme(bulk, np.min), min_ess_tail=extreme(tail, np.min),
            chains=int(post.sizes["chain"]), target_accept=self.target_accept,
            weakly_identified=_diagnostics.single_observation_components(self.design),
            outliers=_diagnostics.residual_outliers(self.design, self.draws("beta"), u, self.draws("sigma")),
        )

    def _marginal_form(self) -> str:
        """What a marginal fit integrated out and how (empty for the latent parameterizations)."""
        if self.parameterization != "marginal":
            return ""
        what = "u and β" if integrates_beta(self.design, self.prior_set, "marginal") else "u"
        return f" ({what} integrated out; {_marginal.describe(self.design)})"

    def summary(self, prob: float = 0.95) -> _display.Summary:
        """A plain-text report: model, fixed effects, variance components, correlations,
        diagnostics. A ``str`` that a notebook shows as text (see :class:`display.Summary`)."""
        d = self.diagnostics()
        model = self.design.formula or f"explicit X ({self.design.n}×{self.design.p}) and Z blocks {[b.group for b in self.design.blocks]}"
        lines = [
            f"Bayesian linear mixed model: {model}",
            f"  {self.design.n} observations, rank(X) = {self.design.rank} of {self.design.p} columns",
            f"  sampler {self.sampler}, parameterization {self.parameterization}"
            f"{self._marginal_form()}, "
            f"{d.chains} chains × {d.draws // max(d.chains, 1)} draws, target_accept {self.target_accept:g}",
            "",
            f"Fixed effects ({prob:.0%} intervals):",
            self.fixed_effects(prob).round(4).to_string(),
            "",
            "Variance components:",
            self.variance_components(prob)[["sd_median", "sd_lower", "sd_upper", "variance_median",
                                             "fraction_median"]].round(4).to_string(),
            "",
        ]
        if "correlation" in self.idata.posterior:
            lines += ["Random-effect correlations:",
                      self.random_effect_correlations(prob).round(4).to_string(), ""]
        lines += [
            f"Diagnostics: {d.divergences} divergences, max R-hat {d.max_rhat:.3f}, "
            f"min ESS bulk {d.min_ess_bulk:.0f}, tail {d.min_ess_tail:.0f}",
        ]
        lines += [f"  WARNING: {p}" for p in d.problems()]
        lines += [f"  NOTE: {p}" for p in d.notes()]
        return _display.Summary("\n".join(lines))

    def save(self, path) -> Path:
        """Write the fit (InferenceData, spec, design inputs) to one NetCDF file; see :func:`bl.load`."""
        from .persist import save

        return save(self, path)

    def __repr__(self) -> str:
        return _display.fit_repr(self)

    def _repr_html_(self) -> str:
        """What a notebook shows for ``fit`` on a cell's last line: :func:`display.fit_html`."""
        return _display.fit_html(self)


def _new_labels(data: pd.DataFrame, blk, mask: np.ndarray) -> list[str]:
    parts = [data[v].astype(str).to_numpy()[mask] for v in blk.encoder.term.variables]
    return [":".join(t) for t in zip(*parts)]
