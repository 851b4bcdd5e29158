"""bayes_lmm against bambi on the same data, in one run, each fit in a fresh process.

Usage (from the project root):

    python benchmarks/compare_bambi.py [--bambi-python PATH] [--cases seedling,sleepstudy,crossed,big]
    python benchmarks/compare_bambi.py --scaling
    python benchmarks/compare_bambi.py --cold ...     # every fit with empty caches
    python benchmarks/compare_bambi.py --new-structures   # first fits of new formulas, one machine

bambi pins an older formulae than bayes_lmm uses, so it lives in its own environment; each
tool runs in an environment holding only what it needs (a development environment with the
test extras adds IPython, which PyMC then imports, and Dask, which xarray then imports on
first use: about 0.8 s more for whichever tool runs there):

    python -m venv /tmp/bambi-env && /tmp/bambi-env/bin/pip install bambi nutpie "matplotlib<3.11"
    python -m venv /tmp/bl-env && /tmp/bl-env/bin/pip install -e ".[fast]"
    python benchmarks/compare_bambi.py --bambi-python /tmp/bambi-env/bin/python \
        --bayes-lmm-python /tmp/bl-env/bin/python

Every fit: 4 chains × 1000 tune + 1000 draws, peers at their defaults, in a fresh process
each. ``wall_s`` is the issue's measure: model building, compilation and sampling (for
bayes_lmm also the exact draws of β and u and the convergence diagnostics ``bl.fit``
computes); ``import_s`` is importing the library (PyMC and its dependencies, ≈ 3 s for
either tool) and ``total_s`` the sum, reported with its own ESS/s and ratios. Each fit is
run once untimed first, so what is cached on disk (PyTensor's compiled C modules
for both tools, bayes_lmm's compiled nutpie callbacks) is used as in a user's second session;
``--cold`` instead starts every fit with empty caches (a user's first fit on a new machine):
a fresh PyTensor compile directory, ``NUMBA_CACHE_DIR``, ``HOME``, ``XDG_CACHE_HOME`` and
bayes_lmm's kernel directory ``BAYES_LMM_CACHE_DIR``. ``--new-structures`` starts from such
an empty machine, fits the notes' Example 1 once, then one new formula after another (another
covariate, another factor, a slope, nesting, crossing), each in a fresh process that finds only
what the fits before it left in the caches.
ESS/s = smallest bulk ESS over the fixed effects and the standard deviations ÷ wall time
(``ess_per_s``) or ÷ total time including the import (``ess_per_s_total``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "models" / "data"

CASES = {
    "seedling": ("weight ~ genotype + (1|pot)", "notes' Example 1 (10 rows, 4 pots)"),
    "sleepstudy": ("Reaction ~ Days + (Days|Subject)", "sleepstudy, correlated slopes (180 rows, 18 subjects)"),
    "crossed": ("y ~ x + (1|a) + (1|b)", "crossed design (144 rows, 24 + 6 levels)"),
    "big": ("y ~ x + (1|g)", "100,000 rows, 2,000 groups, random intercept"),
    "nested": ("y ~ x + (1|batch/cask)", "nested intercepts (120 rows, 10 batches × 3 casks)"),
}
#: the series of --new-structures: (data case, formula), each formula new to the machine
NEW_STRUCTURES = [
    ("seedling", "weight ~ genotype + (1|pot)"),
    ("crossed", "y ~ x + (1|a)"),  # another covariate and another factor
    ("crossed", "y ~ 1 + (1|b)"),
    ("crossed", "y ~ x + (1|a) + (1|b)"),  # a second, crossed factor
    ("sleepstudy", "Reaction ~ Days + (1|Subject)"),
    ("sleepstudy", "Reaction ~ Days + (Days|Subject)"),  # a correlated slope
    ("sleepstudy", "Reaction ~ Days + (Days||Subject)"),
    ("nested", "y ~ x + (1|batch/cask)"),
    ("nested", "y ~ x + (1|batch) + (1|batch:cask) + (1|cask)"),
]


def make_data(case: str, n: int = 100_000, groups: int = 2_000) -> pd.DataFrame:
    if case == "seedling":
        df = pd.read_csv(DATA / "seedling.csv")
        df["genotype"] = df["genotype"].astype(str)
        df["pot"] = df["pot"].astype(str)
        return df
    if case == "sleepstudy":
        df = pd.read_csv(DATA / "sleepstudy.csv")
        df["Subject"] = df["Subject"].astype(str)
        return df
    rng = np.random.default_rng(42)
    if case == "crossed":
        a, b = np.repeat(np.arange(24), 6), np.tile(np.arange(6), 24)
        x = rng.normal(size=144)
        y = 1 + 0.5 * x + rng.normal(0, 1, 24)[a] + rng.normal(0, 0.7, 6)[b] + rng.normal(size=144)
        return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})
    if case == "nested":
        batch, cask = np.repeat(np.arange(10), 12), np.tile(np.repeat(np.arange(3), 4), 10)
        x = rng.normal(size=120)
        y = (2 + 0.3 * x + rng.normal(0, 1, 10)[batch] + rng.normal(0, 0.5, 30)[batch * 3 + cask]
             + rng.normal(0, 0.8, 120))
        return pd.DataFrame({"y": y, "x": x, "batch": batch.astype(str), "cask": cask.astype(str)})
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 1, groups)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def _min_ess(idata, names) -> float:
    import arviz as az

    ess = az.ess(idata.posterior[names], method="bulk")
    return float(min(np.min(ess[v].to_numpy()) for v in names))


def worker(tool: str, case: str, n: int, groups: int, formula: str | None = None) -> dict:
    """Run one fit in this process and return its measurements."""
    import warnings

    warnings.simplefilter("ignore")
    formula = formula or CASES[case][0]
    data = make_data(case, n, groups)
    begin = time.perf_counter()
    if tool.startswith("bayes_lmm"):
        import bayes_lmm as bl

        start = time.perf_counter()
        sampler = tool.split(":")[1] if ":" in tool else "auto"
        fit = bl.fit(formula, data, random_seed=1, progressbar=False, sampler=sampler)
        wall = time.perf_counter() - start
        div = fit.diagnostics().divergences
        ess = _min_ess(fit.idata, ["beta", "sigma"])
        rhat = fit.diagnostics().max_rhat
        extra = {"parameterization": fit.parameterization, "sampler": fit.sampler,
                 "log_density": fit.idata.posterior.attrs.get("log_density", "")}
    else:
        import bambi as bmb

        start = time.perf_counter()
        method = "nutpie" if tool == "bambi:nutpie" else "pymc"
        model = bmb.Model(formula, data)
        idata = model.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False,
                          inference_method=method)
        wall = time.perf_counter() - start
        names = [v for v in idata.posterior.data_vars
                 if ("|" not in v or v.endswith("_sigma")) and not v.endswith("_offset") and v != "mu"]
        div = int(idata.sample_stats["diverging"].sum())
        ess = _min_ess(idata, names)
        import arviz as az

        rhat = float(max(np.max(az.rhat(idata.posterior[names])[v].to_numpy()) for v in names))
        extra = {}
    total = wall + (start - begin)
    return {"tool": tool, "case": case, "formula": formula, "n": len(data), "wall_s": wall, "import_s": start - begin,
            "total_s": total, "divergences": div, "min_ess_bulk": ess, "ess_per_s": ess / wall,
            "ess_per_s_total": ess / total, "max_rhat": rhat, **extra}


def empty_caches() -> dict[str, str]:
    """Environment variables pointing every cache a fit reads at a new empty directory."""
    root = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    for sub in ("pytensor", "numba", "home", "xdg", "bayes_lmm"):
        (root / sub).mkdir()
    return {"PYTENSOR_FLAGS": f"base_compiledir={root / 'pytensor'}", "NUMBA_CACHE_DIR": str(root / "numba"),
            "HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "xdg"),
            "BAYES_LMM_CACHE_DIR": str(root / "bayes_lmm")}


def run_fresh(python: str, tool: str, case: str, n: int = 100_000, groups: int = 2_000,
              timeout: float = 3600, cold: bool = False, caches: dict | None = None,
              formula: str | None = None) -> dict:
    """One fit in a fresh process; ``cold`` gives it empty caches (:func:`empty_caches`: a
    machine that never compiled anything), ``caches`` the given cache directories."""
    cmd = [python, str(Path(__file__).resolve()), "--worker", tool, case, str(n), str(groups)]
    if formula:
        cmd += ["--formula", formula]
    env = dict(os.environ)
    env.pop("BAYES_LMM_CACHE_DIR", None)
    if cold or caches:
        env.update(caches or empty_caches())
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "case": case, "error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"tool": tool, "case": case, "error": out.stderr.strip().splitlines()[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def new_structures(python: str) -> None:
    """The --new-structures series on one initially empty machine (see the module docstring)."""
    caches = empty_caches()
    rows = []
    for case, formula in NEW_STRUCTURES:
        r = run_fresh(python, "bayes_lmm", case, caches=caches, formula=formula)
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(pd.DataFrame(rows)[["formula", "wall_s", "total_s", "log_density", "divergences", "min_ess_bulk",
                              "ess_per_s"]].round(3).to_string(index=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=4, metavar=("TOOL", "CASE", "N", "GROUPS"))
    p.add_argument("--formula", help="(worker) fit this formula instead of the case's")
    p.add_argument("--bambi-python", default=sys.executable)
    p.add_argument("--bayes-lmm-python", default=sys.executable,
                   help="interpreter for bayes_lmm's fits (e.g. an environment with only bayes_lmm[fast])")
    p.add_argument("--cases", default="seedling,sleepstudy,crossed,big")
    p.add_argument("--skip-bambi-pymc-big", action="store_true", default=True,
                   help="bambi's PyMC NUTS needs about 30 min on the big case (default: skip)")
    p.add_argument("--scaling", action="store_true", help="bayes_lmm only: 1e3 → 1e6 rows")
    p.add_argument("--cold", action="store_true",
                   help="every fit starts with empty caches (first fit on a new machine)")
    p.add_argument("--new-structures", action="store_true",
                   help="bayes_lmm only: a series of new formulas on one initially empty machine")
    args = p.parse_args()
    if args.worker:
        tool, case, n, groups = args.worker
        print(json.dumps(worker(tool, case, int(n), int(groups), args.formula)))
        return
    if args.new_structures:
        new_structures(args.bayes_lmm_python)
        return
    if args.scaling:
        rows = []
        for n, groups in ((1_000, 100), (10_000, 1_000), (100_000, 2_000), (100_000, 20_000), (1_000_000, 20_000)):
            if not args.cold:
                run_fresh(args.bayes_lmm_python, "bayes_lmm", "big", n, groups)  # untimed: fills the caches
            r = run_fresh(args.bayes_lmm_python, "bayes_lmm", "big", n, groups, cold=args.cold)
            r["groups"] = groups
            rows.append(r)
            print(json.dumps(r), flush=True)
        print(pd.DataFrame(rows)[["n", "groups", "import_s", "wall_s", "total_s", "divergences", "min_ess_bulk",
                                  "ess_per_s"]].to_string(index=False))
        return
    rows = []
    for case in args.cases.split(","):
        for tool in ("bayes_lmm", "bambi:pymc", "bambi:nutpie"):
            if tool == "bambi:pymc" and case == "big" and args.skip_bambi_pymc_big:
                continue
            python = args.bayes_lmm_python if tool.startswith("bayes_lmm") else args.bambi_python
            if not args.cold:
                run_fresh(python, tool, case)  # untimed: fills the disk caches, as a first session would
            r = run_fresh(python, tool, case, cold=args.cold)
            rows.append(r)
            print(json.dumps(r), flush=True)
    table = pd.DataFrame(rows)
    for case in table["case"].unique():
        sub = table[table.case == case]
        for ref in ("bambi:pymc", "bambi:nutpie"):
            for col, label in (("ess_per_s", ""), ("ess_per_s_total", "_total")):
                base = sub.loc[sub.tool == ref, col] if col in sub else []
                if len(base):
                    table.loc[table.case == case, f"ratio{label}_vs_{ref}"] = sub[col] / float(base.iloc[0])
    cols = [c for c in ("case", "tool", "import_s", "wall_s", "total_s", "divergences", "max_rhat",
                        "min_ess_bulk", "ess_per_s", "ratio_vs_bambi:pymc", "ratio_vs_bambi:nutpie",
                        "ess_per_s_total", "ratio_total_vs_bambi:pymc", "ratio_total_vs_bambi:nutpie",
                        "error") if c in table]
    print(table[cols].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
