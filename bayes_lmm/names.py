"""Names of variables, dims and data in the PyMC graph, shared by the graph and the forms.

Everything here is a pure function of the design; nothing imports a model.
"""

from __future__ import annotations

import re

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .design import Design, RandomBlock

BETA_DIM = "coef"
COMPONENT_DIM = "component"
U_DIM = "u_index"
OBS_DIM = "obs"
CORR_DIM = "correlation_pair"
#: the residual structure's correlation parameters (``rho`` or ``corr(t1,t2)``)
RESIDUAL_CORR_DIM = "residual_corr_param"
#: names of the deterministics that carry β's exact conditional given θ out of the sampler
BETA_MEAN, BETA_CHOL = "beta_conditional_mean", "beta_conditional_chol"
CHOL_COLUMN_DIM = "coef_column"


def safe_name(label: str) -> str:
    """A variable-name-safe version of a label (``1|litter:animal`` → ``1_litter_animal``)."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", label).strip("_") or "x"


def block_key(design: Design, block: RandomBlock) -> str:
    """A block's name in variable and dim names: its grouping factor, or its components where
    several blocks share one factor (``(x||g)``, ``(1|g) + (0 + x|g)``)."""
    if sum(b.group == block.group for b in design.blocks) == 1:
        return block.group
    return "+".join(block.components)


def level_dim(key: str) -> str:
    return f"{key}__level"


def coef_dim(key: str) -> str:
    return f"{key}__coef"


def data(name: str, value) -> pt.TensorVariable:
    """Every number that depends on the data enters as ``pm.Data``, so that a compiled model
    of the same structure can be reused with new data (see :func:`bayes_lmm.graph.model_signature`)."""
    return pm.Data(name, np.asarray(value))
