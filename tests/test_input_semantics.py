"""What a formula and its data mean (issue 18, input items): stray '|', text among numbers,
±inf, reference levels, quoted names and I() arithmetic, integer-coded factors.

All structural (design matrices, REML, errors); nothing here samples.
"""

import re
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayes_lmm as bl
from bayes_lmm import api
from bayes_lmm.priors import resolve_priors
from bayes_lmm.results import Fit
from bayes_lmm.spec import ModelSpec, SamplerOptions


def _fit_with_draws(formula, data, **kwargs):
    """A Fit whose β draws are made up: enough for marginal means and contrasts, no sampling."""
    design = bl.design_from_formula(formula, data, **kwargs)
    beta = np.random.default_rng(0).normal(size=(1, 40, design.p))
    idata = az.from_dict(posterior={"beta": beta}, coords={"coef": list(design.x_names)},
                         dims={"beta": ["coef"]})
    return Fit(spec=ModelSpec(formula=formula), options=SamplerOptions(), design=design,
               prior_set=resolve_priors({}, design), idata=idata, parameterization="marginal",
               sampler="pymc", target_accept=0.9)


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    n = 60
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n) + 5, "my x": rng.normal(size=n),
        "a.b": rng.normal(size=n), "g": np.repeat(list("abcdef"), 10),
        "my g": np.tile(list("pqrst"), 12),
        "trt": pd.Categorical(np.tile(["ctl", "lo", "hi"], 20), categories=["hi", "ctl", "lo", "unused"]),
    })


# ----------------------------------------------------------------- 1. '|' outside parentheses

@pytest.mark.parametrize("formula, term", [
    ("Reaction ~ Days | Subject", "(Days | Subject)"),
    ("Reaction ~ Days + 1|Subject", "(1|Subject)"),
    ("Reaction ~ Days + Days||Subject", "(Days||Subject)"),
    ("Reaction ~ Days + (1|Subject) + Days|Subject", "(Days|Subject)"),
])
def test_bar_outside_parentheses_names_the_corrected_term(sleepstudy, formula, term):
    # regression: the '|' term was dropped and a model without random effects was fitted
    for build in (bl.design_from_formula, bl.reml, bl.fit):
        with pytest.raises(bl.SpecificationError, match="go in parentheses") as info:
            build(formula, sleepstudy)
        assert term in str(info.value)


def test_bar_correction_offers_to_keep_the_fixed_slope(sleepstudy):
    with pytest.raises(bl.SpecificationError) as info:
        bl.design_from_formula("Reaction ~ Days | Subject", sleepstudy)
    assert "'Reaction ~ (Days | Subject)'" in str(info.value)
    assert "'Reaction ~ Days + (Days | Subject)'" in str(info.value)


# ----------------------------------------------------------------- 2. text among numbers

def _with_text(sleepstudy, as_strings):
    df = sleepstudy.copy()
    days = df["Days"].astype(str) if as_strings else df["Days"].astype(object)
    days[[5, 17]] = "n/a"
    return df.assign(Days=days)


@pytest.mark.parametrize("as_strings", [False, True])
def test_text_in_a_numeric_column_names_column_value_and_rows(sleepstudy, as_strings):
    # regression: the column silently became a factor with 11 levels (or failed deep in formulae)
    df = _with_text(sleepstudy, as_strings)
    for build in (bl.design_from_formula, bl.reml):
        with pytest.raises(bl.DataError, match=r"'Days'.*\['n/a'\].*\[5, 17\].*factors=\['Days'\]"):
            build("Reaction ~ Days + (1|Subject)", df)


def test_text_in_a_numeric_column_stays_a_factor_when_asked(sleepstudy, frame):
    df = _with_text(sleepstudy, as_strings=True)
    for kwargs, formula in (({"factors": ["Days"]}, "Reaction ~ Days + (1|Subject)"),
                            ({}, "Reaction ~ C(Days) + (1|Subject)")):
        design = bl.design_from_formula(formula, df, **kwargs)
        assert design.p == 11 and "Days[n/a]" in design.x_names
    # a column of text (some of it digits) is a factor, as before
    df = frame.assign(dose=np.tile(["low", "mid", "high"], 20), code=np.tile(["A1", "2"], 30))
    design = bl.design_from_formula("y ~ dose + code + (1|g)", df)
    assert design.x_names == ("Intercept", "dose[low]", "dose[mid]", "code[A1]")


