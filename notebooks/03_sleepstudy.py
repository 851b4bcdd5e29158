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
# # 3. Sleepstudy: correlated random intercepts and slopes, prediction for a new subject

# %% tags=["parameters"]
DRAWS, TUNE, CHAINS = 1000, 1000, 4

# %%
from pathlib import Path

import pandas as pd

import bayes_lmm as bl

DATA = Path("..") / "models" / "data" if Path("../models").exists() else Path("models") / "data"
sleep = pd.read_csv(DATA / "sleepstudy.csv")
fit = bl.fit("Reaction ~ Days + (Days|Subject)", sleep, draws=DRAWS, tune=TUNE, chains=CHAINS,
             random_seed=3, progressbar=False)
fit.fixed_effects()

# %% [markdown]
# $u_g \sim \mathrm{MvNormal}(0, G_g)$ with an LKJ prior on the correlation:

# %%
fit.variance_components()[["sd_median", "sd_lower", "sd_upper"]]

# %%
fit.random_effect_correlations()

# %%
fit.compare_reml()

# %% [markdown]
# ## Prediction
# An existing subject uses its own fitted intercept and slope; a new subject draws them from
# $G$, so its interval is wider.

# %%
new = pd.DataFrame({"Days": [0, 5, 9] * 2, "Subject": ["308"] * 3 + ["new"] * 3})
fit.predict(new, random_seed=1)

# %%
fit.plot_shrinkage()  # the returned Figure, shown as the cell value
