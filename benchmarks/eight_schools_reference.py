"""Long reference run of the eight schools written directly in PyMC (non-centered), kept as
test data (tests/data/eight_schools_reference.json) for issue 17's KnownSD check.

    y_j ~ N(θ_j, s_j²) with s_j known,  θ_j = μ + τ·η_j,  η_j ~ N(0, 1),
    μ ~ Normal(0, 5),  τ ~ HalfCauchy(5).

Run: python benchmarks/eight_schools_reference.py  (about 2 minutes on 2 cores)
"""

import json
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

ROOT = Path(__file__).resolve().parents[1]
DRAWS = int(sys.argv[1]) if len(sys.argv) > 1 else 25_000


def main() -> None:
    data = pd.read_csv(ROOT / "tests" / "data" / "eight_schools.csv")
    with pm.Model(coords={"school": list(data.school)}):
        mu = pm.Normal("mu", 0.0, 5.0)
        tau = pm.HalfCauchy("tau", 5.0)
        eta = pm.Normal("eta", 0.0, 1.0, dims="school")
        theta = pm.Deterministic("theta", mu + tau * eta, dims="school")
        pm.Normal("y", theta, data.sigma.to_numpy(float), observed=data.y.to_numpy(float), dims="school")
        idata = pm.sample(draws=DRAWS, tune=2000, chains=4, target_accept=0.99, random_seed=20261202,
                          progressbar=False, compute_convergence_checks=False)
    post = idata.posterior
    out = {"model": __doc__.split("\n\n")[1].strip(), "draws": DRAWS, "chains": 4,
           "divergences": int(idata.sample_stats.diverging.sum()), "parameters": {}}
    for name, values in [("mu", post.mu), ("tau", post.tau)] + [
            (f"theta[{s}]", post.theta.sel(school=s)) for s in data.school]:
        arr = values.to_numpy()  # (chain, draw)
        out["parameters"][name] = {
            "mean": float(arr.mean()), "sd": float(arr.std()),
            # sd / sqrt(ESS of the mean); for the SD the delta method on E[(x − m)²]
            # (ArviZ 0.23's mcse fails on NumPy arrays here)
            "mcse_mean": float(arr.std() / np.sqrt(az.ess(arr, method="mean"))),
            "mcse_sd": float(((arr - arr.mean()) ** 2).std() / np.sqrt(az.ess((arr - arr.mean()) ** 2, method="mean"))
                             / (2 * arr.std())),
            "ess_bulk": float(az.ess(arr)), "rhat": float(az.rhat(arr)),
        }
    path = ROOT / "tests" / "data" / "eight_schools_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["parameters"]["tau"]), out["divergences"])


if __name__ == "__main__":
    main()