def test_numbers_held_as_python_objects_are_a_covariate(sleepstudy):
    # regression: formulae failed on an object column ("Variable is of an unrecognized type")
    df = sleepstudy.assign(Days=sleepstudy["Days"].astype(object))
    design = bl.design_from_formula("Reaction ~ Days + (1|Subject)", df)
    assert design.x_names == ("Intercept", "Days")
    np.testing.assert_array_equal(design.X[:, 1], sleepstudy["Days"])
    assert df["Days"].dtype == object


def test_text_in_the_response_names_the_rows(sleepstudy):
    df = sleepstudy.assign(Reaction=sleepstudy["Reaction"].astype(object))
    df.loc[3, "Reaction"] = "missing"
    with pytest.raises(bl.DataError, match=r"'Reaction' is the response.*'missing'.*\[3\]"):
        bl.design_from_formula("Reaction ~ Days + (1|Subject)", df)


# ----------------------------------------------------------------- 6. ±inf

@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_inf_in_a_covariate_is_a_data_error_naming_column_and_rows(sleepstudy, value):
    # regression: fit said "prior Normal: sigma must be finite…, got nan", reml raised scipy's ValueError
    df = sleepstudy.assign(Days=sleepstudy["Days"].astype(float))
    df.loc[[4, 9], "Days"] = value
    for build in (bl.design_from_formula, bl.reml, bl.fit):
        with pytest.raises(bl.DataError, match=r"'Days' has 2 infinite values \(rows \[4, 9\]\)"):
            build("Reaction ~ Days + (Days|Subject)", df)
    # explicit matrices were already checked; they stay so
    y, X = np.arange(10.0), np.column_stack([np.ones(10), np.arange(10.0)])
    Z = np.eye(2)[[0, 1] * 5]
    X[3, 1] = value
    for call in (bl.reml, lambda m: bl.fit_matrices(*m)):
        with pytest.raises(bl.DataError, match="row 3 column 'x1'"):
            call((y, X, {"g": Z}))
    Z[2, 0] = value
    with pytest.raises(bl.DataError, match="Z block 'g'.*row 2"):
        bl.reml((y, np.ones((10, 1)), {"g": Z}))


def test_inf_in_the_response_and_from_a_transform(sleepstudy):
    df = sleepstudy.copy()
    df.loc[7, "Reaction"] = np.inf
    for build in (bl.design_from_formula, bl.reml):
        with pytest.raises(bl.DataError, match=r"'Reaction' has 1 infinite values \(rows \[7\]\)"):
            build("Reaction ~ Days + (1|Subject)", df)
    # log(0) = -inf is made by the formula, not in the data: the X column is named
    with pytest.raises(bl.DataError, match=r"X column 'log\(Days\)' has 18 non-finite values \(rows \[0, 10,"):
        bl.reml("Reaction ~ log(Days) + (1|Subject)", sleepstudy)
    with pytest.raises(bl.DataError, match=r"'log\(Days\)\|Subject' has 18 non-finite"):
        bl.reml("Reaction ~ 1 + (log(Days)|Subject)", sleepstudy)


# ----------------------------------------------------------------- 7. reference levels

def test_categorical_category_order_sets_the_reference_and_unused_levels_are_dropped(frame):
    # regression: formulae sorted the levels (reference 'ctl') and kept none of the order
    design = bl.design_from_formula("y ~ trt + (1|g)", frame)
    assert design.x_names == ("Intercept", "trt[ctl]", "trt[lo]")
    np.testing.assert_array_equal(design.X[:, 1], (frame["trt"] == "ctl").to_numpy())
    assert list(design.data["trt"].cat.categories) == ["hi", "ctl", "lo"]
    assert list(frame["trt"].cat.categories) == ["hi", "ctl", "lo", "unused"]  # caller's data untouched
    reml = bl.reml("y ~ trt + (1|g)", frame)
    assert list(reml.fixed_effects.index) == ["Intercept", "trt[ctl]", "trt[lo]"]


def test_marginal_means_and_pairwise_contrasts_work_with_unused_categories(frame):
    # regression: an unused category broke marginal_means and contrast(pairwise=...)
    fit = _fit_with_draws("y ~ trt + (1|g)", frame)
    means = fit.marginal_means("trt")
    assert list(means.index) == ["hi", "ctl", "lo"]
    beta = fit.draws("beta").mean(axis=0)
    np.testing.assert_allclose(means["mean"].to_numpy(), [beta[0], beta[0] + beta[1], beta[0] + beta[2]])
    pairs = fit.contrast(pairwise="trt")
    assert list(pairs.index) == ["trt[hi] - trt[ctl]", "trt[hi] - trt[lo]", "trt[ctl] - trt[lo]"]


