"""Exceptions raised for bad input.

Every problem with what a user passed in is reported as a subclass of
:class:`BayesLMMError`, which is also a :class:`ValueError`, with a message that
names the offending column, level, key or contrast.
"""


class BayesLMMError(ValueError):
    """Base class of every error bayes_lmm raises about its input."""


class DataError(BayesLMMError):
    """The data are unusable: wrong shapes, missing or non-finite values, too few levels."""


class SpecificationError(BayesLMMError):
    """The model specification is invalid: formula, priors, options or card keys."""


class EstimabilityError(BayesLMMError):
    """A requested contrast ``Cβ`` is not estimable: a row of C is outside the row space of X."""
