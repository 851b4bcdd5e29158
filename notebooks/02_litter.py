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
# # 2. Litters, animals and muscle samples: three variance components
#
# The notes' Example 2: 4 litters × 4 treatments × 2 muscle samples, with
# $\mathbf{X} = \mathbf{1}_4 \otimes [\mathbf{1}_8, \mathbf{I}_4 \otimes \mathbf{1}_2]$ and
# $\mathbf{Z} = [\mathbf{I}_4 \otimes \mathbf{1}_8, \mathbf{I}_{16} \otimes \mathbf{1}_2]$.

# %% tags=["parameters"]
DRAWS, TUNE, CHAINS = 1000, 1000, 4

# %%
from pathlib import Path

import numpy as np
import pandas as pd

import bayes_lmm as bl

DATA = Path("..") / "models" / "data" if Path("../models").exists() else Path("models") / "data"
data = pd.read_csv(DATA / "litter.csv")

one = lambda k: np.ones((k, 1))  # noqa: E731
X = np.kron(one(4), np.hstack([one(8), np.kron(np.eye(4), one(2))]))
Z_litter = np.kron(np.eye(4), one(8))
Z_animal = np.kron(np.eye(16), one(2))
print(X.shape, Z_litter.shape, Z_animal.shape)

# %% [markdown]
# The formula `response ~ treatment + (1|litter/animal)` builds the same matrices:

# %%
design = bl.design_from_formula("response ~ treatment + (1|litter/animal)", data, coding="full",
                                factors=["treatment"])
print(np.array_equal(design.X, X), np.array_equal(design.Z, np.hstack([Z_litter, Z_animal])))

# %% [markdown]
# The 8 × 8 block of $\mathrm{Var}(\mathbf{y})$ for one litter, as in the notes:

# %%
design.var_y_structure(rows=range(8))

# %%
fit = bl.fit_matrices(data.response, X, {"litter": Z_litter, "animal": Z_animal},
                      x_names=["mu", "tau1", "tau2", "tau3", "tau4"],
                      draws=DRAWS, tune=TUNE, chains=CHAINS, random_seed=2, progressbar=False)
fit.variance_components()

# %% [markdown]
# Two samples of one animal correlate by $(\ell + a)/(\ell + a + e)$, two animals of one litter
# by $\ell/(\ell + a + e)$:

# %%
fit.icc()

# %%
fit.contrast(np.array([[0, 1, -1, 0, 0], [0, 1, 0, -1, 0], [1, 0, 0, 0, 1]]))

# %%
fit.plot_var_y(rows=list(range(8)))  # the returned Figure, shown as the cell value
