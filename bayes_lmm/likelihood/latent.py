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
    u_mixes_alone = True

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


def information_ratio(design: Design, j: int) -> float:
    """How much the data say about block j's levels against the prior: median(n_l)·σ̂_b²/σ̂²
    from a one-way analysis of variance of the least-squares residuals by the block's levels
    (σ̂² the within-level variance, which also holds the other factors' variance, so the ratio
    errs low). Above 1 each level's posterior is dominated by its data and the centered form
    mixes better (Papaspiliopoulos, Roberts & Sköld 2007); below 1 the non-centered one."""
    blk = design.blocks[j]
    X, y = design.X, design.y
    r = y - X @ np.linalg.lstsq(X, y, rcond=None)[0] if design.p else y - y.mean()
    counts = np.bincount(blk.index, minlength=blk.n_levels).astype(float)
    L, n = int((counts > 0).sum()), len(r)
    if L < 2 or n <= L:
        return 0.0
    means = np.bincount(blk.index, weights=r, minlength=blk.n_levels) / np.maximum(counts, 1.0)
    within = float(((r - means[blk.index]) ** 2).sum() / (n - L))
    between = float((counts * (means - r.mean()) ** 2).sum() / (L - 1))
    n0 = (n - (counts**2).sum() / n) / (L - 1)
    var_b = max(0.0, (between - within) / n0)
    return float(np.median(counts[counts > 0]) * var_b / within) if within > 0 else np.inf


class PerFactor(LatentForm):
    """Each block centered or non-centered on its own (``centered[j]``), as ``auto`` picks them
    from :func:`information_ratio`: a one-coefficient block whose levels carry much data is
    centered, every other block non-centered."""

    name = "per-factor"

    def __init__(self, design: Design, centered: tuple[bool, ...], ratios: tuple[float, ...] | None = None):
        super().__init__(design)
        self.centered = tuple(bool(c) for c in centered)
        self.ratios = ratios
        self.parameterization = ("centered" if all(self.centered) else
                                 "noncentered" if not any(self.centered) else "mixed")

    @classmethod
    def from_data(cls, design: Design) -> PerFactor:
        ratios = [information_ratio(design, j) if b.n_coefs == 1 and b.dense is None else 0.0
                  for j, b in enumerate(design.blocks)]
        return cls(design, tuple(r > 1.0 for r in ratios), tuple(ratios))

    def structure(self) -> tuple:
        return super().structure() + (self.centered,)

    def describe(self) -> str:
        return ", ".join(f"{b.group!r} {'centered' if c else 'non-centered'}"
                         for b, c in zip(self.design.blocks, self.centered))

    def block_effect(self, key: str, blk, sd_vec, chol):
        j = next(i for i, b in enumerate(self.design.blocks) if b is blk)
        form = Centered if self.centered[j] else NonCentered
        return form.block_effect(self, key, blk, sd_vec, chol)
