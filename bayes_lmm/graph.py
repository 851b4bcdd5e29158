"""Build the PyMC model for ``y = Xβ + Zu + e``: priors, variance parameters, and the
likelihood of the chosen form (:mod:`bayes_lmm.likelihood`).

Every variable carries named dims; every number that depends on the data enters as
``pm.Data`` so that a compiled model of the same structure serves new data.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import lkj
from .design import RESIDUAL, Design, RandomBlock
from .likelihood import Form, GraphInputs, choose
from .names import (
    BETA_CHOL,
    BETA_DIM,
    BETA_MEAN,
    CHOL_COLUMN_DIM,
    COMPONENT_DIM,
    CORR_DIM,
    OBS_DIM,
    RESIDUAL_CORR_DIM,
    U_DIM,
    block_key,
    coef_dim,
    level_dim,
    safe_name,
)
from .names import data as _data
from .priors import PriorSet
from .residual_draws import component_names
from .spec import Prior

__all__ = ["BETA_CHOL", "BETA_DIM", "BETA_MEAN", "CHOL_COLUMN_DIM", "COMPONENT_DIM", "CORR_DIM", "OBS_DIM",
           "U_DIM", "block_key", "coef_dim", "level_dim", "safe_name", "build_model", "model_signature",
           "integrates_beta", "coords_for", "correlation_labels", "BETA_INTEGRATED_P_MAX"]


def _params(var: str, prior: Prior) -> dict[str, pt.TensorVariable]:
    return {k: _data(f"prior_{var}_{k}", float(v)) for k, v in prior.params}


#: largest number of fixed effects integrated out with u (a p×p Cholesky per gradient, and a
#: p×p factor per draw kept until β is drawn)
BETA_INTEGRATED_P_MAX = 30


def _parameterization(form: Form | str) -> str:
    return form if isinstance(form, str) else form.parameterization


def integrates_beta(design: Design, priors: PriorSet, parameterization: Form | str) -> bool:
    """Whether the marginal model integrates β out as well as u (Normal priors on every β,
    at most :data:`BETA_INTEGRATED_P_MAX` of them): NUTS then moves in the variance
    parameters alone and β is drawn exactly afterwards, as u is. ``parameterization`` is a
    form or its parameterization's name."""
    return (_parameterization(parameterization) == "marginal" and 0 < design.p <= BETA_INTEGRATED_P_MAX
            and all(p.family == "Normal" for p in priors.beta))


def model_signature(design: Design, priors: PriorSet, form: Form | str) -> tuple:
    """Everything a compiled model's structure depends on; equal signatures share a compiled
    model. The design's part is the form's :meth:`~bayes_lmm.likelihood.base.Form.signature`
    (a name is resolved by :func:`bayes_lmm.likelihood.choose`)."""
    form = choose(design, form) if isinstance(form, str) else form
    families = (tuple(p.family for p in priors.beta), tuple(p.family for _, p in priors.components),
                priors.residual.family, priors.correlation.kwargs()["eta"],
                tuple(p.family for _, p in priors.residual_sds),
                None if priors.residual_correlation is None else priors.residual_correlation.kwargs()["eta"])
    return (form.signature(), design.p, families, integrates_beta(design, priors, form))


# Every prior is sampled in standard units and scaled afterwards (σ = s·σ_std, β = μ + s·β_std):
# the sampler then starts and adapts on the same footing whether y is in 1e-8 or 1e8 units
# or a covariate is (a log-density that is exact either way).

def _sd_variable(name: str, prior: Prior) -> pt.TensorVariable:
    """A standard deviation with the given prior (InverseGamma priors sit on the variance)."""
    kw = _params(name, prior)
    raw = f"sigma_{name}_std"
    if prior.family == "HalfNormal":
        return kw["sigma"] * pm.HalfNormal(raw, 1.0)
    if prior.family == "HalfStudentT":
        return kw["sigma"] * pm.HalfStudentT(raw, nu=kw["nu"], sigma=1.0)
    if prior.family == "HalfCauchy":
        return kw["beta"] * pm.HalfCauchy(raw, beta=1.0)
    if prior.family == "Exponential":
        return pm.Exponential(raw, lam=1.0) / kw["lam"]
    if prior.family == "InverseGamma":
        # β·InverseGamma(α, 1) is InverseGamma(α, β)
        return pt.sqrt(kw["beta"] * pm.InverseGamma(f"var_{name}_std", alpha=kw["alpha"], beta=1.0))
    raise ValueError(f"no standard deviation prior family {prior.family!r}")


