"""Time and peak memory of one fit at scale (random intercept, ``y ~ x + (1|g)``).

Usage (from the project root):

    python benchmarks/memory.py --rows 100000 --groups 2000
    python benchmarks/memory.py --rows 1000000 --groups 20000

Runs in this process at the library's defaults (4 chains × 1000 tune + 1000 draws) and prints
the wall time of each stage and the peak resident memory (``ru_maxrss``) before and after the
fit, next to what a dense n × q Z alone would need.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import pandas as pd


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--groups", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    t0 = time.perf_counter()
    import bayes_lmm as bl

    t_import = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    g = rng.integers(0, args.groups, args.rows)
    x = rng.normal(size=args.rows)
    y = 1 + 0.5 * x + rng.normal(0, 1, args.groups)[g] + rng.normal(size=args.rows)
    data = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    base = peak_mb()
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bl.fit("y ~ x + (1|g)", data, random_seed=args.seed, progressbar=False)
    wall = time.perf_counter() - t1
    d = fit.diagnostics()
    vc = fit.variance_components()
    print(f"rows={args.rows:,} groups={args.groups:,} parameterization={fit.parameterization} sampler={fit.sampler}")
    print(f"import {t_import:.1f} s; fit (design + build + compile + sample + u draws) {wall:.1f} s")
    print(f"peak RSS: {base:.0f} MB before the fit (imports + data), {peak_mb():.0f} MB after")
    print(f"a dense Z would need {args.rows * args.groups * 8 / 1e9:.2f} GB; "
          f"u draws in the posterior: {fit.idata.posterior['u'].nbytes / 1e6:.0f} MB")
    print(f"divergences {d.divergences}, max R-hat {d.max_rhat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}")
    print(vc[["sd_median", "sd_lower", "sd_upper"]].round(3).to_string())


if __name__ == "__main__":
    main()
