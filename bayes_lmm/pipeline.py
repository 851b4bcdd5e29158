"""The pipeline behind the facade: spec → design → priors → form → graph → sampling →
completion → :class:`~bayes_lmm.results.Fit`.

The form is chosen once here (:func:`bayes_lmm.likelihood.choose`) and passed down as an
object; the seed is resolved once (:class:`bayes_lmm.seeds.Seed`) and every stream spawned
from it.
"""

from __future__ import annotations

import warnings

import pymc as pm
import xarray as xr

from .completion import complete
from .design import Design
from .errors import SpecificationError
from .gibbs_sampling import LOG_DENSITY as GIBBS_LOG_DENSITY
from .gibbs_sampling import gibbs_model
from .gibbs_sampling import unavailable as gibbs_unavailable
from .graph import build_model, integrates_beta, model_signature
from .kernel_sampling import kernel_could_sample, kernel_model, unavailable
from .likelihood import Form, choose
from .likelihood.registry import gibbs_form
from .priors import PriorSet, resolve_priors
from .results import Fit
from .sampling import resolve_sampler, sample, without_unconstrained
from .seeds import Seed
from .spec import ModelSpec, SamplerOptions


def default_target_accept(design: Design, parameterization: Form | str) -> float:
    """Target acceptance for NUTS, raised for small designs.

    With few levels per factor or few rows the posterior of σ_j has a long tail towards 0
    (a funnel for latent u); smaller steps avoid the divergences that peers show on the
    notes' 4-pot example. With u integrated out there is no funnel and smaller targets
    suffice (measured, 5 seeds each: notes' Example 1 has 5–15 divergences at 0.8 and none
    at 0.9 or above; at 0.95 its smallest bulk ESS is 1,047–1,182 against 840–1,135 at 0.99,
    in 0.24 s of sampling against 0.33 s).
    """
    latent = parameterization.samples_u if isinstance(parameterization, Form) else parameterization != "marginal"
    fewest = min((b.n_levels for b in design.blocks), default=100)
    small = fewest < 10 or design.n < 50
    if not latent:
        return 0.95 if small else 0.9
    if small:
        return 0.99
    # a structured R adds SDs and correlations that trade off against G (AR(1)'s ρ against a
    # random intercept): at 0.9 Orthodont's varIdent and CS fits had 1–3 divergences in 4,000
    if fewest < 30 or (design.residual is not None):
        return 0.95
    return 0.9


def resolve_parameterization(requested: str, design: Design, *, kernel_evaluates: bool = False) -> str:
    """``auto`` → ``marginal`` where it is cheap (see :func:`bayes_lmm.likelihood.choose`),
    else the latent choice: the name of the form :func:`choose` picks. A fit also counts the
    designs only the compiled kernel makes cheap, which depends on the priors
    (``kernel_evaluates``; :func:`build` gives exactly the fit's choice)."""
    return choose(design, requested, kernel_evaluates=kernel_evaluates).parameterization


def build(spec: ModelSpec, design: Design, *, parameterization: str | None = None) -> tuple[pm.Model, PriorSet, str]:
    """Resolve priors and build the PyMC model without sampling (for inspection and tests).

    Parameters
    ----------
    spec : ModelSpec
    design : Design
    parameterization : str, optional
        Overrides ``spec.parameterization`` (``auto`` is resolved as :func:`fit` would).

    Returns
    -------
    model : pymc.Model
    prior_set : PriorSet
        The resolved priors.
    parameterization : str
        The parameterization the model uses.

    Examples
    --------
    >>> import pandas as pd
    >>> import bayes_lmm as bl
    >>> data = pd.read_csv("models/data/seedling.csv")
    >>> spec = bl.ModelSpec(formula="weight ~ genotype + (1|pot)", factors=("genotype",))
    >>> design = bl.design_from_formula(spec.formula, data, factors=spec.factors)
    >>> model, priors, parameterization = bl.build(spec, design)
    >>> parameterization
    'marginal'
    """
    model, prior_set, form = build_with_form(spec, design, parameterization=parameterization)
    return model, prior_set, form.parameterization