def _coefficient(name: str, family: str, params: dict, dims: str | None = None) -> pt.TensorVariable:
    """μ + s·β_std with β_std from the family at location 0 and scale 1."""
    if family == "Normal":
        raw = pm.Normal(f"{name}_std", 0.0, 1.0, dims=dims)
    elif family == "StudentT":
        raw = pm.StudentT(f"{name}_std", nu=params["nu"], mu=0.0, sigma=1.0, dims=dims)
    else:
        raise ValueError(f"no coefficient prior family {family!r}")
    return params["mu"] + params["sigma"] * raw


def _beta_prior_data(priors: PriorSet) -> dict[str, pt.TensorVariable]:
    """The parameters of a single-family β prior as length-p data vectors (static length p)."""
    return {k: pt.specify_shape(_data(f"prior_beta_{k}", [dict(p.params)[k] for p in priors.beta]),
                                (len(priors.beta),))
            for k, _ in priors.beta[0].params}


def _beta(priors: PriorSet) -> pt.TensorVariable:
    families = {p.family for p in priors.beta}
    if len(families) == 1:
        fam = families.pop()
        params = _beta_prior_data(priors)
        return pm.Deterministic("beta", _coefficient("beta", fam, params, dims=BETA_DIM), dims=BETA_DIM)
    parts = [
        _coefficient(f"beta_{safe_name(name)}", p.family, _params(f"beta_{safe_name(name)}", p))
        for name, p in zip(priors.x_names, priors.beta)
    ]
    return pm.Deterministic("beta", pt.stack(parts), dims=BETA_DIM)


def coords_for(design: Design) -> dict[str, list[str]]:
    coords = {
        BETA_DIM: list(design.x_names),
        COMPONENT_DIM: component_names(design),
        U_DIM: design.u_labels,
        OBS_DIM: list(range(design.n)),
    }
    corr = correlation_labels(design)
    if corr:
        coords[CORR_DIM] = corr
    if design.residual is not None and design.residual.correlated:
        coords[RESIDUAL_CORR_DIM] = list(design.residual.corr_names)
    for blk in design.blocks:
        key = block_key(design, blk)
        coords[level_dim(key)] = list(blk.levels)
        coords[coef_dim(key)] = list(blk.coef_names)
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


def _block_scales(blk: RandomBlock, key: str, priors: PriorSet, corr_parts: list):
    """(σ_b vector, chol(R_b) or None) for one block; adds its LKJ correlation if correlated."""
    sds = [_sd_variable(safe_name(comp), priors.component(comp)) for comp in blk.components]
    sd_vec = pt.stack(sds)
    if not blk.correlated:
        return sds, sd_vec, None
    k = blk.n_coefs
    name = f"corr_{safe_name(key)}"
    eta = priors.correlation.kwargs()["eta"]
    if k == 2:
        # for 2×2 the LKJ(η) density of r is ∝ (1 − r²)^(η−1): exactly r = 2b − 1 with
        # b ~ Beta(η, η); far cheaper to compile and evaluate than LKJCorr's transform
        r = 2.0 * pm.Beta(f"{name}_beta", alpha=eta, beta=eta) - 1.0
        corr_parts.append(r[None])
        chol = pt.stack([pt.stack([pt.constant(1.0), pt.constant(0.0)]), pt.stack([r, pt.sqrt(1.0 - r**2)])])
        return sds, sd_vec, chol
    # k ≥ 3: LKJ(η) through its canonical partial correlations (scalar Betas, :mod:`.lkj`);
    # their concentrations depend on η, so η is part of the model signature
    upper, chol = lkj.cholesky_graph(name, k, eta)
    corr_parts.append(upper)
    return sds, sd_vec, chol


