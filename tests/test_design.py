"""Structural tests: design matrices, G, R and Var(y) against the notes, no sampling."""

import numpy as np
import pandas as pd
import pytest
from conftest import notes_example1_matrices, notes_example2_matrices

import bayes_lmm as bl


def test_example1_formula_matrices_match_the_notes(seedling):
    design = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling, coding="full",
                                    factors=["genotype"])
    X, Z = notes_example1_matrices()
    np.testing.assert_array_equal(design.X, X)
    np.testing.assert_array_equal(design.Z, Z)
    assert design.x_names == ("Intercept", "genotype[1]", "genotype[2]")
    assert design.rank == 2
    assert design.u_labels == ["pot[11]", "pot[12]", "pot[21]", "pot[22]"]


def test_example1_var_y_is_sigma_p_ZZt_plus_sigma_e_I(seedling):
    X, Z = notes_example1_matrices()
    design = bl.design_from_matrices(seedling.weight, X, {"pot": Z})
    sp, se = 1.7, 0.6
    G = design.G({"pot": np.array([[sp**2]])})
    np.testing.assert_allclose(G, sp**2 * np.eye(4))
    V = design.Z @ G @ design.Z.T + se**2 * np.eye(10)
    np.testing.assert_allclose(V, sp**2 * Z @ Z.T + se**2 * np.eye(10))
    sym = design.var_y_structure(rows=[0, 1, 2, 3])
    assert sym.iloc[0, 0] == "σ²_pot + σ²_e"
    assert sym.iloc[0, 1] == "σ²_pot"
    assert sym.iloc[0, 3] == "0"


def test_example2_kronecker_design_matches_formula(litter):
    X, Z_l, Z_a = notes_example2_matrices()
    design = bl.design_from_formula("response ~ treatment + (1|litter/animal)", litter,
                                    coding="full", factors=["treatment"])
    np.testing.assert_array_equal(design.X, X)
    np.testing.assert_array_equal(design.Z, np.hstack([Z_l, Z_a]))
    assert design.components == ("1|litter", "1|litter:animal")
    # u ordered as the notes: ℓ1..ℓ4, then a11, a21, a31, a41, a12, ...
    assert design.u_labels[:6] == ["litter[1]", "litter[2]", "litter[3]", "litter[4]",
                                   "litter:animal[1:a11]", "litter:animal[1:a21]"]


def test_example2_symbolic_var_y_block_equals_notes_table(litter):
    X, Z_l, Z_a = notes_example2_matrices()
    design = bl.design_from_matrices(litter.response, X, {"litter": Z_l, "animal": Z_a})
    sym = design.var_y_structure(rows=range(8))
    ell, a, e = "σ²_litter", "σ²_animal", "σ²_e"
    expected = np.full((8, 8), ell, dtype=object)
    for i in range(8):
        for j in range(8):
            if i // 2 == j // 2:
                expected[i, j] = f"{ell} + {a}"
            if i == j:
                expected[i, j] = f"{ell} + {a} + {e}"
    assert (sym.to_numpy() == expected).all()
    # rows of different litters are uncorrelated
    assert design.var_y_structure(rows=[0, 8]).iloc[0, 1] == "0"


def test_example2_var_y_numeric_equals_kronecker_form(litter):
    X, Z_l, Z_a = notes_example2_matrices()
    design = bl.design_from_matrices(litter.response, X, {"litter": Z_l, "animal": Z_a})
    sl, sa, se = 3.0, 2.0, 1.0
    G = design.G({"litter": [[sl**2]], "animal": [[sa**2]]})
    V = design.Z @ G @ design.Z.T + se**2 * np.eye(32)
    ones = lambda k: np.ones((k, k))  # noqa: E731
    expected = sl**2 * np.kron(np.eye(4), ones(8)) + sa**2 * np.kron(np.eye(16), ones(2)) + se**2 * np.eye(32)
    np.testing.assert_allclose(V, expected)


