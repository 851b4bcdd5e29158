"""Two checkouts of bayes_lmm on compare_bambi's cases, warm, interleaved, in one run.

Usage (from the project root; each interpreter imports the checkout it should time, e.g. a
shell script ``PYTHONPATH=/path/to/checkout exec python3 "$@"``):

    python benchmarks/compare_versions.py OLD_PYTHON NEW_PYTHON [--repeats 3]

Every fit is compare_bambi's worker in a fresh process (4 chains × 1000 + 1000); each case is
run once untimed per version first (so both find their compiled callbacks on disk), then the
two versions alternate ``--repeats`` times. Prints the medians and NEW/OLD ratios.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
from compare_bambi import CASES, run_fresh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old_python")
    p.add_argument("new_python")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", default=",".join(CASES))
    args = p.parse_args()
    versions = {"old": args.old_python, "new": args.new_python}
    rows = []
    for case in args.cases.split(","):
        for python in versions.values():
            run_fresh(python, "bayes_lmm", case)  # untimed: fills the disk caches
        for _ in range(args.repeats):
            for label, python in versions.items():
                r = run_fresh(python, "bayes_lmm", case) | {"version": label}
                rows.append(r)
                print(json.dumps(r), flush=True)
    cols = ["wall_s", "total_s", "min_ess_bulk", "ess_per_s", "divergences"]
    med = pd.DataFrame(rows).groupby(["case", "version"])[cols].median().unstack("version")
    for col in ("wall_s", "ess_per_s"):
        med[(col, "new/old")] = med[(col, "new")] / med[(col, "old")]
    print(med.round(3).to_string())


if __name__ == "__main__":
    main()
