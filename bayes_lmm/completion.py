"""After sampling: the exact draws of what the form integrated out (β, then u), one step."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .design import Design
from .likelihood import Form
from .names import BETA_CHOL, BETA_DIM, BETA_MEAN, CHOL_COLUMN_DIM, U_DIM
from .priors import PriorSet
from .seeds import Seed


def complete(idata, form: Form, design: Design, prior_set: PriorSet, seed: Seed, *, draw_u: bool = True) -> None:
    """Draw β | y, θ (where the sampler carried its conditional) and u | y, β, θ (where the form
    integrated u out and ``draw_u``) for every posterior draw, in place, each from its own
    stream of ``seed``; the conditional's mean and Cholesky factor are dropped."""
    post = idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    coords = {"chain": post["chain"], "draw": post["draw"]}

    def flat(name):
        arr = post[name].to_numpy()
        return arr.reshape((chains * draws,) + arr.shape[2:])

    if BETA_MEAN in post:
        sd = np.array([dict(p.params)["sigma"] for p in prior_set.beta])
        beta = form.draw_beta(flat(BETA_MEAN), flat(BETA_CHOL), sd, seed.rng("beta"))
        post = post.drop_vars([BETA_MEAN, BETA_CHOL, CHOL_COLUMN_DIM]).assign(beta=xr.DataArray(
            beta.reshape(chains, draws, -1), dims=("chain", "draw", BETA_DIM),
            coords=coords | {BETA_DIM: post[BETA_DIM]}))
    if not form.samples_u and draw_u:
        corr = flat("correlation") if "correlation" in post else None
        u = form.draw_u(flat("beta"), flat("sigma"), corr, seed.rng("u"))
        post = post.assign(u=xr.DataArray(u.reshape(chains, draws, -1), dims=("chain", "draw", U_DIM),
                                          coords=coords | {U_DIM: design.u_labels}))
    idata.posterior = post
