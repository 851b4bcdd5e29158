"""Correlated blocks of k ≥ 3 and large crossed designs (issue 19): bayes_lmm against a
hand-written PyMC model on the same simulated data, in one run.

Usage (from the project root; nothing else running on the machine):

    python benchmarks/maximal.py [--workloads k3,kb07,crossed70k] [--peer-draws 1000] [--peer-tune 1000]

Workloads:

* ``k3``: ``score ~ Machine + (Machine|Worker)``, 6 workers × 3 machines × 3 replicates
  (54 rows, the shape of nlme's Machines), a 3×3 correlated block.
* ``kb07``: ``rt ~ 1 + a*b*c + (1 + a + b + c | subj) + (1 + a + b + c | item)``, 56 subjects ×
  32 items, 1,789 rows (the shape of MixedModels.jl's kb07), 4×4 correlated blocks on both.
* ``crossed70k``: ``y ~ 1 + service + (1|s) + (1|d) + (1|dept)``, 73,421 rows, 2,972 × 1,128
  crossed levels, 14 departments (the shape of lme4's InstEval).

The peer is what a PyMC user writes: ``pm.LKJCholeskyCov`` (η = 2; its ``sd_dist`` a HalfNormal
at the largest of bayes_lmm's scales for the block's SDs: an array of scales makes nutpie's
initial point fail with "cannot set WRITEABLE flag" in PyMC 5.28), u non-centered, sampled by nutpie with the numba backend.
Both sample 4 chains × 1000 tune + 1000 draws at their defaults (the peer at target_accept
0.8, nutpie's default). Each bayes_lmm fit runs once untimed first (warm caches);
the peer's ``compile_s`` is reported apart from ``sample_s``. ESS/s is the smallest bulk ESS
over the standard deviations (and σ_e) ÷ the time: ``wall_s`` (bl.fit, everything) for
bayes_lmm, ``sample_s`` (sampling only, compilation excluded) for the peer, which favours the peer.
The peer's draws can be cut (``--peer-draws 300 --peer-tune 300`` for crossed70k, where its
4 × 2,000 iterations would take far longer than bayes_lmm's fit); ESS/s stays comparable.

For crossed70k the run also reports ``bl.reml`` (seconds, and whether every REML SD and lme4's
lies inside bayes_lmm's 95% interval) and the process's peak resident memory after the fit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machines_like(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    G = np.array([[16.0, 8.0, 5.0], [8.0, 25.0, 10.0], [5.0, 10.0, 20.0]])
    mu = {"A": 52.0, "B": 60.0, "C": 66.0}
    rows = []
    for w in range(6):
        u = np.linalg.cholesky(G) @ rng.standard_normal(3)
        for j, m in enumerate("ABC"):
            rows += [(f"W{w}", m, mu[m] + u[j] + rng.normal(0, 1.0)) for _ in range(3)]
    return pd.DataFrame(rows, columns=["Worker", "Machine", "score"])


KB07_TRUTH = {"subj": ([300.0, 60.0, 40.0, 30.0], 0.3), "item": ([350.0, 50.0, 60.0, 40.0], -0.2),
              "Residual": 670.0}


def kb07_like(seed: int = 0, n_subj: int = 56, n_item: int = 32) -> pd.DataFrame:
    """Every subject sees every item once, the 8 conditions of a, b, c (±1) rotating."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_subj):
        for i in range(n_item):
            cond = (s + i) % 8
            rows.append((f"s{s:02d}", f"i{i:02d}", (cond & 1) * 2 - 1, ((cond >> 1) & 1) * 2 - 1,
                         ((cond >> 2) & 1) * 2 - 1, s, i))
    d = pd.DataFrame(rows, columns=["subj", "item", "a", "b", "c", "si", "ii"]).iloc[3:].reset_index(drop=True)
    d[["a", "b", "c"]] = d[["a", "b", "c"]].astype(float)  # ±1 contrasts, numeric on purpose

    def cov(sds, r):
        C = np.full((4, 4), r)
        np.fill_diagonal(C, 1.0)
        return np.outer(sds, sds) * C

    us = rng.multivariate_normal(np.zeros(4), cov(*KB07_TRUTH["subj"]), n_subj)
    ui = rng.multivariate_normal(np.zeros(4), cov(*KB07_TRUTH["item"]), n_item)
    W = np.column_stack([np.ones(len(d)), d.a, d.b, d.c])
    mu = (2180.0 - 70.0 * d.a + 330.0 * d.b + 75.0 * d.c - 10.0 * d.a * d.b + 20.0 * d.a * d.c - 5.0 * d.b * d.c
          + 15.0 * d.a * d.b * d.c)
    d["rt"] = mu + (W * us[d.si]).sum(1) + (W * ui[d.ii]).sum(1) + rng.normal(0, KB07_TRUTH["Residual"], len(d))
    return d.drop(columns=["si", "ii"])


