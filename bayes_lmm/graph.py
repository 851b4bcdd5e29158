"""Build the PyMC model for ``y = Xβ + Zu + e`` with u as a latent vector.

Random effects enter by index-gather (``u_b[level_index] · values``), never by a dense
Z product, so cost grows with n·k, not n·q. Every variable carries named dims.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import marginal
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


def _data(name: str, value) -> pt.TensorVariable:
    """Every number that depends on the data enters as ``pm.Data``, so that a compiled model
    of the same structure can be reused with new data (see :func:`model_signature`)."""
    return pm.Data(name, np.asarray(value))


def _params(var: str, prior: Prior) -> dict[str, pt.TensorVariable]:
    return {k: _data(f"prior_{var}_{k}", float(v)) for k, v in prior.params}


#: largest number of fixed effects integrated out with u (a p×p Cholesky per gradient, and a
#: p×p factor per draw kept until β is drawn)
BETA_INTEGRATED_P_MAX = 30
#: names of the deterministics that carry β's exact conditional given θ out of the sampler
BETA_MEAN, BETA_CHOL = "beta_conditional_mean", "beta_conditional_chol"
CHOL_COLUMN_DIM = "coef_column"


def integrates_beta(design: Design, priors: PriorSet, parameterization: str) -> bool:
    """Whether the marginal model integrates β out as well as u (Normal priors on every β,
    at most :data:`BETA_INTEGRATED_P_MAX` of them): NUTS then moves in the variance
    parameters alone and β is drawn exactly afterwards, as u is."""
    return (parameterization == "marginal" and 0 < design.p <= BETA_INTEGRATED_P_MAX
            and all(p.family == "Normal" for p in priors.beta))


def model_signature(design: Design, priors: PriorSet, parameterization: str) -> tuple:
    """Everything a compiled model's structure depends on; equal signatures share a compiled model."""
    levels = [b.n_levels for b in design.blocks]
    n = design.n
    kind = None
    if parameterization == "marginal":
        # the marginal graph differs between dense and nested designs with equal block sizes
        st = marginal.statistics(design)
        kind = st.structure
        # the number of rows, and the levels of a single block or of the factor the crossed form
        # solves out, enter only as the shapes of data arrays (dynamic): a model compiled for 8
        # groups serves 13; levels left to a Cholesky or nested ones shape the graph itself
        n = None
        for j in ([0] if st.kind == "grouped" else [st.eliminated] if st.kind == "crossed" else []):
            levels[j] = None
    blocks = tuple((L, b.n_coefs, b.correlated, b.dense is not None) for L, b in zip(levels, design.blocks))
    families = (tuple(p.family for p in priors.beta), tuple(p.family for _, p in priors.components),
                priors.residual.family, priors.correlation.kwargs()["eta"])
    return (parameterization, n, design.p, blocks, families, kind,
            integrates_beta(design, priors, parameterization))


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
        COMPONENT_DIM: list(design.components) + [RESIDUAL],
        U_DIM: design.u_labels,
        OBS_DIM: list(range(design.n)),
    }
    corr = correlation_labels(design)
    if corr:
        coords[CORR_DIM] = corr
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
    # PyMC's LKJCorr needs a constant eta, so eta is part of the model signature
    corr = pm.LKJCorr(name, n=k, eta=eta, return_matrix=True)
    corr_parts.append(corr[np.triu_indices(k, 1)])
    return sds, sd_vec, pt.linalg.cholesky(corr)


#: statistics with trailing axes of length p (the columns of X), by number of such axes
_P_TRAILING = {"XtX": 2, "Xty": 1, "beta0": 1, "WtX": 1, "AtX": 1, "group_Xy": 1, "group_XX": 2,
               "group_cX": 1}


