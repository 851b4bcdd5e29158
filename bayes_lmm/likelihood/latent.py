"""The latent parameterizations: u a sampled variable, y ~ N(Xβ + Zu, R) (row by row where R
is diagonal; :mod:`.residual_logp` where it is correlated within groups).

The fallback behind the exact forms (any design, any priors). Random effects enter by
index-gather (``u_b[level_index] · values``), never by a dense Z product, so cost grows with
n·k, not n·q.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..design import Design
from ..names import OBS_DIM, U_DIM, coef_dim, data, level_dim, safe_name
from .base import Form, GraphInputs
from .residual_logp import residual_logp
from .residual_logp import signature as residual_signature


class LatentForm(Form):
    samples_u = True

    @classmethod
    def applies(cls, design: Design) -> bool:
        return True

    def structure(self) -> tuple:
        res = self.design.residual
        return (self.name,) if res is None else (self.name, residual_signature(res))

    def likelihood(self, inputs: GraphInputs) -> None:
        design = self.design
        mu = pt.dot(data("X", design.X), inputs.beta)
        parts = []
        for key, blk, u_b in inputs.blocks:
            name = safe_name(key)
            parts.append(u_b.reshape((-1,)))
            if blk.dense is not None:
                mu = mu + pt.dot(data(f"Z_{name}", blk.dense), u_b[:, 0])
            else:
                index = data(f"index_{name}", blk.index)
                mu = mu + (u_b[index] * data(f"values_{name}", blk.values)).sum(axis=1)
        if parts:
            pm.Deterministic("u", pt.concatenate(parts), dims=U_DIM)
        observed = data("y_observed", design.y)
        res = design.residual
        if res is None:
            pm.Normal("y", mu=mu, sigma=inputs.sigma_e, observed=observed, dims=OBS_DIM)
        elif not res.correlated:
            pm.Normal("y", mu=mu, sigma=inputs.row_sd, observed=observed, dims=OBS_DIM)
        else:
            # R correlated within groups: rows are not independent given u
            pm.Potential("y_loglik", residual_logp(res, observed - mu, inputs.row_sd, inputs.residual_corr))


class NonCentered(LatentForm):
    """``u_b = z_b · (diag(σ_b) L_b)'`` with ``z_b ~ N(0, 1)``."""

    name = parameterization = "noncentered"

    def block_effect(self, key: str, blk, sd_vec, chol):
        z = pm.Normal(f"z_{safe_name(key)}", 0.0, 1.0, dims=(level_dim(key), coef_dim(key)))
        return pt.dot(z, chol.T) if chol is not None else z * sd_vec[None, :]


class Centered(LatentForm):
    """``u_b ~ N(0, G_b)`` directly."""

    name = parameterization = "centered"

    def block_effect(self, key: str, blk, sd_vec, chol):
        name, dims = f"u_{safe_name(key)}", (level_dim(key), coef_dim(key))
        if chol is not None:
            return pm.MvNormal(name, mu=np.zeros(blk.n_coefs), chol=chol, dims=dims)
        return pm.Normal(name, 0.0, sd_vec[None, :], dims=dims)
