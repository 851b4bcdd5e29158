"""Shared data and fitted models (session-scoped so that each model is sampled once)."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl

DATA = Path(__file__).resolve().parent.parent / "models" / "data"
FAST = dict(sampler="nutpie", draws=500, tune=500, chains=2, progressbar=False)


def notes_example1_matrices():
    """X and Z of the notes' Example 1, typed in by hand from the notes."""
    X = np.array([[1, 1, 0]] * 5 + [[1, 0, 1]] * 5, dtype=float)
    Z = np.zeros((10, 4))
    for row, pot in enumerate([0, 0, 0, 1, 1, 2, 2, 2, 3, 3]):
        Z[row, pot] = 1
    return X, Z


def notes_example2_matrices():
    """X = 1_4 ⊗ [1_8, I_4 ⊗ 1_2] and Z = [I_4 ⊗ 1_8, I_16 ⊗ 1_2], as in the notes."""
    one = lambda k: np.ones((k, 1))  # noqa: E731
    X = np.kron(one(4), np.hstack([one(8), np.kron(np.eye(4), one(2))]))
    Z_litter = np.kron(np.eye(4), one(8))
    Z_animal = np.kron(np.eye(16), one(2))
    return X, Z_litter, Z_animal


@pytest.fixture(scope="session")
def seedling():
    return pd.read_csv(DATA / "seedling.csv")


@pytest.fixture(scope="session")
def litter():
    return pd.read_csv(DATA / "litter.csv")


@pytest.fixture(scope="session")
def sleepstudy():
    return pd.read_csv(DATA / "sleepstudy.csv")


@pytest.fixture(scope="session")
def dyestuff():
    return pd.read_csv(DATA / "dyestuff.csv")


def quiet_fit(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="session")
def seedling_fit(seedling):
    """The notes' Example 1 as a formula with the notes' full coding."""
    return quiet_fit(bl.fit, "weight ~ genotype + (1|pot)", seedling, coding="full",
                     factors=["genotype"], random_seed=11, **FAST)


@pytest.fixture(scope="session")
def litter_fit(litter):
    return quiet_fit(bl.fit, "response ~ treatment + (1|litter/animal)", litter, coding="full",
                     factors=["treatment"], random_seed=12, **FAST)


@pytest.fixture(scope="session")
def sleep_fit(sleepstudy):
    return quiet_fit(bl.fit, "Reaction ~ Days + (Days|Subject)", sleepstudy, random_seed=13,
                     **{**FAST, "draws": 1000, "chains": 2})


@pytest.fixture(scope="session")
def dyestuff_fit(dyestuff):
    return quiet_fit(bl.fit, "Yield ~ 1 + (1|Batch)", dyestuff, random_seed=14,
                     **{**FAST, "draws": 1000})
