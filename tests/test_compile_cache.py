"""Compiled models are cached on disk: a later process loads them instead of compiling."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import nutpie
import pytest
from conftest import DATA

import bayes_lmm as bl
from bayes_lmm import nutpie_cache
from bayes_lmm.graph import build_model, model_signature
from bayes_lmm.priors import resolve_priors

SAMPLE = dict(draws=150, tune=150, chains=2, seed=3, progress_bar=False)


def _model(data):
    design = bl.design_from_formula("Yield ~ 1 + (1|Batch)", data)
    priors = resolve_priors({}, design)
    return build_model(design, priors, parameterization="marginal"), ("test", model_signature(design, priors, "marginal"))


def _sigma(compiled):
    return nutpie.sample(compiled, **SAMPLE).posterior["sigma"].to_numpy()


def test_cached_callbacks_sample_exactly_like_nutpies_own(dyestuff):
    model, key = _model(dyestuff)
    manifest = nutpie_cache._manifest_path(key)
    manifest.unlink(missing_ok=True)
    built = nutpie_cache.compile_nutpie(model, structure_key=key)
    assert built.logp_func is not None and manifest.exists()
    np.testing.assert_array_equal(_sigma(built), _sigma(nutpie.compile_pymc_model(model)))

    # same structure, other data: loaded from the manifest without building PyTensor
    # functions, and every data array is read through nutpie's user-data record
    other = dyestuff.assign(Yield=dyestuff["Yield"] * 3.0 - 700.0)
    model2, key2 = _model(other)
    assert key2 == key
    loaded = nutpie_cache.compile_nutpie(model2, structure_key=key)
    assert loaded.logp_func is None
    np.testing.assert_array_equal(_sigma(loaded), _sigma(nutpie.compile_pymc_model(model2)))


def test_a_stale_or_broken_manifest_falls_back_to_compiling(dyestuff):
    model, key = _model(dyestuff)
    manifest = nutpie_cache._manifest_path(key)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_bytes(b"not a pickle")
    compiled = nutpie_cache.compile_nutpie(model, structure_key=key)
    assert compiled.logp_func is not None  # compiled afresh, and the manifest rewritten
    assert nutpie_cache.compile_nutpie(model, structure_key=key).logp_func is None


def test_a_new_process_loads_the_compiled_model(dyestuff):
    """The first fit of a structure in a fresh process reuses what an earlier process compiled,
    and draws exactly what the earlier process drew with the same seed (a latent form: the
    exact forms sample the compiled kernel and compile no PyMC graph)."""
    script = textwrap.dedent("""
        import json, warnings
        import pandas as pd
        import bayes_lmm as bl
        from bayes_lmm import sampling
        warnings.simplefilter("ignore")
        data = pd.read_csv({path!r})
        fit = bl.fit("Yield ~ 1 + (1|Batch)", data, sampler="nutpie", draws=200, tune=200,
                     chains=2, random_seed=11, progressbar=False, parameterization="noncentered")
        (compiled,) = sampling._COMPILED.values()
        print(json.dumps({{"from_manifest": compiled.logp_func is None,
                          "sigma": fit.draws("sigma").ravel().tolist()}}))
    """)
    code = script.format(path=str(DATA / "dyestuff.csv"))
    first = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout.strip().splitlines()[-1])
    second = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    assert second["from_manifest"]
    assert second["sigma"] == pytest.approx(first["sigma"], rel=0, abs=0)


def test_clear_compiled_cache_removes_the_disk_cache(dyestuff):
    model, key = _model(dyestuff)
    nutpie_cache.compile_nutpie(model, structure_key=key)
    assert nutpie_cache._manifest_path(key).exists()
    assert bl.clear_compiled_cache(disk=True) >= 3  # the manifest and both callbacks' files
    assert not nutpie_cache._manifest_path(key).exists()
    assert bl.clear_compiled_cache() == 0



@pytest.mark.parametrize("formula, priors, parameterization", [
    ("Reaction ~ Days + (Days|Subject)", {}, "noncentered"),  # Normal, HalfNormal, Exponential, Beta
    ("Reaction ~ Days + (Days|Subject)", {"Days": bl.StudentT(nu=4, mu=0, sigma=10),
                                          "Residual": bl.InverseGamma(alpha=3, beta=2)}, "marginal"),
    ("Reaction ~ Days + (1|Subject) + (0 + Days|Subject)", {"random": bl.HalfCauchy(beta=5)}, "centered"),
])
def test_initial_points_are_jittered_support_points(sleepstudy, formula, priors, parameterization):
    """The Python-linker initial point: PyMC's support point + U(−1, 1) jitter on the
    transformed scale for every free variable, reproducible by seed."""
    from bayes_lmm.spec import normalize_priors

    design = bl.design_from_formula(formula, sleepstudy)
    model = build_model(design, resolve_priors(dict(normalize_priors(priors)), design),
                        parameterization=parameterization)
    support = model.initial_point()  # PyMC's, without jitter
    seeded = nutpie_cache.seeded_initial_point(model)
    first, again, other = seeded(0), seeded(0), seeded(11)
    assert list(first) == list(support) and len(first) == len(model.free_RVs)
    for name in first:
        assert np.shape(first[name]) == np.shape(support[name])
        np.testing.assert_array_equal(first[name], again[name])
        assert np.all(np.abs(first[name] - support[name]) < 1) and np.all(first[name] != support[name])
        assert np.all(first[name] != other[name])