def instEval_like():
    """tests/data/crossed70k.py's design (lme4's REML values for it are in tests/data)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "data"))
    from crossed70k import simulate

    return simulate()


WORKLOADS = {
    "k3": ("score ~ Machine + (Machine|Worker)", machines_like),
    "kb07": ("rt ~ 1 + a*b*c + (1 + a + b + c | subj) + (1 + a + b + c | item)", kb07_like),
    "crossed70k": ("y ~ 1 + service + (1|s) + (1|d) + (1|dept)", instEval_like),
}


def peer_model(design, prior_set):
    """The hand-written PyMC model of a design: LKJCholeskyCov per correlated block, u non-centered."""
    import pymc as pm
    import pytensor.tensor as pt

    coords = {"coef": list(design.x_names)}
    with pm.Model(coords=coords) as model:
        mu_b = np.array([dict(p.params)["mu"] for p in prior_set.beta])
        sd_b = np.array([dict(p.params)["sigma"] for p in prior_set.beta])
        beta = pm.Normal("beta", mu_b, sd_b, dims="coef")
        mu = pt.dot(design.X, beta)
        sds = []
        for j, blk in enumerate(design.blocks):
            k, L = blk.n_coefs, blk.n_levels
            scales = np.array([dict(prior_set.component(c).params)["sigma"] for c in blk.components])
            z = pm.Normal(f"z_{j}", 0.0, 1.0, shape=(L, k))
            if blk.correlated and k > 1:
                chol, _, sd = pm.LKJCholeskyCov(f"chol_{j}", n=k, eta=2.0, sd_dist=pm.HalfNormal.dist(sigma=float(scales.max()), shape=k),
                                                compute_corr=True)
                u = pt.dot(z, chol.T)
            else:
                sd = pm.HalfNormal(f"sd_{j}", scales, shape=k)
                u = z * sd
            sds.append(pm.Deterministic(f"sd_block_{j}", sd))
            mu = mu + (u[blk.index] * blk.values).sum(axis=1)
        sigma = pm.HalfNormal("sigma_e", dict(prior_set.residual.params).get("sigma", design.y.std()))
        pm.Normal("y", mu, sigma, observed=design.y)
    return model, [f"sd_block_{j}" for j in range(len(design.blocks))] + ["sigma_e"]


def min_ess(idata, names) -> float:
    import arviz as az

    return float(min(np.min(az.ess(idata, var_names=[n], method="bulk")[n].values) for n in names))


def run_bayes_lmm(formula, data):
    import resource

    import bayes_lmm as bl

    bl.fit(formula, data, random_seed=0, progressbar=False, draws=20, tune=20)  # warm the caches
    t = time.perf_counter()
    fit = bl.fit(formula, data, random_seed=1, progressbar=False)
    wall = time.perf_counter() - t
    d = fit.diagnostics()
    ess = min_ess(fit.idata, ["sigma"])
    return fit, {"wall_s": round(wall, 2), "min_ess_sd": round(ess), "ess_per_s": round(ess / wall, 1),
                 "divergences": int(d.divergences), "max_rhat": round(float(d.max_rhat), 4),
                 "min_ess_all": round(float(d.min_ess_bulk)), "sampler": fit.sampler,
                 "parameterization": fit.parameterization, "why": fit.form.reason,
                 "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


KB07_BETA = {"Intercept": 2180.0, "a": -70.0, "b": 330.0, "c": 75.0, "a:b": -10.0, "a:c": 20.0, "b:c": -5.0,
             "a:b:c": 15.0}


def kb07_recovered(fit):
    """Each true β and SD of kb07_like with its 95% interval and whether it lies inside."""
    fe, vc = fit.fixed_effects(), fit.variance_components()
    rows = {}
    for name, value in KB07_BETA.items():
        rows[name] = [value, round(float(fe.loc[name, "lower"]), 1), round(float(fe.loc[name, "upper"]), 1)]
    for group in ("subj", "item"):
        for coef, value in zip(["1", "a", "b", "c"], KB07_TRUTH[group][0]):
            name = f"{coef}|{group}"
            rows[name] = [value, round(float(vc.loc[name, "sd_lower"]), 1), round(float(vc.loc[name, "sd_upper"]), 1)]
    rows["Residual"] = [KB07_TRUTH["Residual"], round(float(vc.loc["Residual", "sd_lower"]), 1),
                        round(float(vc.loc["Residual", "sd_upper"]), 1)]
    outside = [k for k, (v, lo, hi) in rows.items() if not lo <= v <= hi]
    return {"inside": f"{len(rows) - len(outside)} of {len(rows)}", "outside": outside, "values": rows}


def reml_inside(fit, formula, data):
    """bl.reml's time, and whether each REML SD (bayes_lmm's and lme4's) is inside the 95% interval."""
    import bayes_lmm as bl

    t = time.perf_counter()
    reml = bl.reml(formula, data)
    seconds = time.perf_counter() - t
    vc = fit.variance_components()
    lme4 = json.loads((Path(__file__).resolve().parent.parent / "tests" / "data" / "crossed70k_lme4.json").read_text())
    rows = {}
    for name in vc.index:
        lo, hi = float(vc.loc[name, "sd_lower"]), float(vc.loc[name, "sd_upper"])
        mine, theirs = float(reml.variance_components.loc[name, "sd"]), lme4["sd"][name]
        rows[name] = {"interval": [round(lo, 4), round(hi, 4)], "reml": round(mine, 4), "lme4": round(theirs, 4),
                      "inside": bool(lo <= mine <= hi and lo <= theirs <= hi)}
    return {"reml_s": round(seconds, 1), "sd": rows}


