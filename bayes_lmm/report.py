"""The plain-text report of a fit, from its tables (nothing here computes a posterior quantity).

Functions take the :class:`~bayes_lmm.results.Fit` (or its form) as an argument and never
import :mod:`bayes_lmm.results`.
"""

from __future__ import annotations

from .display import Summary
from .graph import integrates_beta
from .likelihood import Form
from .residual import KnownSD


def marginal_form(form: Form, beta_integrated: bool) -> str:
    """What a marginal fit integrated out and how, e.g. `` (u and β integrated out; nested
    closed form)``; empty for the latent parameterizations."""
    if form.samples_u:
        return ""
    what = "u and β" if beta_integrated else "u"
    return f" ({what} integrated out; {form.describe()})"


def residual_words(res) -> str:
    """R in words for the summary: ``σ²_e I`` or the structure as the user wrote it."""
    if res is None:
        return "σ²_e I"
    src = res.source
    if isinstance(src, KnownSD) and not isinstance(src.column, str):
        return "diag(s²), s known (an array)"
    return f"{src!r}" + {
        "known": " (known SDs)", "hetero": " (one SD per level)", "ar1": " (corr ρ^|t−s| within group)",
        "cs": " (equal correlation ρ within group)", "un": " (a full covariance over the times)"}.get(res.kind, "")


def summary(fit, prob: float = 0.95) -> Summary:
    """Model, fixed effects, variance components, random-effect correlations, diagnostics
    (warnings and notes), as a :class:`~bayes_lmm.display.Summary` (a ``str``)."""
    d = fit.diagnostics()
    design = fit.design
    model = design.formula or f"explicit X ({design.n}×{design.p}) and Z blocks {[b.group for b in design.blocks]}"
    kernel = " on the compiled kernel" if fit.idata.posterior.attrs.get("log_density") == "compiled kernel" else ""
    lines = [
        f"Bayesian linear mixed model: {model}",
        f"  {design.n} observations, rank(X) = {design.rank} of {design.p} columns",
        f"  residual R = {residual_words(design.residual)}",
        f"  sampler {fit.sampler}{kernel}, parameterization {fit.parameterization}"
        f"{marginal_form(fit.form, integrates_beta(design, fit.prior_set, fit.form))}, "
        f"{d.chains} chains × {d.draws // max(d.chains, 1)} draws"
        + ("" if fit.sampler == "gibbs" else f", target_accept {fit.target_accept:g}"),
    ]
    if fit.form.reason:
        lines.append(f"  why this form: {fit.form.reason}")
    lines += [
        "",
        f"Fixed effects ({prob:.0%} intervals):",
        fit.fixed_effects(prob).round(4).to_string(),
        "",
        "Variance components:",
        fit.variance_components(prob)[["sd_median", "sd_lower", "sd_upper", "variance_median",
                                       "fraction_median"]].round(4).to_string(),
        "",
    ]
    if "correlation" in fit.idata.posterior:
        lines += ["Random-effect correlations:", fit.random_effect_correlations(prob).round(4).to_string(), ""]
    if "residual_correlation" in fit.idata.posterior:
        lines += ["Residual correlation:", fit.residual_structure(prob).round(4).to_string(), ""]
    lines += [
        "Diagnostics: " + ("Gibbs sweeps (no divergent transitions to count)" if fit.sampler == "gibbs"
                           else f"{d.divergences} divergences") + f", max R-hat {d.max_rhat:.3f}, "
        f"min ESS bulk {d.min_ess_bulk:.0f}, tail {d.min_ess_tail:.0f}",
    ]
    lines += [f"  WARNING: {p}" for p in d.problems()]
    lines += [f"  NOTE: {p}" for p in d.notes()]
    return Summary("\n".join(lines))
