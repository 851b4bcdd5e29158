"""The compiled kernel's on-disk cache survives faults: each gives a correct fit (recompiled,
or another directory, or the PyMC graph), never an exception or other draws.

Each fault runs a fresh process whose kernel cache directory (``BAYES_LMM_CACHE_DIR``) is
prepared with the fault; its draws must equal, bit for bit, those of the same fit here.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import DATA

import bayes_lmm as bl
from bayes_lmm import kernel_sampling, nutpie_cache, sampling
from bayes_lmm.likelihood import kernel

FIT = dict(draws=100, tune=100, chains=2, random_seed=7, progressbar=False)
SCRIPT = textwrap.dedent("""
    import json, warnings
    import pandas as pd
    import bayes_lmm as bl
    warnings.simplefilter("ignore")
    fit = bl.fit("Yield ~ 1 + (1|Batch)", pd.read_csv({path!r}), **{fit!r})
    print(json.dumps({{"sigma": fit.draws("sigma").ravel().tolist(),
                      "log_density": fit.idata.posterior.attrs["log_density"]}}))
""")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(dyestuff):
    fit = bl.fit("Yield ~ 1 + (1|Batch)", dyestuff, **FIT)
    assert fit.idata.posterior.attrs["log_density"] == "compiled kernel"
    assert "sampler nutpie on the compiled kernel, parameterization marginal" in fit.summary()
    return fit.draws("sigma").ravel().tolist()


def _library_name():
    return kernel.library_name(kernel._SOURCE.read_bytes(), kernel._compiler())


def _start(env_changes: dict, unset=()):
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(env_changes)
    code = SCRIPT.format(path=str(DATA / "dyestuff.csv"), fit=FIT)
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _result(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _fit_in_process(env_changes: dict, unset=()):
    return _result(_start(env_changes, unset))


@pytest.mark.parametrize("fault", ["truncated", "corrupt", "another_version"])
def test_a_broken_cache_file_is_rebuilt(tmp_path, reference, fault):
    target = tmp_path / _library_name()
    if fault == "truncated":
        good = tmp_path / "good"
        assert kernel.load([good]) is not None
        target.write_bytes((good / _library_name()).read_bytes()[:3000])
    elif fault == "corrupt":
        target.write_bytes(np.random.default_rng(0).bytes(20_000))
    else:  # the same file name, but the interface of another version
        source = kernel._SOURCE.read_text().replace(f"#define KERNEL_ABI {kernel.ABI}", "#define KERNEL_ABI 999")
        (tmp_path / "old.c").write_text(source)
        subprocess.run([*kernel._compiler(), *kernel.compile_flags(), "-o", str(target), str(tmp_path / "old.c"), "-lm"],
                       check=True)
    before = target.read_bytes()
    result = _fit_in_process({"BAYES_LMM_CACHE_DIR": str(tmp_path)})
    assert result["log_density"] == "compiled kernel"
    assert result["sigma"] == reference
    assert target.read_bytes() != before  # rebuilt in place
    assert kernel.load([tmp_path]) is not None


def test_two_processes_writing_the_same_entry(tmp_path, reference):
    """Two processes (Dask workers) compile into one empty directory at once."""
    procs = [_start({"BAYES_LMM_CACHE_DIR": str(tmp_path)}) for _ in range(2)]
    for proc in procs:
        assert _result(proc)["sigma"] == reference
    # the library and its checksum, no temporary left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [_library_name(), _library_name() + ".sha256"]


def test_a_read_only_or_missing_directory(tmp_path, reference):
    # /proc refuses new directories even to root: the next candidate directory is used
    result = _fit_in_process({"BAYES_LMM_CACHE_DIR": "/proc/bayes_lmm_cache"})
    assert result["log_density"] == "compiled kernel" and result["sigma"] == reference
    missing = tmp_path / "not" / "yet" / "there"
    result = _fit_in_process({"BAYES_LMM_CACHE_DIR": str(missing)})
    assert result["sigma"] == reference and (missing / _library_name()).exists()


def test_home_unset(reference):
    result = _fit_in_process({}, unset=("HOME", "XDG_CACHE_HOME", "BAYES_LMM_CACHE_DIR"))
    assert result["log_density"] == "compiled kernel" and result["sigma"] == reference


def test_no_kernel_at_all_samples_the_pymc_graph(dyestuff, monkeypatch, reference, caplog, tmp_path):
    """No compiler or no writable directory anywhere: the PyMC graph is compiled and
    sampled instead, saying so once with the expected time; the posterior agrees with the
    kernel's (its draws differ: other initial points) and the fit says which it used."""
    monkeypatch.setattr(kernel_sampling.kernel, "load", lambda directories=None: None)
    # neither this process nor the disk holds the compiled graph: it is compiled
    monkeypatch.setattr(sampling, "_COMPILED", {})
    monkeypatch.setattr(nutpie_cache, "_manifest_path", lambda key: tmp_path / "manifest.pkl")
    with caplog.at_level(logging.WARNING, logger="bayes_lmm"):
        fit = bl.fit("Yield ~ 1 + (1|Batch)", dyestuff, **(FIT | {"draws": 400, "tune": 400}))
    notes = [r.getMessage() for r in caplog.records if r.name == "bayes_lmm"]
    assert len(notes) == 1 and "no precompiled kernel" in notes[0] and "1–2 minutes" in notes[0]
    assert fit.idata.posterior.attrs["log_density"] == "PyMC graph"
    assert "on the compiled kernel" not in fit.summary()
    ref = np.array(reference).reshape(-1, 2)  # (draws, components) of both chains
    got = fit.draws("sigma").reshape(-1, 2)
    # the residual SD is well determined: means within a few Monte Carlo errors
    assert abs(got[:, 1].mean() - ref[:, 1].mean()) < 4 * ref[:, 1].std() / np.sqrt(50)


def test_no_compiler(tmp_path, monkeypatch):
    monkeypatch.setattr(kernel, "_compiler", lambda: None)
    assert kernel.load([tmp_path]) is None
    monkeypatch.undo()
    assert shutil.which(kernel._compiler()[0]) is not None
