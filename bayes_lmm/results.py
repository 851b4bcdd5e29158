"""The :class:`Fit`: what a fit is (spec, design, priors, form, sampler record, draws, seed)
and the questions users ask of it, each answered by a module of pure functions.

Tables (:mod:`.tables`), contrasts and marginal means (:mod:`.means`), prediction
(:mod:`.prediction`), predictive checks (:mod:`.checks`) and diagnostics
(:mod:`.diagnostics`) take the design and the draws; the methods here delegate in a line or
two. Queries never change the fit: only :meth:`Fit.posterior_predictive`,
:meth:`Fit.log_likelihood` and ``contrast(..., store=True)`` add to ``fit.idata``, as they
say. The plotting methods and :meth:`Fit.save` are bound by :mod:`bayes_lmm.fit_methods`
(this module imports neither :mod:`.plots` nor :mod:`.persist`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
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
from . import means as _means
from . import prediction as _prediction
from . import report as _report
from . import tables as _tables
from .convergence import diagnose
from .design import Design
from .diagnostics import ESS_MIN_PER_CHAIN, RHAT_MAX, Diagnostics
from .graph import build_model
from .likelihood import Form, form_of
from .priors import PriorSet
from .reml import reml_design
from .reml_residual import reml_residual
from .seeds import Seed
from .spec import ModelSpec, SamplerOptions
from .tables import VarY

__all__ = ["Fit", "Diagnostics", "VarY", "RHAT_MAX", "ESS_MIN_PER_CHAIN"]


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
    form : bayes_lmm.likelihood.Form
        The likelihood form the fit used (chosen once, :func:`bayes_lmm.likelihood.choose`).
    sampler : str
        The sampler actually used.
    seed : bayes_lmm.seeds.Seed
        The seed every random stream of the fit was spawned from (:attr:`random_seed`).

    Examples
    --------
    >>> fit = bl.fit("weight ~ genotype + (1|pot)", data, factors=["genotype"],
    ...              random_seed=1)  # doctest: +SKIP
    >>> fit.fixed_effects(); fit.variance_components(); fit.icc()  # doctest: +SKIP
    >>> fit.plot_variance_components()  # doctest: +SKIP
    """

    def __init__(self, *, spec: ModelSpec, options: SamplerOptions, design: Design,
                 prior_set: PriorSet, idata: az.InferenceData, parameterization: str,
                 sampler: str, target_accept: float, form: Form | None = None, seed: Seed | None = None):
        self.spec = spec
        self.options = options
        self.design = design
        self.prior_set = prior_set
        self.idata = idata
        self.parameterization = parameterization
        self.sampler = sampler
        self.target_accept = target_accept
        self.form = form if form is not None else form_of(design, parameterization, sampler)
        self.seed = seed if seed is not None else Seed.resolve(None if options is None else options.random_seed)
        self._diagnostics: Diagnostics | None = None  # a memo: the draws never change
        self._high_pareto_k: tuple = ()  # rows loo() found influential

    @property
    def random_seed(self) -> int:
        """The integer that reproduces this fit: ``bl.fit(..., random_seed=fit.random_seed)``
        gives identical draws of every variable (drawn and recorded when none was given)."""
        return self.seed.value

    # ------------------------------------------------------------------ draws
    def draws(self, name: str) -> np.ndarray:
        """Posterior draws of a variable with chains and draws flattened: shape (S, …)."""
        return _tables.draws(self.idata.posterior, name)

    @property
    def n_draws(self) -> int:
        """Number of posterior draws, all chains together."""
        post = self.idata.posterior
        return int(post.sizes["chain"] * post.sizes["draw"])

    @property
    def priors(self) -> pd.DataFrame:
        """The priors that were used, one row per parameter."""
        return self.prior_set.table()

    @property
    def component_names(self) -> list[str]:
        """Names of the variance components, as in :meth:`variance_components`."""
        return _tables.component_names(self.design)

    def _u_draws(self) -> np.ndarray | None:
        return self.draws("u") if self.design.blocks else None

    def _rcorr(self) -> np.ndarray | None:
        return _tables.residual_corr_draws(self.idata.posterior)

    # ------------------------------------------------------------------ tables
    def fixed_effects(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Posterior of β: one row per column of X.

        Columns: ``mean, sd, median, lower, upper, ess_bulk, ess_tail, r_hat`` and
        ``estimable`` (False for a coefficient that alone is not estimable, e.g. γ1 under
        the notes' full coding: its posterior then reflects the prior, not the data).
        """
        return _tables.fixed_effects(self.design, self.idata.posterior, prob, interval=interval)

    def variance_components(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """One row per variance component plus ``Residual``.

        Columns: ``sd_mean, sd_median, sd_lower, sd_upper``, the same for ``variance``
        (σ²) and ``fraction``, and ``ess_bulk, r_hat`` of σ. ``fraction`` is the component's
        share of the mean over the rows of Var(y_i) = diag(ZGZ')_i + σ_e²: σ_j² for a random
        intercept, σ_j²·mean(x²) for a slope on x, and half of each covariance term
        2ρσσ'·mean(x) to each of the two correlated coefficients, so the fractions sum to 1
        and do not depend on the covariate's units (see :func:`variance.fraction_draws`).
        """
        return _tables.variance_components(self.design, self.idata.posterior, prob, interval=interval)

    def variance_ratio(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """σ_j²/σ_e² for each component: the notes' ratio that, if known, gives the Aitken model."""
        return _tables.variance_ratio(self.design, self.idata.posterior, prob, interval=interval)

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
        return _tables.icc(self.design, self.idata.posterior, prob, interval=interval, at=at)

    def random_effects(self, prob: float = 0.95, *, interval: str = "eti", group: str | None = None,
                       levels: Sequence[Any] | None = None) -> pd.DataFrame:
        """Posterior of each entry of u (the BLUP-like predicted random effects).

        ``group`` keeps one grouping factor (``"Subject"``, ``"litter:animal"``) and ``levels``
        some of its levels; an unknown factor or level raises :class:`SpecificationError`.
        """
        return _tables.random_effects(self.design, self.idata.posterior, prob, interval=interval,
                                      group=group, levels=levels)

    def random_effect_correlations(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Correlations between correlated random effects, e.g. ``(1,Days)|Subject``."""
        return _tables.random_effect_correlations(self.design, self.idata.posterior, prob, interval=interval)

    def var_y(self, rows: Sequence[int] | slice | None = None, prob: float = 0.95) -> VarY:
        """Posterior mean and interval of ``Var(y) = ZGZ' + R`` for chosen observations."""
        return _tables.var_y(self.design, self.idata.posterior, rows, prob)

    def residual_structure(self, prob: float = 0.95, *, interval: str = "eti") -> pd.DataFrame:
        """Posterior of R's correlation parameters: ``rho`` (AR1, CompoundSymmetry) or each
        ``corr(t1,t2)`` (Unstructured); its SDs are in :meth:`variance_components`."""
        return _tables.residual_structure(self.design, self.idata.posterior, prob, interval=interval)

    # ------------------------------------------------------------------ contrasts
    def contrast(self, spec: Any = None, prob: float = 0.95, *, pairwise: str | None = None,
                 interval: str = "eti", rope: tuple[float, float] | None = None,
                 store: bool = False) -> pd.DataFrame:
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
        store : bool
            Also store the draws in ``idata.posterior`` as ``contrasts`` (dim ``contrast``)
            for ArviZ's own plots and summaries; :meth:`plot_forest` shows them with
            ``contrasts=True``.

        Returns
        -------
        DataFrame
            One row per contrast: ``mean, median, sd, lower, upper, prob_positive``
            (and ``prob_in_rope``).

        Raises
        ------
        EstimabilityError
            If a row of C is not in the row space of X; the message names the contrast.
        """
        labels, C = _means.contrast_rows(self.design, spec, pairwise)
        draws = self.draws("beta") @ C.T
        if store:
            self.idata.posterior = _means.with_contrasts(self.idata.posterior, labels, draws)
        return _contrasts.summarize(draws, labels, prob=prob, interval=interval, rope=rope)

    def marginal_means(self, factors: str | Sequence[str], prob: float = 0.95, *,
                       interval: str = "eti") -> pd.DataFrame:
        """Posterior of the mean of each level (or cell) of one or more factors.

        The reference grid crosses all levels of the categorical fixed factors, holds numeric
        covariates at their means and sets random effects to zero; means are averaged
        equally over the factors not asked for (as emmeans does).
        """
        labels, C = _means.marginal_matrix(self.design, factors)
        _contrasts.check_estimable(labels, C, self.design.X, self.design.x_names)
        out = _contrasts.summarize(self.draws("beta") @ C.T, labels, prob=prob, interval=interval)
        out.index.name = "level"
        return out[["mean", "median", "sd", "lower", "upper"]]

    # ------------------------------------------------------------------ prediction
    def predict_draws(self, new_data: pd.DataFrame, *, kind: str = "mean", new_groups: str = "sample",
                      random_seed: int | None = None) -> np.ndarray:
        """Draws of predictions for new rows: shape (S, n_new). See :meth:`predict`."""
        return _prediction.predict_draws(
            self.design, self.draws("beta"), self.draws("sigma"), self._u_draws(),
            _tables.corr_draws(self.idata.posterior), new_data, kind=kind, new_groups=new_groups,
            rng=self.seed.rng("prediction", random_seed), rcorr=self._rcorr())

    def predict(self, new_data: pd.DataFrame, *, kind: str = "mean", new_groups: str = "sample",
                random_seed: int | None = None, prob: float = 0.95) -> pd.DataFrame:
        """Predict for new rows, reusing the training encoding.

        Parameters
        ----------
        new_data : DataFrame
            Must contain the columns the formula uses (the response is not needed).
        kind : {"mean", "response"}
            ``mean``: Xβ + Zu; ``response``: adds e ~ N(0, R) (a prediction interval).
        new_groups : {"sample", "zero", "error"}
            For levels not seen in training: draw new effects from G per posterior draw,
            set them to zero (the population mean), or raise :class:`DataError`.
        random_seed : int, optional
            Same seed, same result (default: the fit's own prediction stream).

        Returns
        -------
        DataFrame indexed like ``new_data``: ``mean, median, sd, lower, upper``.
        """
        draws = self.predict_draws(new_data, kind=kind, new_groups=new_groups, random_seed=random_seed)
        out = _contrasts.summarize(draws, [str(i) for i in new_data.index], prob=prob)
        out.index = new_data.index
        return out[["mean", "median", "sd", "lower", "upper"]]

    # ------------------------------------------------------------------ predictive checks
    def replicated(self, *, new_groups: bool = False, random_seed: int | None = None) -> np.ndarray:
        """Replicated y for every posterior draw, shape (S, n), from the fit's replication
        stream (or ``random_seed``); see :meth:`posterior_predictive`."""
        return _checks.replicate(self.design, self.draws("beta"), self.draws("sigma"), self._u_draws(),
                                 _tables.corr_draws(self.idata.posterior), new_groups=new_groups,
                                 rng=self.seed.rng("replication", random_seed), rcorr=self._rcorr())

    def posterior_predictive(self, *, new_groups: bool = False, random_seed: int | None = None):
        """Replicated y for every posterior draw, stored as ``idata.posterior_predictive["y"]``.

        ``new_groups=False`` conditions on the fitted u (checks the within-group model);
        ``True`` draws fresh u ~ N(0, G) per draw (checks the between-group model too).
        """
        y_rep = self.replicated(new_groups=new_groups, random_seed=random_seed)
        if "posterior_predictive" in self.idata.groups():
            del self.idata.posterior_predictive
        self.idata.add_groups(posterior_predictive=xr.Dataset({"y": self._per_draw(y_rep)}))
        return self.idata

    def _per_draw(self, values: np.ndarray) -> xr.DataArray:
        """(S, n) values as a (chain, draw, obs) array."""
        post = self.idata.posterior
        return xr.DataArray(values.reshape(post.sizes["chain"], post.sizes["draw"], -1),
                            dims=("chain", "draw", "obs"), coords={"chain": post["chain"], "draw": post["draw"]})

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
        y_rep = self.replicated(new_groups=new_groups, random_seed=random_seed)
        return _checks.check_table(self.design.y, y_rep, _checks.grouping_codes(self.design, groups), statistics)

    def log_likelihood(self) -> az.InferenceData:
        """Add the pointwise log-likelihood (given u) as ``idata.log_likelihood["y"]``."""
        if "log_likelihood" not in self.idata.groups():
            ll = _checks.pointwise_loglik(self.design, self.draws("beta"), self.draws("sigma"), self._u_draws(),
                                          self._rcorr())
            self.idata.add_groups(log_likelihood=xr.Dataset({"y": self._per_draw(ll)}))
        return self.idata

    def loo(self):
        """PSIS-LOO (ArviZ) of the observations given the random effects.

        Warns naming the observations whose Pareto k exceeds 0.7 (row, y and k: their LOO
        estimates are unreliable); :meth:`summary` lists them too from then on.
        """
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
        with build_model(self.design, self.prior_set, parameterization="noncentered"):
            return pm.sample_prior_predictive(draws=draws, random_seed=self.seed.integer("prior_predictive", random_seed))

    # ------------------------------------------------------------------ REML cross-check
    def compare_reml(self, prob: float = 0.95) -> pd.DataFrame:
        """Bayes and REML side by side: estimable fixed effects, SDs and correlations.

        Index: (kind, name) with kind ``beta``, ``sd`` or ``correlation``. Columns:
        ``bayes_median, bayes_lower, bayes_upper, reml`` (and ``reml_se`` for β).
        """
        design = self.design
        reml = reml_design(design) if design.residual is None else reml_residual(design, design.residual)
        return _tables.compare_reml(design, self.idata.posterior, reml, prob)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> Diagnostics:
        """Divergences, max R-hat and min bulk/tail ESS over β, σ, correlations and u (u only
        where NUTS sampled it: after a marginal fit, and in each Gibbs sweep, u is an exact
        draw given θ, so its mixing is θ's).

        For a rank-deficient X (the notes' full coding) β enters through its estimable
        functions: the distinct rows of Xβ. Also: the components of factors with one
        observation per level (weakly identified against σ_e), rows whose standardized
        residual ``|y − E[Xβ + Zu]| / E[σ_e]`` exceeds 4, and, once :meth:`loo` has run, rows
        with Pareto k > 0.7 (see :class:`bayes_lmm.diagnostics.Diagnostics`).
        """
        if self._diagnostics is None:
            self._diagnostics = diagnose(self.idata, self.design, judge_u=self.form.u_mixes_alone,
                                         target_accept=self.target_accept)
        return dataclasses.replace(self._diagnostics, high_pareto_k=self._high_pareto_k)

    def summary(self, prob: float = 0.95) -> _display.Summary:
        """A plain-text report: model, fixed effects, variance components, correlations,
        diagnostics. A ``str`` that a notebook shows as text (see :class:`display.Summary`)."""
        return _report.summary(self, prob)

    def __repr__(self) -> str:
        return _display.fit_repr(self)

    def _repr_html_(self) -> str:
        """What a notebook shows for ``fit`` on a cell's last line: :func:`display.fit_html`."""
        return _display.fit_html(self)