def build_with_form(spec: ModelSpec, design: Design, *, parameterization: str | None = None,
                    sampler: str = "auto") -> tuple[pm.Model, PriorSet, Form]:
    """:func:`build`, returning the chosen form itself. With ``sampler`` ``auto`` the form
    also integrates u out where only the compiled kernel makes that cheap (when nutpie is
    installed), and hands u to the blocked Gibbs sampler where no exact form is cheap and the
    Gibbs steps apply; ``sampler='gibbs'`` asks for the Gibbs form (an error where it does not
    apply)."""
    prior_set = resolve_priors(spec.prior_overrides, design)
    requested = parameterization or spec.parameterization
    if sampler == "gibbs":
        form = gibbs_form(design, requested)  # the parameterization and the design
        why = gibbs_unavailable(design, prior_set)  # and the priors
        if why is not None:
            raise SpecificationError(f"sampler='gibbs' cannot sample this model: {why}")
    else:
        on_kernel = resolve_sampler(sampler) == "nutpie" and kernel_could_sample(design, prior_set)
        gibbs_ok = sampler == "auto" and gibbs_unavailable(design, prior_set) is None
        form = choose(design, requested, kernel_evaluates=on_kernel, gibbs_samples=gibbs_ok)
    return build_model(design, prior_set, form=form), prior_set, form


def run_design(spec: ModelSpec, design: Design, options: SamplerOptions, *, conditional_u: bool = True) -> Fit:
    """Sample a prepared design: priors → form → graph → NUTS → completion → :class:`Fit`
    (warns on bad diagnostics).

    ``conditional_u=False`` skips drawing u after a marginal fit (for callers that only
    need β and the variance components, such as :func:`bayes_lmm.fit_many`).
    """
    model, prior_set, form = build_with_form(spec, design, sampler=options.sampler)
    sampler = form.own_sampler or resolve_sampler(options.sampler)
    seed = Seed.resolve(options.random_seed)
    if sampler == "gibbs":
        target = float("nan")  # no step size to adapt
    else:
        target = options.target_accept if options.target_accept is not None else default_target_accept(design, form)
    # only nutpie keeps compiled models by structure (the key comes from the form's signature)
    cache_key = model_signature(design, prior_set, form) if sampler == "nutpie" else None
    # nutpie samples an exact form through the compiled kernel where it applies: no compilation
    beta_integrated = integrates_beta(design, prior_set, form)
    kernel = kernel_model(model, design, prior_set, form, beta_integrated=beta_integrated) if sampler == "nutpie" else None
    note = None
    if sampler == "nutpie" and kernel is None:
        why = (unavailable(design, prior_set, form, beta_integrated=beta_integrated)
               or "the compiled kernel could not be built here (no C compiler or no writable cache directory)")
        note = (f"bayes_lmm: this model has no precompiled kernel ({why}), so its PyMC graph is "
                "compiled now: about 1–2 minutes, once per model structure on this machine; later fits "
                "of the same structure load it in about a second.")
    idata = without_unconstrained(sample(
        model, sampler=sampler, draws=options.draws, tune=options.tune, chains=options.chains,
        random_seed=seed.integer("chains"), target_accept=float(target), progressbar=options.progressbar,
        cache_key=cache_key, cores=options.cores, kernel=kernel, compile_note=note,
        gibbs=gibbs_model(design, prior_set) if sampler == "gibbs" else None,
    ))
    # which log-density the sampler evaluated (the compiled kernel is tested equal to the graph)
    idata.posterior.attrs["log_density"] = ("compiled kernel" if kernel is not None else
                                            GIBBS_LOG_DENSITY if sampler == "gibbs" else "PyMC graph")
    complete(idata, form, design, prior_set, seed, draw_u=conditional_u)
    if "observed_data" not in idata.groups():
        idata.add_groups(observed_data=xr.Dataset({"y": (("obs",), design.y)}))
    result = Fit(spec=spec, options=options, design=design, prior_set=prior_set, idata=idata,
                 parameterization=form.parameterization, sampler=sampler, target_accept=float(target),
                 form=form, seed=seed)
    for p in result.diagnostics().problems():
        warnings.warn(p, UserWarning, stacklevel=3)
    return result
