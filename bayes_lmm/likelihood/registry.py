"""The one list of likelihood forms, and the one place a form is chosen.

To add a form: write one module with a subclass of :class:`~bayes_lmm.likelihood.base.ExactForm`
(or :class:`~bayes_lmm.likelihood.base.Form`) and add it to :data:`EXACT_FORMS` (in order of
preference: the first that applies is used) or :data:`LATENT_FORMS`.
"""

from __future__ import annotations

from ..design import Design
from ..errors import SpecificationError
from . import kernel_data
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, ExactForm, Form
from .crossed import CrossedForm
from .dense import DenseForm
from .gibbs import GIBBS_Q_MAX, GibbsForm, remainder
from .grouped import GroupedForm
from .latent import Centered, NonCentered, PerFactor
from .nested import NestedForm

#: the exact forms (u integrated out), most specific first; DenseForm applies to any design
EXACT_FORMS: tuple[type[ExactForm], ...] = (GroupedForm, NestedForm, CrossedForm, DenseForm)
#: the latent parameterizations by name; the first is the fallback of "auto"
LATENT_FORMS: dict[str, type[Form]] = {"noncentered": NonCentered, "centered": Centered}


def exact_form_class(design: Design) -> type[ExactForm]:
    """The first exact form that applies to ``design`` (which has at least one block)."""
    return next(cls for cls in EXACT_FORMS if cls.applies(design))


def exact_form(design: Design, *, gram_numbers_max: int = GRAM_NUMBERS_MAX) -> ExactForm:
    """The exact form of ``design`` with its statistics, whatever it costs."""
    return exact_form_class(design).from_design(design, gram_numbers_max=gram_numbers_max)


def choose(design: Design, requested: str = "auto", *, dense_q_max: int = DENSE_Q_MAX,
           gram_numbers_max: int = GRAM_NUMBERS_MAX, kernel_evaluates: bool = False,
           gibbs_samples: bool = False) -> Form:
    """The form a fit uses; its ``reason`` says in words why (for the summary).

    Parameters
    ----------
    design : Design
    requested : {"auto", "marginal", "noncentered", "centered"}
        ``auto`` integrates u out where the exact form is cheap and R = σ²_e I (one block of at most 4
        coefficients, nested intercepts, or at most ``dense_q_max`` random coefficients left
        to a Cholesky, by the PyMC form or, with ``kernel_evaluates``, by the compiled kernel,
        which solves out a block of up to 4 coefficients level by level) and samples u otherwise:
        with ``gibbs_samples`` by the blocked Gibbs sampler where it applies and at most
        :data:`~bayes_lmm.likelihood.gibbs.GIBBS_Q_MAX` coefficients are left to its Cholesky
        (:class:`~bayes_lmm.likelihood.gibbs.GibbsForm`), else by NUTS with each block centered
        or non-centered by how much data its levels carry
        (:class:`~bayes_lmm.likelihood.latent.PerFactor`); ``marginal`` always uses the exact form
        (non-centered for a design without random blocks).
    dense_q_max : int
        ``auto``'s limit on the dense system of the crossed and dense forms.
    gram_numbers_max : int
        Count-grouped Gram matrices are formed while they take fewer numbers (0: never).
    kernel_evaluates : bool
        Whether the compiled kernel can sample this model (its priors' families, β integrated out).
    gibbs_samples : bool
        Whether the blocked Gibbs sampler may sample this model (sampler ``auto``, and priors it
        evaluates: :func:`bayes_lmm.gibbs_sampling.unavailable`).
    """
    if requested in LATENT_FORMS:
        return _because(LATENT_FORMS[requested](design), f"parameterization={requested!r} was requested")
    if requested not in ("auto", "marginal"):
        raise ValueError(f"unknown parameterization {requested!r}")
    if not design.blocks:
        return _because(NonCentered(design), "no random effects")
    if design.residual is not None:
        # the exact forms are written for R = σ²_e I; a structured R samples u (latent)
        if requested == "marginal":
            raise SpecificationError(
                f"parameterization='marginal' is written for R = σ²_e I; with a residual structure "
                f"({design.residual.kind}) use 'auto', 'noncentered' or 'centered'")
        return _because(NonCentered(design), f"the exact forms are written for R = σ²_e I, not "
                                             f"{design.residual.kind}: u is sampled, non-centered")
    cls = exact_form_class(design)
    if requested == "marginal":
        return _because(cls.from_design(design, gram_numbers_max=gram_numbers_max),
                        "parameterization='marginal' was requested")
    if cls.cheap(design, dense_q_max=dense_q_max):
        return _because(cls.from_design(design, gram_numbers_max=gram_numbers_max),
                        f"u integrated out: the exact {cls.name} form is cheap "
                        f"({_cost_words(cls, design)})")
    e = kernel_data.eliminated_block(design)
    left = kernel_data.remainder_size(design, e)
    if kernel_evaluates and kernel_data.kernel_applies(design, dense_q_max=dense_q_max, gram_numbers_max=gram_numbers_max):
        eliminated = f"solving out {design.blocks[e].group!r} level by level" if e is not None else "no elimination"
        return _because(cls.from_design(design, gram_numbers_max=gram_numbers_max),
                        f"u integrated out on the compiled kernel: {left} random coefficients are left after "
                        f"{eliminated} (at most {dense_q_max})")
    n_left = left if kernel_evaluates else cls.cost(design)
    if gibbs_samples and GibbsForm.applies(design) and GibbsForm.cheap(design):
        return _because(GibbsForm(design), gibbs_words(design, f"no exact form is cheap for NUTS ({n_left} random "
                                                               f"coefficients left to a Cholesky per gradient, more "
                                                               f"than {dense_q_max})"))
    latent = PerFactor.from_data(design)
    words = "; ".join(f"{b.group!r} " + (f"centered (data/prior information {r:.1f} > 1)" if c else
                                          "non-centered" + (f" (information {r:.2f} ≤ 1)" if b.n_coefs == 1 else
                                                            f" ({b.n_coefs} coefficients per level)"))
                      for b, c, r in zip(design.blocks, latent.centered, latent.ratios))
    return _because(latent, f"no exact form is cheap ({n_left} random coefficients left "
                            f"to a Cholesky, more than {dense_q_max}): u is sampled, {words}")