@pytest.mark.parametrize("term", ["C(g, Treatment('c'))", 'C(g, Treatment(reference="c"))',
                                  "C(g, levels=['c', 'a', 'b', 'd', 'e', 'f'])",
                                  "C(g, Treatment, levels=['c', 'a', 'b', 'd', 'e', 'f'])"])
def test_treatment_reference_and_levels_in_the_formula(frame, term):
    design = bl.design_from_formula(f"y ~ {term} + (1|`my g`)", frame)
    assert design.x_names == ("Intercept", "g[a]", "g[b]", "g[d]", "g[e]", "g[f]")
    np.testing.assert_array_equal(design.X[:, 1], (frame["g"] == "a").to_numpy())
    assert not design.X[(frame["g"] == "c").to_numpy(), 1:].any()


def test_levels_order_and_reference_of_a_numeric_code(seedling):
    design = bl.design_from_formula("weight ~ C(genotype, Treatment(2)) + (1|pot)", seedling)
    assert design.x_names == ("Intercept", "genotype[1]")
    same = bl.design_from_formula("weight ~ C(genotype) + (1|pot)", seedling)
    asked = bl.design_from_formula("weight ~ genotype + (1|pot)", seedling, factors=["genotype"])
    assert same.x_names == asked.x_names == ("Intercept", "genotype[2]")
    np.testing.assert_array_equal(same.X, asked.X)


def test_new_data_is_encoded_with_the_training_levels(frame):
    design = bl.design_from_formula("y ~ C(g, Treatment('c')) + trt + (1|`my g`)", frame)
    new = pd.DataFrame({"g": ["c", "a", "f"], "trt": ["lo", "hi", "ctl"], "my g": ["p", "q", "r"]})
    Xn = design.fixed_encoder.new_matrix(new)
    rows = [frame.index[(frame.g == g) & (frame.trt == t)][0] for g, t in zip(new.g, new.trt)]
    np.testing.assert_array_equal(Xn, design.X[rows])
    shuffled = new.assign(g=pd.Categorical(new.g, categories=["f", "a", "c"]),
                          trt=pd.Categorical(new.trt, categories=["lo", "ctl", "hi", "x"]))
    np.testing.assert_array_equal(design.fixed_encoder.new_matrix(shuffled), design.X[rows])
    with pytest.raises(bl.DataError, match=r"levels \(zz\) in 'g'"):
        design.fixed_encoder.new_matrix(new.assign(g=["c", "zz", "a"]))


@pytest.mark.parametrize("term, error, match", [
    ("C(g, Treatment('zz'))", bl.DataError, r"reference level 'zz'.*levels are \['a', 'b'"),
    ("C(g, levels=['a', 'b'])", bl.DataError, r"'g' has values \['c', 'd', 'e', 'f'\]"),
    ("C(g, Sum)", bl.SpecificationError, r"'Sum' is not supported"),
    ("C(g, levels=['a', 'a'])", bl.SpecificationError, "repeated"),
    ("C(g, Treatment('a')) + C(g, Treatment('b'))", bl.SpecificationError, "two different"),
    ("C(x) + x", bl.SpecificationError, r"'x' is used both as a factor"),
    ("C(nope)", bl.DataError, r"'nope' in C\(nope\) is not in the data"),
])
def test_factor_call_errors_name_the_problem(frame, term, error, match):
    with pytest.raises(error, match=match):
        bl.design_from_formula(f"y ~ {term} + (1|`my g`)", frame)


# ----------------------------------------------------------------- 8. quoting and I()

def test_backticks_and_q_quote_names_with_spaces_and_dots(frame):
    # regression: a name with a space could not be written at all, in the fixed or grouping part
    for formula in ("y ~ `my x` + `a.b` + (1 + `my x`|`my g`)",
                    'y ~ Q("my x") + Q("a.b") + (1 + Q("my x")|Q("my g"))',
                    "y ~ `my x` + a.b + (`my x`|`my g`)"):
        design = bl.design_from_formula(formula, frame)
        assert design.x_names == ("Intercept", "my x", "a.b")
        np.testing.assert_array_equal(design.X[:, 1], frame["my x"])
        assert design.blocks[0].group == "my g" and design.blocks[0].coef_names == ("1", "my x")
        assert design.blocks[0].levels == ("p", "q", "r", "s", "t")
    fit = _fit_with_draws("y ~ `my g` + (1|g)", frame)
    assert list(fit.marginal_means("my g").index) == ["p", "q", "r", "s", "t"]


