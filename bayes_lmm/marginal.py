"""Random effects integrated out: a thin view of :mod:`bayes_lmm.likelihood` by design.

The forms themselves (statistics, log-densities, exact draws) live in
:mod:`bayes_lmm.likelihood`; these functions answer questions about a design in the words
the summaries and the README use.
"""

from __future__ import annotations

from .design import Design
from .likelihood import DENSE_Q_MAX, GRAM_NUMBERS_MAX
from .likelihood.crossed import eliminated_block
from .likelihood.nested import nesting_chain
from .likelihood.registry import exact_form, exact_form_class

__all__ = ["marginal_kind", "describe", "cheap", "nesting_chain", "eliminated_block", "DENSE_Q_MAX",
           "GRAM_NUMBERS_MAX"]


def marginal_kind(design: Design) -> str:
    """The name of the exact form that applies: ``grouped`` (one block of gather form),
    ``nested`` (a chain of nested random intercepts), ``crossed`` (one intercept factor
    eliminated) or ``dense``."""
    return exact_form_class(design).name


def describe(design: Design) -> str:
    """Which exact form a marginal fit of ``design`` uses, in words (for summaries)."""
    return exact_form(design).describe()


def cheap(design: Design, *, dense_q_max: int = DENSE_Q_MAX) -> bool:
    """Whether the marginal form is cheap here (the rule behind ``parameterization="auto"``)."""
    return bool(design.blocks) and exact_form_class(design).cheap(design, dense_q_max=dense_q_max)
