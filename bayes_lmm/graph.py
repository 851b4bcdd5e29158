"""Build the PyMC model for ``y = Xβ + Zu + e`` with u as a latent vector.

Random effects enter by index-gather (``u_b[level_index] · values``), never by a dense
Z product, so cost grows with n·k, not n·q. Every variable carries named dims.
"""

from __future__ import annotations

import re

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .design import RESIDUAL, Design, RandomBlock
from .priors import PriorSet
from .spec import Prior

BETA_DIM = "coef"
COMPONENT_DIM = "component"
U_DIM = "u_index"
OBS_DIM = "obs"
CORR_DIM = "correlation_pair"


def safe_name(label: str) -> str:
    """A variable-name-safe version of a label (``1|litter:animal`` → ``1_litter_animal``)."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", label).strip("_") or "x"


def level_dim(block: RandomBlock) -> str:
    return f"{block.group}__level"


def coef_dim(block: RandomBlock) -> str:
    return f"{block.group}__coef"


def _sd_variable(name: str, prior: Prior) -> pt.TensorVariable:
    """A standard deviation with the given prior (InverseGamma priors sit on the variance)."""
    kw = prior.kwargs()
    if prior.family == "InverseGamma":
        var = pm.InverseGamma(f"var_{name}", **kw)
        return pt.sqrt(var)
    dist = getattr(pm, prior.family)
    return dist(f"sigma_{name}", **kw)


def _beta(priors: PriorSet) -> pt.TensorVariable:
    families = {p.family for p in priors.beta}
    if len(families) == 1:
        fam = families.pop()
        params = {k: np.array([dict(p.params)[k] for p in priors.beta]) for k, _ in priors.beta[0].params}
        return getattr(pm, fam)("beta", **params, dims=BETA_DIM)
    parts = [
        getattr(pm, p.family)(f"beta_{safe_name(name)}", **p.kwargs())
        for name, p in zip(priors.x_names, priors.beta)
    ]
    return pm.Deterministic("beta", pt.stack(parts), dims=BETA_DIM)


def coords_for(design: Design) -> dict[str, list[str]]:
    coords = {
        BETA_DIM: list(design.x_names),
        COMPONENT_DIM: list(design.components) + [RESIDUAL],
        U_DIM: design.u_labels,
        OBS_DIM: list(range(design.n)),
    }
    corr = correlation_labels(design)
    if corr:
        coords[CORR_DIM] = corr
    for blk in design.blocks:
        coords[level_dim(blk)] = list(blk.levels)
        coords[coef_dim(blk)] = list(blk.coef_names)
    return coords


def correlation_labels(design: Design) -> list[str]:
    out = []
    for blk in design.blocks:
        if blk.correlated:
            k = blk.n_coefs
            for a in range(k):
                for b in range(a + 1, k):
                    out.append(f"({blk.coef_names[a]},{blk.coef_names[b]})|{blk.group}")
    return out


def build_model(design: Design, priors: PriorSet, *, parameterization: str = "noncentered") -> pm.Model:
    """The ``pm.Model`` for the latent-u parameterizations.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    parameterization : {"noncentered", "centered"}
        Non-centered: ``u_b = z_b · L_b'`` with ``z_b ~ N(0, 1)``; centered: ``u_b ~ N(0, G_b)``.

    Returns
    -------
    pm.Model
        Variables: ``beta`` (dim ``coef``), ``sigma`` (dim ``component``, σ_j and σ_e),
        ``u`` (dim ``u``, one entry per level and coefficient), ``correlation`` (if any
        correlated block), and the likelihood ``y`` (dim ``obs``).
    """
    if parameterization not in ("noncentered", "centered"):
        raise ValueError(f"build_model handles latent parameterizations, not {parameterization!r}")
    with pm.Model(coords=coords_for(design)) as model:
        beta = _beta(priors)
        mu = pt.dot(design.X, beta)
        sds = []
        u_parts = []
        corr_parts = []
        for blk in design.blocks:
            block_sds = [
                _sd_variable(safe_name(comp), priors.component(comp)) for comp in blk.components
            ]
            sds.extend(block_sds)
            name = safe_name(blk.group)
            k = blk.n_coefs
            dims = (level_dim(blk), coef_dim(blk))
            sd_vec = pt.stack(block_sds)
            if blk.correlated:
                corr = pm.LKJCorr(
                    f"corr_{name}", n=k, eta=priors.correlation.kwargs()["eta"], return_matrix=True
                )
                chol_corr = pt.linalg.cholesky(corr)
                chol = sd_vec[:, None] * chol_corr
                iu = np.triu_indices(k, 1)
                corr_parts.append(corr[iu])
                if parameterization == "noncentered":
                    z = pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)
                    u_b = pt.dot(z, chol.T)
                else:
                    u_b = pm.MvNormal(f"u_{name}", mu=np.zeros(k), chol=chol, dims=dims)
            else:
                if parameterization == "noncentered":
                    z = pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)
                    u_b = z * sd_vec[None, :]
                else:
                    u_b = pm.Normal(f"u_{name}", 0.0, sd_vec[None, :], dims=dims)
            u_parts.append(u_b.reshape((-1,)))
            if blk.dense is not None:
                mu = mu + pt.dot(blk.dense, u_b[:, 0])
            else:
                mu = mu + (u_b[blk.index] * blk.values).sum(axis=1)
        sigma_e = _sd_variable(RESIDUAL, priors.residual)
        sds.append(sigma_e)
        pm.Deterministic("sigma", pt.stack(sds), dims=COMPONENT_DIM)
        if u_parts:
            pm.Deterministic("u", pt.concatenate(u_parts), dims=U_DIM)
        if corr_parts:
            pm.Deterministic("correlation", pt.concatenate(corr_parts), dims=CORR_DIM)
        pm.Normal("y", mu=mu, sigma=sigma_e, observed=design.y, dims=OBS_DIM)
    return model
