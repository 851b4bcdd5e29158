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
# # 6. Residual structures: R beyond σ²I

# %% tags=["parameters"]
DRAWS, TUNE, CHAINS = 1000, 1000, 4

# %% [markdown]
# The model is y = Xβ + Zu + e with u ~ N(0, G) and e ~ N(0, R), so
# Var(y) = ZGZ' + R. Until now R = σ²_e I: every residual has the same variance and residuals
# are uncorrelated. Here the orthodont data (distance from pituitary to pterygomaxillary
# fissure, 27 children measured at ages 8, 10, 12 and 14) is fitted with the same X, Z and G
# and three choices of R:
#
# - `σ²I`: R = σ²_e I;
# - `HeteroSD("Sex")`: R diagonal, one σ²_e per sex;
# - `AR1("occ", "Subject")`: R block diagonal, one block per child, corr(e_s, e_t) = ρ^|t − s|.
#
# `age` enters X as a number (a slope), which is what we want; the library warns that a column
# with only four distinct integers might be meant as a factor, and we silence that warning.

# %%
import warnings
from pathlib import Path

import pandas as pd

import bayes_lmm as bl

warnings.filterwarnings("ignore", message="column 'age' holds only")

DATA = Path("..") / "tests" / "data" if Path("../tests").exists() else Path("tests") / "data"
orth = pd.read_csv(DATA / "orthodont.csv")
orth.head(8)

# %% [markdown]
# The AR(1) time column must hold integers, and the lag between two visits is the difference of
# their times. With `age` (8, 10, 12, 14) consecutive visits would be lag 2, so the correlation
# of neighbours would be ρ², and ρ itself would describe a one-year lag that was never observed.
# `occ` (1, 2, 3, 4) numbers the visits, so consecutive visits are lag 1 and ρ is the
# correlation of neighbouring residuals. Because the visits are equally spaced, both choices
# give the same model; only the meaning of ρ differs.

# %%
formula = "distance ~ age + Sex + (1|Subject)"
opts = dict(draws=DRAWS, tune=TUNE, chains=CHAINS, progressbar=False)
iid = bl.fit(formula, orth, random_seed=1, **opts)
het = bl.fit(formula, orth, residual=bl.HeteroSD("Sex"), random_seed=1, **opts)
ar1 = bl.fit(formula, orth, residual=bl.AR1("occ", "Subject"), random_seed=1, **opts)

# %% [markdown]
# ## Variance components
#
# With R = σ²_e I there are two components, σ_Subject and σ_e.

# %%
iid.variance_components()

# %% [markdown]
# `HeteroSD("Sex")` gives one residual SD per sex, `Residual[Female]` and `Residual[Male]`.

# %%
het.variance_components()

# %% [markdown]
# Under AR(1) there is one residual SD again, plus a correlation ρ between a child's residuals.
# Part of the within-child correlation that `(1|Subject)` alone had to explain can now sit in R.

# %%
ar1.variance_components()

# %%
ar1.residual_structure()

# %% [markdown]
# ## Var(y) for one child
#
# Var(y) = ZGZ' + R for the four rows of one child, first symbolically and then as the
# posterior mean. Rows 0–3 are the boy M01. With R = σ²_e I the off-diagonal entries are
# σ²_Subject only, the same for every pair of visits.

# %%
iid.design.var_y_structure(rows=[0, 1, 2, 3])

# %%
iid.var_y(rows=[0, 1, 2, 3]).mean.round(2)

# %% [markdown]
# Under AR(1) the off-diagonal entries shrink with the lag: σ²_Subject + σ²_e·ρ for neighbouring
# visits, σ²_Subject + σ²_e·ρ² two visits apart, and σ²_Subject + σ²_e·ρ³ for the first and last.

# %%
ar1.design.var_y_structure(rows=[0, 1, 2, 3])

# %%
ar1.var_y(rows=[0, 1, 2, 3]).mean.round(2)

# %% [markdown]
# The same posterior mean for the first two boys, M01 and M02 (rows 0–7): two 4 × 4 blocks
# ZGZ' + R whose entries fade away from the diagonal, and zeros between the children.

# %%
ar1.plot_var_y(rows=list(range(8)))  # the returned Figure, shown as the cell value

# %% [markdown]
# `HeteroSD` changes only the diagonal, and which σ²_e it holds depends on the child's sex. Take
# the four rows of the boy M01 together with the four of the girl F01: the blocks are
# σ²_Subject + σ²_e[Male] and σ²_Subject + σ²_e[Female] on the diagonal, σ²_Subject within a
# child, and 0 between the two children.

# %%
f01 = orth.index[orth.Subject == "F01"].tolist()
rows = [0, 1, 2, 3] + f01
het.design.var_y_structure(rows=rows)

# %%
het.var_y(rows=rows).mean.round(2)

# %% [markdown]
# ## Comparing the three R with LOO

# %%
bl.compare({"σ²I": iid, "HeteroSD": het, "AR(1)": ar1})

# %% [markdown]
# The table is sorted best first by `elpd_loo`, the estimated expected log predictive density
# of a left-out observation summed over rows; `elpd_diff` is each model's difference from the
# best and `dse` its standard error. A difference of a few `dse` or less is not a clear
# preference.
#
# With a correlated R the rows of one child are not independent given β, u and the variance
# parameters, so the pointwise log-likelihood is not simply log N(y_i | x_i'β + z_i'u, σ²_e).
# Instead each row's term is its leave-one-out conditional density given the other rows of the
# same child (Bürkner, Gabry & Vehtari 2021, *Efficient leave-one-out cross-validation for
# Bayesian non-factorized normal and Student-t models*). PSIS-LOO is therefore still
# leave-one-observation-out, and the three `elpd_loo` are on the same scale.

# %% [markdown]
# ## REML for comparison
#
# REML with the same AR(1) R gives a point estimate ρ̂; next to it, the posterior of ρ. The REML
# estimate should sit inside the posterior interval, and the posterior shows how uncertain ρ is
# with 27 children and four visits each.

# %%
reml_ar1 = bl.reml(formula, orth, residual=bl.AR1("occ", "Subject"))
pd.concat({"REML": reml_ar1.residual_structure, "posterior": ar1.residual_structure()}, axis=1)
