"""Bad input gets a bayes_lmm error that names the problem."""

import numpy as np
import pytest
from conftest import notes_example1_matrices

import bayes_lmm as bl


@pytest.fixture
def mats(seedling):
    X, Z = notes_example1_matrices()
    return seedling.weight.to_numpy(), X, Z


def test_error_hierarchy():
    assert issubclass(bl.BayesLMMError, ValueError)
    for cls in (bl.DataError, bl.SpecificationError, bl.EstimabilityError):
        assert issubclass(cls, bl.BayesLMMError)


@pytest.mark.parametrize("bad, match", [
    (lambda y, X, Z: (y[:-1], X, {"pot": Z}), "shape"),
    (lambda y, X, Z: (np.r_[y[:-1], np.nan], X, {"pot": Z}), "non-finite"),
    (lambda y, X, Z: (y, np.where(np.arange(30).reshape(10, 3) == 4, np.inf, X), {"pot": Z}), "X has 1 missing"),
    (lambda y, X, Z: (y, X, {"pot": Z[:-1]}), "Z block 'pot'"),
    (lambda y, X, Z: (y, X, {"pot": np.ones((10, 1))}), "single level"),
    (lambda y, X, Z: (np.array([]), X[:0], {}), "empty"),
    (lambda y, X, Z: (np.full(10, 3.0), X, {"pot": Z}), "constant"),
    (lambda y, X, Z: (y, X, {"pot": np.c_[Z, np.zeros(10)]}), "no observations"),
    (lambda y, X, Z: (y, X, Z), "mapping"),
    (lambda y, X, Z: (y.astype(str).astype(object) + "x", X, {"pot": Z}), "numeric"),
])
def test_matrix_input_errors(mats, bad, match):
    y, X, Z = mats
    with pytest.raises(bl.BayesLMMError, match=match):
        bl.design_from_matrices(*bad(y, X, Z))


def test_x_names_length_is_checked(mats):
    y, X, Z = mats
    with pytest.raises(bl.DataError, match="x_names has 2 labels"):
        bl.design_from_matrices(y, X, {"pot": Z}, x_names=["a", "b"])


@pytest.mark.parametrize("formula, error, match", [
    ("weight ~ genotype + (1|", bl.SpecificationError, "unclosed"),
    ("weight ~ genotype + (1|pot))", bl.SpecificationError, "unbalanced"),
    ("weight genotype", bl.SpecificationError, "'~'"),
    ("weight ~ genotypo + (1|pot)", bl.DataError, "'genotypo'"),
    ("weight ~ genotype + (1|pott)", bl.DataError, "'pott'"),
    ("weight ~ os.system('echo hi') + (1|pot)", bl.SpecificationError, "os.system"),
    ("weight ~ genotype + (|pot)", bl.SpecificationError, "both sides"),
])
def test_formula_errors(seedling, formula, error, match):
    with pytest.raises(error, match=match):
        bl.design_from_formula(formula, seedling)


def test_missing_values_are_reported_not_dropped(seedling):
    df = seedling.copy()
    df.loc[[2, 5], "weight"] = np.nan
    with pytest.raises(bl.DataError, match=r"'weight' has 2 missing values \(rows \[2, 5\]"):
        bl.design_from_formula("weight ~ genotype + (1|pot)", df)


def test_single_level_grouping_factor(seedling):
    df = seedling.assign(block="only")
    with pytest.raises(bl.DataError, match="'block' has a single level"):
        bl.design_from_formula("weight ~ genotype + (1|block)", df)


def test_non_numeric_response(seedling):
    df = seedling.assign(weight=np.where(seedling.weight > 10, "big", "small"))
    with pytest.raises(bl.DataError, match="numeric"):
        bl.design_from_formula("weight ~ genotype + (1|pot)", df)


def test_unknown_prior_key_and_wrong_family(seedling):
    design = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling)
    from bayes_lmm.priors import resolve_priors
    with pytest.raises(bl.SpecificationError, match="'potty'"):
        resolve_priors({"potty": bl.HalfNormal(1)}, design)
    with pytest.raises(bl.SpecificationError, match="needs one on sd or variance"):
        resolve_priors({"1|pot": bl.Normal(0, 1)}, design)
    with pytest.raises(bl.SpecificationError, match="positive"):
        bl.HalfNormal(-1)


@pytest.mark.parametrize("kwargs, match", [
    ({"draws": 0}, "draws"), ({"chains": 1.5}, "chains"), ({"sampler": "stan"}, "sampler"),
    ({"target_accept": 1.2}, "target_accept"), ({"parameterization": "fancy"}, "parameterization"),
    ({"random_seed": -3}, "random_seed"),
])
def test_bad_options(mats, kwargs, match):
    y, X, Z = mats
    with pytest.raises(bl.SpecificationError, match=match):
        bl.fit_matrices(y, X, {"pot": Z}, **kwargs)
