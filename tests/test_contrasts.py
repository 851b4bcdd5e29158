"""Contrast parsing and the estimability check (no sampling)."""

import numpy as np
import pytest
from conftest import notes_example1_matrices

import bayes_lmm as bl
from bayes_lmm.contrasts import check_estimable, contrast_matrix

NAMES = ("Intercept", "genotype[1]", "genotype[2]")


@pytest.mark.parametrize("row, ok", [
    ([0, 1, -1], True), ([1, 1, 0], True), ([1, 0, 1], True), ([0, 1, 0], False),
    ([1, 0, 0], False), ([2, 1, 1], True),
])
def test_notes_estimable_functions(row, ok):
    X, _ = notes_example1_matrices()
    C = np.array([row], dtype=float)
    if ok:
        check_estimable(["c"], C, X, NAMES)
    else:
        with pytest.raises(bl.EstimabilityError, match="'c'.*not estimable"):
            check_estimable(["c"], C, X, NAMES)


def test_error_names_the_unidentified_direction():
    X, _ = notes_example1_matrices()
    with pytest.raises(bl.EstimabilityError) as info:
        check_estimable(["gamma1"], np.array([[0.0, 1, 0]]), X, NAMES)
    msg = str(info.value)
    assert "gamma1" in msg and "Intercept" in msg and "genotype[1]" in msg and "genotype[2]" in msg


@pytest.mark.parametrize("spec, expected", [
    ("genotype[1] - genotype[2]", [[0, 1, -1]]),
    ("Intercept + genotype[1]", [[1, 1, 0]]),
    ("0.5*genotype[1] + genotype[2]/2", [[0, 0.5, 0.5]]),
    ("(genotype[1] - genotype[2]) * 2", [[0, 2, -2]]),
    ({"mu+g1": "Intercept + genotype[1]", "d": [0, 1, -1]}, [[1, 1, 0], [0, 1, -1]]),
    ({"d": {"genotype[1]": 1, "genotype[2]": -1}}, [[0, 1, -1]]),
    (np.array([[1, 0, 1]]), [[1, 0, 1]]),
    (["genotype[1] - genotype[2]", "Intercept + genotype[2]"], [[0, 1, -1], [1, 0, 1]]),
])
def test_contrast_specs(spec, expected):
    labels, C = contrast_matrix(spec, NAMES)
    np.testing.assert_allclose(C, expected)
    assert len(labels) == len(expected)


@pytest.mark.parametrize("spec, match", [
    ("genotype[3] - genotype[1]", "not a column"),
    ("genotype[1] ** 2", "only numbers"),
    ("genotype[1] + 1", "constant"),
    (np.ones((1, 4)), "3 columns"),
    ({"x": {"nope": 1}}, "'nope'"),
    ("__import__('os')", "not a column|only numbers"),
])
def test_bad_contrasts(spec, match):
    with pytest.raises(bl.SpecificationError, match=match):
        contrast_matrix(spec, NAMES)