def _residual_scales(res, priors: PriorSet, sds: list):
    """(SD of each row, correlation parameters or None) of a residual structure R = DCD; its
    estimated SDs are appended to ``sds`` and ρ is the deterministic ``residual_correlation``
    (see :mod:`bayes_lmm.priors` for the parameterizations of its LKJ(η) prior)."""
    if res.known_sd is not None:
        row_sd = _data("residual_known_sd", res.known_sd)
    else:
        strata = [_sd_variable(safe_name(label), priors.residual_sd(label)) for label in res.sd_labels]
        sds.extend(strata)
        row_sd = pt.stack(strata)[_data("residual_stratum", res.stratum)]
    if not res.correlated:
        return row_sd, None
    eta = priors.residual_correlation.kwargs()["eta"]
    T = len(res.time_labels)
    if res.kind == "un" and T > 2:
        rho, _ = lkj.cholesky_graph("residual_corr", T, eta)
    else:
        b = pm.Beta("residual_rho_beta", alpha=eta, beta=eta)
        n_max = np.bincount(res.group).max()
        # compound symmetry is positive definite for ρ > −1/(n_max − 1)
        low = -1.0 / (n_max - 1) if res.kind == "cs" and n_max > 1 else -1.0
        rho = (low + (1.0 - low) * b)[None]
    pm.Deterministic("residual_correlation", rho, dims=RESIDUAL_CORR_DIM)
    return row_sd, rho


def build_model(design: Design, priors: PriorSet, *, parameterization: str = "noncentered",
                integrate_beta: bool | None = None, form: Form | None = None) -> pm.Model:
    """The ``pm.Model`` of ``y = Xβ + Zu + e``.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    parameterization : {"noncentered", "centered", "marginal"}
        Non-centered: ``u_b = z_b · (diag(σ_b) L_b)'`` with ``z_b ~ N(0, 1)``; centered:
        ``u_b ~ N(0, G_b)``; marginal: u integrated out (:mod:`bayes_lmm.likelihood`), the
        likelihood a ``pm.Potential`` named ``y_marginal``, and u drawn after sampling.
        Ignored when ``form`` is given.
    integrate_beta : bool, optional
        Marginal only: integrate β out as well (default: where :func:`integrates_beta` allows);
        False keeps β a sampled variable.
    form : Form, optional
        The likelihood form (default: :func:`bayes_lmm.likelihood.choose` of ``parameterization``).

    Returns
    -------
    pm.Model
        Variables: ``beta`` (dim ``coef``), ``sigma`` (dim ``component``, σ_j and σ_e),
        ``u`` (dim ``u_index``; latent parameterizations), ``correlation`` (if any correlated
        block), and the likelihood ``y`` (dim ``obs``; latent parameterizations). Where the
        marginal model integrates β out too (:func:`integrates_beta`), ``beta`` is replaced by
        β's exact conditional given θ: ``beta_conditional_mean`` and ``beta_conditional_chol``
        (see :meth:`bayes_lmm.likelihood.ExactForm.loglik_beta_integrated`), from which β is
        drawn after sampling.
    """
    if form is None:
        if parameterization not in ("noncentered", "centered", "marginal"):
            raise ValueError(f"unknown parameterization {parameterization!r}")
        form = choose(design, parameterization)
    coords = coords_for(design)
    without_beta = integrates_beta(design, priors, form)
    if integrate_beta is not None:
        if integrate_beta and not without_beta:
            raise ValueError("β can be integrated out only in the marginal parameterization, with "
                             f"Normal priors on every β and at most {BETA_INTEGRATED_P_MAX} of them")
        without_beta = integrate_beta
    if not form.samples_u:
        coords.pop(U_DIM)
    if without_beta:
        coords[CHOL_COLUMN_DIM] = list(design.x_names)
    with pm.Model(coords=coords) as model:
        beta = None if without_beta else _beta(priors)
        sds, corr_parts, blocks = [], [], []
        for blk in design.blocks:
            key = block_key(design, blk)
            block_sds, sd_vec, chol_corr = _block_scales(blk, key, priors, corr_parts)
            sds.extend(block_sds)
            chol = sd_vec[:, None] * chol_corr if chol_corr is not None else None
            blocks.append((key, blk, form.block_effect(key, blk, sd_vec, chol)))
        if design.residual is None:
            sigma_e, row_sd, rho = _sd_variable(RESIDUAL, priors.residual), None, None
            sds.append(sigma_e)
        else:
            sigma_e = None
            row_sd, rho = _residual_scales(design.residual, priors, sds)
        pm.Deterministic("sigma", pt.stack(sds), dims=COMPONENT_DIM)
        if corr_parts:
            pm.Deterministic("correlation", pt.concatenate(corr_parts), dims=CORR_DIM)
        # Normal prior on every β when it is integrated out: its mu and sigma as data
        prior = _beta_prior_data(priors) if without_beta else None
        form.likelihood(GraphInputs(beta=beta, beta_prior=prior, blocks=tuple(blocks), sigma_e=sigma_e,
                                    row_sd=row_sd, residual_corr=rho))
    return model
