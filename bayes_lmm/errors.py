"""Exceptions raised for bad input.

Every problem with what a user passed in is reported as a subclass of
:class:`BayesLMMError`, which is also a :class:`ValueError`, with a message that
names the offending column, level, key or contrast.
"""


class BayesLMMError(ValueError):
    """Base class of every error bayes_lmm raises about its input (a :class:`ValueError`).

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> try:
    ...     bl.fit("weight ~ genotype + (1|pot)", data.drop(columns="pot"))
    ... except bl.BayesLMMError as err:  # any input problem
    ...     print(err)  # doctest: +SKIP
    """


class DataError(BayesLMMError):
    """The data are unusable: wrong shapes, missing or non-finite values, too few levels.

    Examples
    --------
    >>> import numpy as np
    >>> import bayes_lmm as bl
    >>> bad = data.assign(weight=np.nan)
    >>> bl.fit("weight ~ genotype + (1|pot)", bad)  # doctest: +SKIP
    Traceback (most recent call last):
        ...
    DataError: column 'weight' has 10 missing values (rows [0, 1, 2, 3, 4, …]); ...
    """


class SpecificationError(BayesLMMError):
    """The model specification is invalid: formula, priors, options or card keys.

    Examples
    --------
    >>> import bayes_lmm as bl
    >>> bl.fit("weight ~ genotype | pot", data)  # doctest: +SKIP
    Traceback (most recent call last):
        ...
    SpecificationError: ... (genotype | pot) ...
    """


class EstimabilityError(BayesLMMError):
    """A requested contrast ``Cβ`` is not estimable: a row of C is outside the row space of X.

    Examples
    --------
    >>> fit = bl.fit("weight ~ genotype + (1|pot)", data, coding="full",
    ...              factors=["genotype"])  # doctest: +SKIP
    >>> fit.contrast("genotype[1]")  # doctest: +SKIP
    Traceback (most recent call last):
        ...
    EstimabilityError: ...
    """
