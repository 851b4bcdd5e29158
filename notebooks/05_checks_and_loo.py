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
# # 5. Posterior predictive checks and LOO model comparison

# %% tags=["parameters"]
DRAWS, TUNE, CHAINS = 1000, 1000, 4

# %%
from pathlib import Path

import pandas as pd

import bayes_lmm as bl

DATA = Path("..") / "models" / "data" if Path("../models").exists() else Path("models") / "data"
dye = pd.read_csv(DATA / "dyestuff.csv")
opts = dict(draws=DRAWS, tune=TUNE, chains=CHAINS, progressbar=False)
with_batch = bl.fit("Yield ~ 1 + (1|Batch)", dye, random_seed=1, **opts)
without_batch = bl.fit("Yield ~ 1", dye, random_seed=1, **opts)

# %% [markdown]
# The SD of the batch means is the statistic that exposes a missing random factor: a model
# without `Batch` cannot reproduce how much the batch means differ.

# %%
with_batch.check(random_seed=1)

# %%
without_batch.check(statistics=["sd_group_means"], groups=["Batch"], random_seed=1)

# %%
without_batch.plot_check(groups=["Batch"], random_seed=1)

# %% [markdown]
# ## LOO: random slopes against random intercepts on sleepstudy

# %%
sleep = pd.read_csv(DATA / "sleepstudy.csv")
slopes = bl.fit("Reaction ~ Days + (Days|Subject)", sleep, random_seed=2, **opts)
intercepts = bl.fit("Reaction ~ Days + (1|Subject)", sleep, random_seed=2, **opts)
bl.compare({"(Days|Subject)": slopes, "(1|Subject)": intercepts})

# %%
slopes.plot_ppc(random_seed=1)