def run_peer(fit, draws, tune):
    import arviz as az
    import nutpie

    model, names = peer_model(fit.design, fit.prior_set)
    t = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=4, seed=1, progress_bar=False)
    sample_s = time.perf_counter() - t
    ess = min_ess(idata, names)
    div = int(idata.sample_stats["diverging"].sum())
    rhat = float(max(np.max(az.rhat(idata, var_names=[n])[n].values) for n in names))
    return {"draws": draws, "tune": tune, "compile_s": round(compile_s, 1), "sample_s": round(sample_s, 2),
            "min_ess_sd": round(ess),
            "ess_per_s": round(ess / sample_s, 1), "divergences": div, "max_rhat": round(rhat, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="k3,kb07,crossed70k")
    ap.add_argument("--peer-draws", type=int, default=1000)
    ap.add_argument("--peer-tune", type=int, default=1000)
    ap.add_argument("--no-peer", action="store_true", help="bayes_lmm only")
    args = ap.parse_args()
    out = {}
    for name in args.workloads.split(","):
        formula, make = WORKLOADS[name]
        data = make()
        fit, mine = run_bayes_lmm(formula, data)
        row = {"bayes_lmm": mine}
        if name == "crossed70k":
            row["reml"] = reml_inside(fit, formula, data)
        if name == "kb07":
            row["truth"] = kb07_recovered(fit)
        print(json.dumps({name: row}, indent=1), flush=True)
        if not args.no_peer:
            peer = run_peer(fit, args.peer_draws, args.peer_tune)
            row["pymc_nutpie"] = peer
            row["ess_per_s_ratio"] = round(mine["ess_per_s"] / max(peer["ess_per_s"], 1e-9), 1)
        out[name] = row
        print(json.dumps({name: row}, indent=1), flush=True)


if __name__ == "__main__":
    main()
