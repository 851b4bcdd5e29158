"""The one list of likelihood forms, and the one place a form is chosen.

To add a form: write one module with a subclass of :class:`~bayes_lmm.likelihood.base.ExactForm`
(or :class:`~bayes_lmm.likelihood.base.Form`) and add it to :data:`EXACT_FORMS` (in order of
preference: the first that applies is used) or :data:`LATENT_FORMS`.
"""

from __future__ import annotations

from ..design import Design
from ..errors import SpecificationError
from .base import DENSE_Q_MAX, GRAM_NUMBERS_MAX, ExactForm, Form
from .crossed import CrossedForm
from .dense import DenseForm
from .grouped import GroupedForm
from .latent import Centered, NonCentered
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
           gram_numbers_max: int = GRAM_NUMBERS_MAX) -> Form:
    """The form a fit uses.

    Parameters
    ----------
    design : Design
    requested : {"auto", "marginal", "noncentered", "centered"}
        ``auto`` integrates u out where the exact form is cheap and R = σ²_e I (one block of at most 4
        coefficients, nested intercepts, or at most ``dense_q_max`` random coefficients left
        to a Cholesky) and is non-centered otherwise; ``marginal`` always uses the exact form
        (non-centered for a design without random blocks).
    dense_q_max : int
        ``auto``'s limit on the dense system of the crossed and dense forms.
    gram_numbers_max : int
        Count-grouped Gram matrices are formed while they take fewer numbers (0: never).
    """
    if requested in LATENT_FORMS:
        return LATENT_FORMS[requested](design)
    if requested not in ("auto", "marginal"):
        raise ValueError(f"unknown parameterization {requested!r}")
    if not design.blocks:
        return NonCentered(design)
    if design.residual is not None:
        # the exact forms are written for R = σ²_e I; a structured R samples u (latent)
        if requested == "marginal":
            raise SpecificationError(
                f"parameterization='marginal' is written for R = σ²_e I; with a residual structure "
                f"({design.residual.kind}) use 'auto', 'noncentered' or 'centered'")
        return NonCentered(design)
    cls = exact_form_class(design)
    if requested == "auto" and not cls.cheap(design, dense_q_max=dense_q_max):
        return NonCentered(design)
    return cls.from_design(design, gram_numbers_max=gram_numbers_max)