def gibbs_words(design: Design, why: str) -> str:
    """The reason of a Gibbs fit: ``why``, then what a sweep does and costs."""
    r = remainder(design)
    return (f"{why}: blocked Gibbs, β and u drawn jointly given θ with one {r}×{r} Cholesky per sweep "
            f"(at most {GIBBS_Q_MAX}), each σ by slice sampling given u and given u/σ in turn")


def gibbs_form(design: Design, requested: str) -> GibbsForm:
    """The form of an explicit ``sampler='gibbs'``; a clear error where the Gibbs steps do not
    apply to the design or the parameterization asked for is another."""
    if requested not in ("auto", "centered"):
        raise SpecificationError(
            f"sampler='gibbs' samples the centered model (its σ steps interweave the non-centered one); "
            f"parameterization={requested!r} cannot be combined with it: use 'auto' or 'centered'")
    why = GibbsForm.why_not(design)
    if why is not None:
        raise SpecificationError(f"sampler='gibbs' cannot sample this model: {why}")
    return _because(GibbsForm(design), gibbs_words(design, "sampler='gibbs' was requested"))


def _cost_words(cls, design: Design) -> str:
    if cls is GroupedForm:
        k = design.blocks[0].n_coefs
        return f"one block of {k} coefficient{'s' if k > 1 else ''} per level"
    if cls is NestedForm:
        return "nested intercepts"
    return f"{cls.cost(design)} random coefficients left to a Cholesky"


def _because(form: Form, reason: str) -> Form:
    form.reason = reason
    return form


def form_of(design: Design, parameterization: str, sampler: str | None = None) -> Form:
    """The form of a fit read back, from the parameterization and sampler it reports (a
    per-factor ``"mixed"`` choice is ``auto``'s, remade from the same data)."""
    if sampler == "gibbs":
        return GibbsForm(design)
    return choose(design, parameterization if parameterization in ("marginal", *LATENT_FORMS) else "auto")
