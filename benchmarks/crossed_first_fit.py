"""A new user's first fit of a wide crossed design (400 × 250 levels, 6,000 rows,
``y ~ x + (1|a) + (1|b)``): bayes_lmm at its defaults (``auto`` → the blocked Gibbs sampler)
against NUTS on its per-factor latent form (``sampler="nutpie"``, the PyMC graph compiled
inside the fit), each in a fresh process with every cache empty (PyTensor's compile
directory, NUMBA_CACHE_DIR, HOME, XDG_CACHE_HOME and bayes_lmm's kernel directory).

Usage (from the project root; nothing else running): ``python benchmarks/crossed_first_fit.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, pandas as pd
import bayes_lmm as bl
t1 = time.perf_counter()
rng = np.random.default_rng(2)
n = 6000
data = pd.DataFrame({"a": rng.integers(0, 400, n), "b": rng.integers(0, 250, n), "x": rng.normal(size=n)})
data["y"] = (5 + 0.5 * data.x + rng.normal(0, 0.6, 400)[data.a] + rng.normal(0, 0.9, 250)[data.b]
             + rng.normal(size=n))
data = data.astype({"a": str, "b": str})
t2 = time.perf_counter()
fit = bl.fit("y ~ x + (1|a) + (1|b)", data, random_seed=1, progressbar=False, sampler=sys.argv[1])
wall = time.perf_counter() - t2
d = fit.diagnostics()
print(json.dumps({"sampler": fit.sampler, "import_s": round(t1 - t0, 1), "fit_s": round(wall, 1),
                  "max_rhat": round(d.max_rhat, 3), "min_ess_bulk": round(d.min_ess_bulk),
                  "ess_per_s": round(d.min_ess_bulk / wall, 1)}))
"""


def main() -> None:
    rows = []
    for sampler in ("auto", "nutpie"):
        with tempfile.TemporaryDirectory() as tmp:
            dirs = {k: os.path.join(tmp, k) for k in ("pt", "numba", "home", "xdg", "bl")}
            for d in dirs.values():
                os.makedirs(d)
            env = os.environ | {"PYTENSOR_FLAGS": f"base_compiledir={dirs['pt']}", "NUMBA_CACHE_DIR": dirs["numba"],
                                "HOME": dirs["home"], "XDG_CACHE_HOME": dirs["xdg"], "BAYES_LMM_CACHE_DIR": dirs["bl"],
                                "PYTHONWARNINGS": "ignore"}
            out = subprocess.run([sys.executable, "-c", CHILD, sampler], env=env, cwd=ROOT, capture_output=True,
                                 text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"ESS/s ratio (auto / nutpie): {rows[0]['ess_per_s'] / rows[1]['ess_per_s']:.0f}×")


if __name__ == "__main__":
    main()
