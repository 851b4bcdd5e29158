"""Throughput of bl.fit_many on Dask against a plain Python loop over bl.fit, in one run.

Usage (from the project root):

    python benchmarks/many.py                       # 1,000 responses, 200-row nested design
    python benchmarks/many.py --responses 100       # a quicker look

The design: 10 batches × 4 plates × 5 rows, ``~ dose + (1|batch/plate)``; every response has
its own variance fractions. Each configuration runs in a fresh process (so each pays its own
compilation), at the library's defaults (4 chains × 1000 tune + 1000 draws). Fits per minute
count everything: cluster start, compilation, sampling, gathering the tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd


def make_data(responses: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    batch, plate = np.repeat(np.arange(10), 20), np.repeat(np.arange(40), 5)
    data = pd.DataFrame({"batch": [f"b{i}" for i in batch], "plate": [f"p{i % 4}" for i in plate],
                         "dose": rng.normal(size=200)})
    wide = {}
    for r in range(responses):
        sd = rng.uniform(0.3, 1.5, size=3)
        wide[f"gene{r:04d}"] = (2 + 0.5 * data["dose"] + sd[0] * rng.normal(size=10)[batch]
                                + sd[1] * rng.normal(size=40)[plate] + sd[2] * rng.normal(size=200)).to_numpy()
    return data, pd.DataFrame(wide)


FORMULA = "~ dose + (1|batch/plate)"


def run_one(mode: str, responses: int) -> dict:
    import warnings

    import bayes_lmm as bl

    data, wide = make_data(responses)
    start = time.perf_counter()
    if mode == "loop":
        failed = 0
        for name in wide.columns:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    bl.fit(f"{name} ~ dose + (1|batch/plate)", data.assign(**{name: wide[name]}),
                           random_seed=1, progressbar=False)
                except bl.BayesLMMError:
                    failed += 1
    else:
        from distributed import Client, LocalCluster

        workers = int(mode.split("-")[1])
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            many = bl.fit_many(FORMULA, data, wide, client=client, random_seed=1, progressbar=False)
        failed = len(many.failures)
    seconds = time.perf_counter() - start
    return {"mode": mode, "responses": responses, "seconds": seconds,
            "fits_per_minute": responses / seconds * 60, "failed": failed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--responses", type=int, default=1000)
    p.add_argument("--modes", default="loop,dask-1,dask-2")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(run_one(args.worker, args.responses)))
        return
    rows = []
    for mode in args.modes.split(","):
        out = subprocess.run([sys.executable, __file__, "--worker", mode, "--responses", str(args.responses)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    loop = table.loc[table["mode"] == "loop", "fits_per_minute"]
    if len(loop):
        table["ratio_vs_loop"] = table["fits_per_minute"] / float(loop.iloc[0])
    print("| " + " | ".join(table.columns) + " |")
    print("|" + "---|" * len(table.columns))
    for row in table.round(2).itertuples(index=False):
        print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