def test_i_does_arithmetic_over_columns(frame):
    design = bl.design_from_formula(
        "y ~ I(x**2) + I(x - 3) + I(`my x` * a.b) + {-x / 2} + I(log(x) + 1) + (1|g)", frame)
    assert design.x_names == ("Intercept", "I(x**2)", "I(x - 3)", "I(my x * a.b)", "I(-x / 2)",
                              "I(log(x) + 1)")
    x = frame["x"].to_numpy()
    expected = np.column_stack([x**2, x - 3, frame["my x"] * frame["a.b"], -x / 2, np.log(x) + 1])
    np.testing.assert_allclose(design.X[:, 1:], expected)
    new = frame.iloc[:3].assign(x=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(design.fixed_encoder.new_matrix(new)[:, 1], [1.0, 4.0, 9.0])
    slope = bl.design_from_formula("y ~ 1 + (0 + I(x - 5)|g)", frame)
    np.testing.assert_allclose(slope.blocks[0].values[:, 0], x - 5)


@pytest.mark.parametrize("expr, piece", [
    ("__import__('os').system('echo hi')", "__import__('os').system('echo hi')"),
    ("open('f')", "open('f')"),
    ("(lambda: 1)()", "(lambda: 1)()"),
    ("x ^ 2", "x ^ 2"),
    ("x if x else 1", "x if x else 1"),
    ("'text'", "'text'"),
    ("x[0]", "x[0]"),
    ("[x, 1]", "[x, 1]"),
    ("scale(x)", "scale(x)"),
    ("x < 2", "x < 2"),
    ("True", "True"),
])
def test_i_rejects_anything_but_arithmetic(frame, expr, piece):
    with pytest.raises(bl.SpecificationError, match=re.escape(repr(piece))):
        bl.design_from_formula(f"y ~ I({expr}) + (1|g)", frame)


def test_a_model_card_may_use_i_but_cannot_run_code(tmp_path, seedling, capsys):
    from bayes_lmm.cli import main

    seedling.to_csv(tmp_path / "d.csv", index=False)
    card = tmp_path / "card.toml"
    card.write_text('[model]\ndata = "d.csv"\nformula = "weight ~ I(genotype * 2 - 1) + (1|`pot`)"\n')
    assert main(["reml", str(card)]) == 0
    assert "I(genotype * 2 - 1)" in capsys.readouterr().out
    marker = tmp_path / "pwned"
    card.write_text('[model]\ndata = "d.csv"\nformula = '
                    f'"weight ~ I(__import__(\'os\').system(\'touch {marker}\')) + (1|pot)"\n')
    assert main(["reml", str(card)]) == 2
    assert "is not allowed" in capsys.readouterr().err
    assert not marker.exists()


def test_i_on_a_text_column_is_a_data_error(frame):
    with pytest.raises(bl.DataError, match="I\\(g \\* 2\\) does arithmetic on column 'g'"):
        bl.design_from_formula("y ~ I(g * 2) + (1|`my g`)", frame)


# ----------------------------------------------------------------- 9. integer-coded factors

def _hints(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if "distinct integers" in str(w.message)]


def test_integer_coded_fixed_column_gets_a_factor_hint(seedling, sleepstudy, monkeypatch):
    hints = _hints(lambda: bl.reml("weight ~ genotype + (1|pot)", seedling))
    assert len(hints) == 1
    # bl.fit says so before it samples (the sampling itself is stubbed out here)
    monkeypatch.setattr(api, "run_design", lambda *args, **kwargs: None)
    assert _hints(lambda: bl.fit("weight ~ genotype + (1|pot)", seedling)) == hints
    assert "'genotype'" in hints[0] and "factors=['genotype']" in hints[0] and "C(genotype)" in hints[0]
    # asked for as a factor, a genuine covariate (Days: 10 values), or only a grouping: no hint
    assert not _hints(lambda: bl.reml("weight ~ genotype + (1|pot)", seedling, factors=["genotype"]))
    assert not _hints(lambda: bl.reml("weight ~ C(genotype) + (1|pot)", seedling))
    assert not _hints(lambda: bl.reml("Reaction ~ Days + (1|Subject)", sleepstudy))
    assert not _hints(lambda: bl.reml("weight ~ 1 + (1|genotype:pot)", seedling))