def build_model(design: Design, priors: PriorSet, *, parameterization: str = "noncentered",
                integrate_beta: bool | None = None) -> pm.Model:
    """The ``pm.Model`` of ``y = Xβ + Zu + e``.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    parameterization : {"noncentered", "centered", "marginal"}
        Non-centered: ``u_b = z_b · (diag(σ_b) L_b)'`` with ``z_b ~ N(0, 1)``; centered:
        ``u_b ~ N(0, G_b)``; marginal: u integrated out (:mod:`bayes_lmm.marginal`), the
        likelihood a ``pm.Potential`` named ``y_marginal``, and u drawn after sampling.
    integrate_beta : bool, optional
        Marginal only: integrate β out as well (default: where :func:`integrates_beta` allows);
        False keeps β a sampled variable.

    Returns
    -------
    pm.Model
        Variables: ``beta`` (dim ``coef``), ``sigma`` (dim ``component``, σ_j and σ_e),
        ``u`` (dim ``u_index``; latent parameterizations), ``correlation`` (if any correlated
        block), and the likelihood ``y`` (dim ``obs``; latent parameterizations). Where the
        marginal model integrates β out too (:func:`integrates_beta`), ``beta`` is replaced by
        β's exact conditional given θ: ``beta_conditional_mean`` and ``beta_conditional_chol``
        (see :func:`bayes_lmm.marginal.loglik_beta_integrated`), from which β is drawn after
        sampling.
    """
    if parameterization not in ("noncentered", "centered", "marginal"):
        raise ValueError(f"unknown parameterization {parameterization!r}")
    coords = coords_for(design)
    without_beta = integrates_beta(design, priors, parameterization)
    if integrate_beta is not None:
        if integrate_beta and not without_beta:
            raise ValueError("β can be integrated out only in the marginal parameterization, with "
                             f"Normal priors on every β and at most {BETA_INTEGRATED_P_MAX} of them")
        without_beta = integrate_beta
    if parameterization == "marginal":
        coords.pop(U_DIM)
    if without_beta:
        coords[CHOL_COLUMN_DIM] = list(design.x_names)
    with pm.Model(coords=coords) as model:
        beta = None if without_beta else _beta(priors)
        sds, corr_parts, u_parts, lambdas = [], [], [], []
        mu = pt.dot(_data("X", design.X), beta) if parameterization != "marginal" else None
        for blk in design.blocks:
            key = block_key(design, blk)
            block_sds, sd_vec, chol_corr = _block_scales(blk, key, priors, corr_parts)
            sds.extend(block_sds)
            chol = sd_vec[:, None] * chol_corr if chol_corr is not None else None
            if parameterization == "marginal":
                lambdas.append(chol if chol is not None else pt.diag(sd_vec))
                continue
            name = safe_name(key)
            dims = (level_dim(key), coef_dim(key))
            if parameterization == "noncentered":
                z = pm.Normal(f"z_{name}", 0.0, 1.0, dims=dims)
                u_b = pt.dot(z, chol.T) if chol is not None else z * sd_vec[None, :]
            elif chol is not None:
                u_b = pm.MvNormal(f"u_{name}", mu=np.zeros(blk.n_coefs), chol=chol, dims=dims)
            else:
                u_b = pm.Normal(f"u_{name}", 0.0, sd_vec[None, :], dims=dims)
            u_parts.append(u_b.reshape((-1,)))
            if blk.dense is not None:
                mu = mu + pt.dot(_data(f"Z_{name}", blk.dense), u_b[:, 0])
            else:
                index = _data(f"index_{name}", blk.index)
                mu = mu + (u_b[index] * _data(f"values_{name}", blk.values)).sum(axis=1)
        sigma_e = _sd_variable(RESIDUAL, priors.residual)
        sds.append(sigma_e)
        pm.Deterministic("sigma", pt.stack(sds), dims=COMPONENT_DIM)
        if u_parts:
            pm.Deterministic("u", pt.concatenate(u_parts), dims=U_DIM)
        if corr_parts:
            pm.Deterministic("correlation", pt.concatenate(corr_parts), dims=CORR_DIM)
        if parameterization == "marginal":
            st = marginal.statistics(design)
            data = {f: pm.Data(f"stat_{f}", np.asarray(getattr(st, f), dtype=float))
                    for f in ("XtX", "Xty", "yty", "WtW", "WtX", "Wty")}
            data["beta0"] = pm.Data("stat_beta0", np.zeros(design.p) if st.beta0 is None else st.beta0)
            data["n"] = _data("stat_n", float(st.n))
            sizes = [(b.n_levels, b.n_coefs) for b in design.blocks]
            if st.groups is not None:
                # the grouped form reads counts, values and the y/X sums only
                names = [f.name for f in dataclasses.fields(st.groups)]
                if st.kind == "grouped":
                    names = ["counts", "values", "yy", "Xy", "XX"]
                for f in names:
                    data[f"group_{f}"] = pm.Data(f"stat_group_{f}", getattr(st.groups, f))
            elif st.kind == "crossed":
                for f in ("AtA", "AtX", "Aty", "cross"):
                    data[f] = pm.Data(f"stat_{f}", np.asarray(getattr(st, f), dtype=float))
            # p is part of the signature: static shapes let PyTensor fold the shape checks away
            # (Example 1's β-integrated logp+grad graph: 209 → 149 nodes; numba compile time barely moves)
            for name, trailing in _P_TRAILING.items():
                if name in data:
                    var = data[name]
                    data[name] = pt.specify_shape(var, (None,) * (var.ndim - trailing) + (design.p,) * trailing)
            if st.kind == "nested":
                # the nested closed form runs outermost factor first
                for j, parent in enumerate(st.parents):
                    data[f"parent{j}"] = pm.Data(f"stat_parent{j}", np.asarray(parent, dtype=np.int64))
                lambdas = [lambdas[b] for b in st.chain]
                sizes = [sizes[b] for b in st.chain]
            form = dict(kind=st.kind, block_sizes=sizes, eliminated=st.eliminated)
            if without_beta:
                prior = _beta_prior_data(priors)  # Normal: mu, sigma
                value, mean, chol = marginal.loglik_beta_integrated(
                    data, prior["mu"], prior["sigma"], lambdas, sigma_e, **form)
                pm.Potential("y_marginal", value)
                pm.Deterministic(BETA_MEAN, mean, dims=BETA_DIM)
                pm.Deterministic(BETA_CHOL, chol, dims=(BETA_DIM, CHOL_COLUMN_DIM))
            else:
                pm.Potential("y_marginal", marginal.loglik(data, beta, lambdas, sigma_e, **form))
        else:
            pm.Normal("y", mu=mu, sigma=sigma_e, observed=_data("y_observed", design.y), dims=OBS_DIM)
    return model
