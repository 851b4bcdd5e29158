"""Simulation-based calibration of the shipped templates (seedling and dyestuff cards), of
one correlated residual structure (``ar1``: AR(1) within subject plus a random intercept,
12 subjects × 5 visits with gaps; :func:`ar1_template`), of a 3×3 correlated block
(``k3``: ``y ~ m + (m|g)``, 8 groups × 3 levels of m × 3 replicates; :func:`k3_template`) and of
the blocked Gibbs sampler (``gibbs``: crossed intercepts and an uncorrelated slope, 30 × 12
levels; :func:`gibbs_template`).

Usage (from the project root):

    python benchmarks/sbc.py                      # 200 replications per template
    python benchmarks/sbc.py --templates ar1      # the residual structure only
    python benchmarks/sbc.py --templates k3       # the 3×3 correlated block (LKJ through its CPCs)
    python benchmarks/sbc.py --templates gibbs    # the blocked Gibbs sampler (sampler="gibbs")
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
    "ar1": {"fixed": bl.Normal(0, 2), "random": bl.HalfNormal(1), "Residual": bl.HalfNormal(1),
            "residual_correlation": bl.LKJ(2.0)},
    "k3": {"fixed": bl.Normal(0, 2), "random": bl.HalfNormal(1), "Residual": bl.HalfNormal(0.5),
           "correlation": bl.LKJ(2.0)},
    "gibbs": {"fixed": bl.Normal(0, 2), "random": bl.HalfNormal(1), "Residual": bl.HalfNormal(1)},
}


def ar1_template():
    """(formula, data, residual) of the AR(1) template: 12 subjects, visits 1–6 with one
    missing per subject (gaps), a covariate x; the response is simulated in each replication."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(17)
    rows = [{"subject": f"s{s:02d}", "time": t, "x": float(rng.normal())}
            for s in range(12) for t in range(1, 7) if t != 2 + s % 5]
    data = pd.DataFrame(rows).assign(y=rng.normal(size=len(rows)))  # replaced in each replication
    return "y ~ x + (1|subject)", data, bl.AR1("time", "subject")


def k3_template():
    """(formula, data) of the 3×3 block: 8 groups, each seeing the three levels of m three
    times (72 rows); the response is simulated in each replication."""
    import numpy as np
    import pandas as pd

    rows = [{"g": f"g{g}", "m": m} for g in range(8) for m in "ABC" for _ in range(3)]
    return "y ~ m + (m|g)", pd.DataFrame(rows).assign(y=np.random.default_rng(3).normal(size=len(rows)))


def gibbs_template():
    """(formula, data) of the Gibbs template: factors a (30 levels) and b (12) crossed at
    random over 240 rows, a covariate x with a random slope on b uncorrelated with b's
    intercepts; sampled with ``sampler="gibbs"``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(23)
    data = pd.DataFrame({"a": [f"a{i}" for i in rng.integers(0, 30, 240)],
                         "b": [f"b{i}" for i in rng.integers(0, 12, 240)], "x": rng.normal(size=240)})
    return "y ~ x + (1|a) + (1|b) + (0 + x||b)", data.assign(y=rng.normal(size=240))


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
        if name == "ar1":
            formula, data, residual = ar1_template()
            extra = dict(residual=residual)
        elif name == "k3":
            (formula, data), extra = k3_template(), {}
        elif name == "gibbs":
            (formula, data), extra = gibbs_template(), {"sampler": "gibbs"}
        else:
            card = load_card(ROOT / "models" / f"{name}.toml")
            formula, data, extra = card.formula, card.load_data(), dict(coding=card.coding, factors=card.factors)
        res = simulation_based_calibration(
            formula, data, priors=PRIORS[name], replications=args.replications, draws=args.draws,
            tune=args.tune, chains=args.chains, random_seed=args.seed, progressbar=True, **extra)
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