def test_correlated_slope_block_structure(sleepstudy):
    design = bl.design_from_formula("Reaction ~ Days + (Days|Subject)", sleepstudy)
    (blk,) = design.blocks
    assert blk.correlated and blk.coef_names == ("1", "Days")
    assert blk.components == ("1|Subject", "Days|Subject")
    assert design.Z.shape == (180, 36)
    np.testing.assert_array_equal(design.Z[3, :2], [1, 3])  # subject 308, day 3
    sym = design.var_y_structure(rows=[0, 1])
    assert sym.iloc[0, 1] == "σ²_Subject + σ_(1,Days)|Subject"
    assert sym.iloc[1, 1] == "σ²_Subject + 2·σ_(1,Days)|Subject + σ²_Days|Subject + σ²_e"


def test_uncorrelated_double_bar_expands(sleepstudy):
    design = bl.design_from_formula("Reaction ~ Days + (Days||Subject)", sleepstudy)
    assert [b.correlated for b in design.blocks] == [False, False]
    assert design.components == ("1|Subject", "Days|Subject")


def test_crossed_factors_and_interactions():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"plate": np.repeat(list("abcdef"), 4), "sample": np.tile(list("wxyz"), 6),
                       "Variety": np.tile(["A", "B", "C"], 8), "nitro": rng.normal(size=24)})
    df["y"] = rng.normal(size=24)
    design = bl.design_from_formula("y ~ Variety * nitro + (1|plate) + (1|sample)", df)
    assert design.components == ("1|plate", "1|sample")
    assert design.x_names == ("Intercept", "Variety[B]", "Variety[C]", "nitro",
                              "Variety[B]:nitro", "Variety[C]:nitro")
    assert design.var_y_structure(rows=[0, 4]).iloc[0, 1] == "σ²_sample"


def test_user_data_is_never_modified(seedling):
    before = seedling.copy(deep=True)
    bl.design_from_formula("weight ~ genotype + (1|pot)", seedling, factors=["genotype", "pot"])
    pd.testing.assert_frame_equal(seedling, before)
    y = seedling.weight.to_numpy().copy()
    X, Z = notes_example1_matrices()
    Xc, Zc = X.copy(), Z.copy()
    bl.design_from_matrices(y, X, {"pot": Z})
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(Z, Zc)


def test_dataframe_blocks_name_levels(seedling):
    X, _ = notes_example1_matrices()
    Z = pd.get_dummies(seedling.pot).astype(float)
    design = bl.design_from_matrices(seedling.weight, pd.DataFrame(X, columns=["mu", "g1", "g2"]), {"pot": Z})
    assert design.x_names == ("mu", "g1", "g2")
    assert design.blocks[0].levels == ("11", "12", "21", "22")


def test_general_z_block_uses_dense_product():
    rng = np.random.default_rng(1)
    Z = np.abs(rng.normal(size=(12, 3)))
    design = bl.design_from_matrices(rng.normal(size=12), np.ones((12, 1)), {"m": Z})
    assert design.blocks[0].dense is not None
    np.testing.assert_allclose(design.Z, Z)


def test_transforms_in_formula_are_functions_not_columns(sleepstudy):
    # regression: "sqrt(Days)" was read as a column "sqr" and "log(...)" as "lo"
    design = bl.design_from_formula("log(Reaction) ~ Days + sqrt(Days) + (1|Subject)", sleepstudy)
    np.testing.assert_allclose(design.y, np.log(sleepstudy["Reaction"].to_numpy()))
    assert design.x_names == ("Intercept", "Days", "sqrt(Days)")
    np.testing.assert_allclose(design.X[:, 2], np.sqrt(sleepstudy["Days"].to_numpy()))
    with pytest.raises(bl.DataError, match="'Dayz'"):
        bl.design_from_formula("log(Reaction) ~ sqrt(Dayz) + (1|Subject)", sleepstudy)
