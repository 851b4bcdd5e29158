"""Bayesian fits against lme4's REML values (shared/data/README.md)."""

import pytest

LME4_SLEEP = {"Intercept": 251.40510, "Days": 10.46729}
LME4_SLEEP_SD = {"1|Subject": 24.74066, "Days|Subject": 5.92214, "Residual": 25.59180}


def test_sleepstudy_against_lme4(sleep_fit):
    fe = sleep_fit.fixed_effects()
    for name, value in LME4_SLEEP.items():
        assert abs(fe.loc[name, "median"] - value) <= 0.5 * fe.loc[name, "sd"]
    vc = sleep_fit.variance_components()
    for name, sd in LME4_SLEEP_SD.items():
        assert vc.loc[name, "sd_lower"] <= sd <= vc.loc[name, "sd_upper"]
    corr = sleep_fit.random_effect_correlations()
    assert corr.loc["(1,Days)|Subject", "lower"] <= 0.06555 <= corr.loc["(1,Days)|Subject", "upper"]


def test_dyestuff_against_lme4(dyestuff_fit):
    fe = dyestuff_fit.fixed_effects()
    assert abs(fe.loc["Intercept", "median"] - 1527.5) <= 0.5 * fe.loc["Intercept", "sd"]
    vc = dyestuff_fit.variance_components()
    assert vc.loc["1|Batch", "sd_lower"] <= 42.0006 <= vc.loc["1|Batch", "sd_upper"]
    assert vc.loc["Residual", "sd_lower"] <= 49.5101 <= vc.loc["Residual", "sd_upper"]


def test_bayes_and_reml_side_by_side(dyestuff_fit):
    table = dyestuff_fit.compare_reml()
    assert {"bayes_median", "bayes_lower", "bayes_upper", "reml"} <= set(table.columns)
    assert table.loc[("sd", "1|Batch"), "reml"] == pytest.approx(42.0006, rel=1e-4)
