"""Simulation-based calibration of the shipped templates (seedling and dyestuff cards).

Usage (from the project root):

    python benchmarks/sbc.py                      # 200 replications per template
    python benchmarks/sbc.py --replications 50 --out sbc_out

Each replication draws (β, σ, σ_e) and y from the priors below, fits y with the library's
defaults otherwise (sampler and parameterization "auto"), and ranks the truth among 99
thinned posterior draws. Prints, per parameter, the coverage of the central 50% and 90%
intervals and a chi-square test of rank uniformity (10 bins).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bayes_lmm as bl  # noqa: E402
from bayes_lmm.cards import load_card  # noqa: E402
from bayes_lmm.sbc import simulation_based_calibration  # noqa: E402

#: data-independent priors on the scale of each template's data
PRIORS = {
    "seedling": {"fixed": bl.Normal(10, 5), "random": bl.HalfNormal(2), "Residual": bl.HalfNormal(2)},
    "dyestuff": {"fixed": bl.Normal(1500, 100), "random": bl.HalfNormal(50), "Residual": bl.HalfNormal(50)},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replications", type=int, default=200)
    p.add_argument("--templates", default="seedling,dyestuff")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default=None, help="directory for sbc_<template>.csv (ranks) and sbc_table.csv")
    args = p.parse_args()
    tables = []
    for name in args.templates.split(","):
        card = load_card(ROOT / "models" / f"{name}.toml")
        res = simulation_based_calibration(
            card.formula, card.load_data(), priors=PRIORS[name], replications=args.replications,
            coding=card.coding, factors=card.factors, draws=args.draws, tune=args.tune, chains=args.chains,
            random_seed=args.seed, progressbar=True)
        table = res.table().assign(template=name)
        divergent = int((res.ranks.groupby("replication")["divergences"].first() > 0).sum())
        print(f"\n{name}: {args.replications} replications, {res.failures} failed, "
              f"{divergent} with divergences, {res.seconds:.0f} s")
        print(table.round(3).to_string(index=False))
        tables.append(table)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            res.ranks.to_csv(out / f"sbc_{name}.csv", index=False)
    if args.out:
        import pandas as pd

        pd.concat(tables).to_csv(Path(args.out) / "sbc_table.csv", index=False)


if __name__ == "__main__":
    main()
