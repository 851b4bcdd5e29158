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
# # 1. The seedling example, step by step
#
# The notes' Example 1: 10 seedlings of 2 genotypes grown in 4 pots (3 + 2 per genotype).
# Model: $y_{ijk} = \mu + \gamma_i + p_{ij} + e_{ijk}$ with $p_{ij} \sim N(0, \sigma_p^2)$ and
# $e_{ijk} \sim N(0, \sigma_e^2)$. We build $\mathbf{y}, \mathbf{X}, \boldsymbol\beta, \mathbf{Z},
# \mathbf{u}, \mathbf{G}, \mathbf{R}$ and $\mathrm{Var}(\mathbf{y})$, fit the model, and read off the
# estimable functions $\mu+\gamma_1$, $\mu+\gamma_2$ and $\gamma_1-\gamma_2$.

# %% tags=["parameters"]
DRAWS, TUNE, CHAINS = 1000, 1000, 4

# %%
from pathlib import Path

import numpy as np
import pandas as pd

import bayes_lmm as bl

DATA = Path("..") / "models" / "data" if Path("../models").exists() else Path("models") / "data"
data = pd.read_csv(DATA / "seedling.csv")
data

# %% [markdown]
# ## y, X, Z as in the notes
# `coding="full"` gives the notes' overparameterized $\mathbf{X} = [\mathbf{1}, \text{genotype}_1,
# \text{genotype}_2]$: rank 2 with 3 columns, so $\boldsymbol\beta$ itself is not identified.

# %%
design = bl.design_from_formula("weight ~ genotype + (1|pot)", data, coding="full", factors=["genotype"])
print("X =\n", pd.DataFrame(design.X, columns=design.x_names))
print("rank(X) =", design.rank)
print("Z =\n", pd.DataFrame(design.Z, columns=design.u_labels))
print("ZZ' =\n", (design.Z @ design.Z.T).astype(int))

# %% [markdown]
# $\mathbf{G} = \sigma_p^2 \mathbf{I}_4$, $\mathbf{R} = \sigma_e^2 \mathbf{I}_{10}$, and
# $\mathrm{Var}(\mathbf{y}) = \sigma_p^2 \mathbf{ZZ}' + \sigma_e^2 \mathbf{I}$ is block diagonal:

# %%
design.var_y_structure(rows=range(5))

# %% [markdown]
# ## Fit

# %%
fit = bl.fit("weight ~ genotype + (1|pot)", data, coding="full", factors=["genotype"],
             draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=1, progressbar=False)

# %% [markdown]
# `fit` on the last line of a cell shows the whole report: the model, how it was sampled and
# which likelihood form was used, the tables of $\boldsymbol\beta$, the variance components
# and the diagnostics. (`fit.summary()` is the same report as text; `print` it in a terminal.)

# %%
fit

# %% [markdown]
# ## Estimable functions
# $C\beta$ is estimable when each row of $C$ is in the row space of $\mathbf{X}$.
# $[1,1,0]$, $[1,0,1]$ and $[0,1,-1]$ are; $\gamma_1$ alone ($[0,1,0]$) is not.

# %%
fit.contrast({"mu+g1": "Intercept + genotype[1]", "mu+g2": "Intercept + genotype[2]",
              "g1-g2": "genotype[1] - genotype[2]"})

# %%
try:
    fit.contrast("genotype[1]")
except bl.EstimabilityError as err:
    print(err)

# %% [markdown]
# ## Why the GLS estimator is nonlinear here
# If $\sigma_p^2/\sigma_e^2$ were known, $C\hat\beta_{GLS} = C(X'V^{-1}X)^{-}X'V^{-1}y$ would be
# linear in $y$. It is not known: REML estimates it from $y$, so $C\hat\beta_{\widehat{GLS}}$ is a
# nonlinear function of $y$ and its intervals are approximate. The posterior instead averages
# over the uncertainty in the ratio:

# %%
reml = bl.reml("weight ~ genotype + (1|pot)", data, coding="full", factors=["genotype"])
print(reml.contrast({"g1-g2": "genotype[1] - genotype[2]"}))
fit.variance_ratio()

# %%
fit.compare_reml()

# %%
fit.plot_variance_components(random_seed=1)  # drawn once: the figure is returned, not left open
