# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. How uncertain are variance components?
#
# With 4 pots, $\sigma_p$ is barely identified. We simulate the seedling design with more pots
# and watch the posterior of $\sigma_p$ narrow; then we change its prior; then we look at a
# data set where REML puts $\hat\sigma_p = 0$ while the posterior still gives a range.

# %% tags=["parameters"]
DRAWS, TUNE, CHAINS = 1000, 1000, 4

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import bayes_lmm as bl

DATA = Path("..") / "models" / "data" if Path("../models").exists() else Path("models") / "data"
TRUTH = {"beta": {"Intercept": 12.0, "genotype[2]": -3.0}, "sd": {"pot": 1.0}, "Residual": 0.8}


def seedling_design(pots_per_genotype):
    rows = []
    for g in (1, 2):
        for p in range(pots_per_genotype):
            for k in range(3 if p % 2 == 0 else 2):
                rows.append({"genotype": g, "pot": f"{g}-{p}", "seedling": k})
    return pd.DataFrame(rows)


results = {}
for pots in (2, 4, 16):  # 4, 8 and 32 pots in all
    template = seedling_design(pots)
    sim = bl.simulate("weight ~ genotype + (1|pot)", TRUTH, random_seed=pots, data=template,
                      factors=["genotype"])
    fit = bl.fit("weight ~ genotype + (1|pot)", sim, factors=["genotype"], draws=DRAWS,
                 tune=TUNE, chains=CHAINS, random_seed=4, progressbar=False)
    results[2 * pots] = fit.draws("sigma")[:, 0]
    print(2 * pots, "pots:", fit.variance_components().loc["1|pot", ["sd_median", "sd_lower", "sd_upper"]].round(2).to_dict())

# %%
fig, ax = plt.subplots(figsize=(6, 3))
for pots, draws in results.items():
    ax.hist(draws, bins=60, range=(0, 4), histtype="step", density=True, label=f"{pots} pots")
ax.axvline(1.0, color="k", ls="--", label="true σ_p")
ax.set_xlabel("σ_p")
ax.legend()

# %% [markdown]
# ## Prior sensitivity (4 pots)

# %%
data = pd.read_csv(DATA / "seedling.csv")
for label, prior in {"HalfNormal(s_y)": None, "HalfNormal(0.5)": bl.HalfNormal(0.5),
                     "HalfCauchy(5)": bl.HalfCauchy(5.0)}.items():
    priors = None if prior is None else {"pot": prior}
    f = bl.fit("weight ~ genotype + (1|pot)", data, factors=["genotype"], priors=priors, draws=DRAWS,
               tune=TUNE, chains=CHAINS, random_seed=5, progressbar=False)
    print(label, f.variance_components().loc["1|pot", ["sd_median", "sd_lower", "sd_upper"]].round(2).to_dict())

# %% [markdown]
# ## REML at the boundary
# When the pot means vary less than the residual noise predicts, REML sets $\hat\sigma_p = 0$.
# The posterior does not collapse: it says "small, but we cannot tell how small".

# %%
rng = np.random.default_rng(7)
flat = seedling_design(3)
flat["weight"] = 10 + rng.normal(0, 1, len(flat))
flat["weight"] -= flat.groupby("pot")["weight"].transform("mean") - flat["weight"].mean()
print(bl.reml("weight ~ genotype + (1|pot)", flat, factors=["genotype"]).variance_components)
f = bl.fit("weight ~ genotype + (1|pot)", flat, factors=["genotype"], draws=DRAWS, tune=TUNE,
           chains=CHAINS, random_seed=6, progressbar=False)
f.variance_components()[["sd_median", "sd_lower", "sd_upper"]]
