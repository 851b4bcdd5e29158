"""The protocol every likelihood form implements, and what the exact forms share.

A form is chosen once per fit (:func:`bayes_lmm.likelihood.registry.choose`) and passed down
as an object: the graph asks it for the random effects and the likelihood, the nutpie cache
for its structure signature, the completion step for the exact draws of β and u, and the
summary for its description. Nobody else asks which form it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..design import Design
from ..names import BETA_CHOL, BETA_DIM, BETA_MEAN, CHOL_COLUMN_DIM
from . import linalg

#: Gram matrices of the count-grouped sums are formed while they take fewer numbers
GRAM_NUMBERS_MAX = 4_000_000
#: largest number of random coefficients left to a dense Cholesky under "auto"
DENSE_Q_MAX = 150


@dataclass(frozen=True)
class GraphInputs:
    """What the graph hands a form to finish the model: β (None when it is integrated out,
    then ``beta_prior`` holds the Normal prior's ``mu`` and ``sigma`` as length-p data), each
    block's (key, block, u_b or Λ_b) from :meth:`Form.block_effect`, and σ_e; with a residual
    structure other than σ²_e I (then ``sigma_e`` is None), ``row_sd`` (n,) the SD of each row
    and ``residual_corr`` its correlation parameters (or None)."""

    beta: object
    beta_prior: dict | None
    blocks: tuple
    sigma_e: object
    row_sd: object = None
    residual_corr: object = None


class Form(ABC):
    """One way of writing p(y | β, θ) for a design (and of completing the draws afterwards).

    Class attributes: ``name`` (a label for messages and tests), ``parameterization`` (what
    ``fit.parameterization`` reports) and ``samples_u`` (whether u is a sampled variable).
    """

    name: ClassVar[str]
    parameterization: ClassVar[str]
    samples_u: ClassVar[bool]
    #: whether u's draws have a mixing of their own to judge (False where every draw of u is
    #: an exact draw given that draw's θ: the exact forms, the Gibbs sampler's joint step)
    u_mixes_alone: ClassVar[bool]

    #: why :func:`~bayes_lmm.likelihood.registry.choose` picked this form, in words
    reason: str = ""
    #: the sampler this form brings instead of NUTS (None: NUTS on the form's graph)
    own_sampler: ClassVar[str | None] = None

    def __init__(self, design: Design):
        self.design = design

    @classmethod
    @abstractmethod
    def applies(cls, design: Design) -> bool:
        """Whether the form is exact for ``design``."""

    @classmethod
    def cost(cls, design: Design) -> int:
        """Size of the dense system solved per gradient (0: none)."""
        return 0

    def describe(self) -> str:
        """How the form writes the likelihood, in words (empty for the latent forms)."""
        return ""

    def dynamic_levels(self) -> tuple[int, ...]:
        """Blocks whose number of levels enters only as data shapes (not in the signature)."""
        return ()

    def structure(self) -> tuple:
        """What the graph's shape depends on beyond the block sizes."""
        return (self.name,)

    def signature(self) -> tuple:
        """Everything the compiled graph's structure depends on in the design (with the
        priors' families this is the compile-cache key, :func:`bayes_lmm.graph.model_signature`)."""
        dynamic = self.dynamic_levels()
        blocks = tuple((None if j in dynamic else b.n_levels, b.n_coefs, b.correlated, b.dense is not None)
                       for j, b in enumerate(self.design.blocks))
        n = None if not self.samples_u else self.design.n
        return (self.parameterization, n, blocks, self.structure())

    @abstractmethod
    def block_effect(self, key: str, blk, sd_vec, chol):
        """Called once per random block inside the model: latent forms create u_b (L, k),
        exact forms return Λ_b (``chol`` = diag(σ_b)·chol(R_b), or None if uncorrelated)."""

    @abstractmethod
    def likelihood(self, inputs: GraphInputs) -> None:
        """Add the likelihood of y (and the deterministics it needs) to the current model."""


@dataclass(frozen=True, eq=False)
class Centred:
    """The statistics every exact form reads: n, X'X and X'y, y'y of y − Xβ₀.

    The y-statistics are of y − Xβ₀ (β₀ least squares), so y'y − 2β'X'y + β'X'Xβ does not
    cancel catastrophically when y sits far from 0 (1e8 + noise); the graph uses β − β₀.
    """

    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    beta0: np.ndarray

    @staticmethod
    def columns(design: Design) -> tuple[np.ndarray, np.ndarray, dict]:
        """(X, y − Xβ₀, the Centred fields) of a design."""
        X = design.X
        beta0 = np.linalg.lstsq(X, design.y, rcond=None)[0] if design.p else np.zeros(0)
        y = design.y - X @ beta0
        return X, y, dict(n=design.n, XtX=X.T @ X, Xty=X.T @ y, yty=float(y @ y), beta0=beta0)

    def delta(self, beta: np.ndarray) -> np.ndarray:
        """β − β₀ for draws (…, p)."""
        return beta - self.beta0

    def arrays(self) -> dict[str, np.ndarray]:
        return {"XtX": self.XtX, "Xty": self.Xty, "yty": np.asarray(self.yty), "beta0": self.beta0,
                "n": np.asarray(float(self.n))}


#: statistics with trailing axes of length p (the columns of X), by number of such axes
_P_TRAILING = {"XtX": 2, "Xty": 1, "beta0": 1, "WtX": 1, "AtX": 1, "group_Xy": 1, "group_XX": 2,
               "group_cX": 1}


class ExactForm(Form):
    """u integrated out: ``log p(y | β, θ)`` from sufficient statistics (``self.stats``).

    With P = R'V⁻¹R for the response columns R, every form supplies log|V| − n log σ_e² and
    the correction Q with P = R'R/σ_e² − Q (:meth:`terms`); the log-densities with β sampled
    and with β integrated out, and the exact draws of β, are common to all of them.
    """

    parameterization = "marginal"
    samples_u = False
    u_mixes_alone = False

    def __init__(self, design: Design, stats: Centred):
        super().__init__(design)
        self.stats = stats

    @classmethod
    @abstractmethod
    def from_design(cls, design: Design, *, gram_numbers_max: int = GRAM_NUMBERS_MAX) -> ExactForm:
        """The form with its statistics (one pass over the rows)."""

    @classmethod
    @abstractmethod
    def cheap(cls, design: Design, *, dense_q_max: int = DENSE_Q_MAX) -> bool:
        """Whether ``auto`` should prefer this form to the latent parameterization."""

    def arrays(self) -> dict[str, np.ndarray]:
        """The statistics the graph reads, by data name (``stat_<name>``)."""
        return self.stats.arrays()

    def tensors(self) -> dict:
        """:meth:`arrays` as ``pm.Data`` of the current model (static p: PyTensor then folds the
        shape checks away, Example 1's β-integrated logp+grad graph 209 → 149 nodes)."""
        out = {}
        p = self.design.p
        for name, value in self.arrays().items():
            value = np.asarray(value)
            var = pm.Data(f"stat_{name}", value if value.dtype.kind == "i" else value.astype(float))
            if name in _P_TRAILING:
                trailing = _P_TRAILING[name]
                var = pt.specify_shape(var, (None,) * (var.ndim - trailing) + (p,) * trailing)
            out[name] = var
        return out

    def block_sizes(self) -> list[tuple[int, int]]:
        return [(b.n_levels, b.n_coefs) for b in self.design.blocks]

    @abstractmethod
    def terms(self, t: dict, delta, lambdas: list, s2):
        """(log|V| − n log σ_e², Q) with P = R'V⁻¹R = R'R/σ_e² − Q; ``lambdas`` in design order."""

    def block_effect(self, key: str, blk, sd_vec, chol):
        return chol if chol is not None else pt.diag(sd_vec)

    def precision(self, t: dict, delta, lambdas: list, sigma_e):
        """log|V| − n log σ_e² and P = R'V⁻¹R for the response columns R (β sampled: δ given)."""
        s2 = sigma_e**2
        T = linalg.gram(pt.as_tensor(t["yty"]), t["Xty"], t["XtX"], delta) / s2
        logdet, Q = self.terms(t, delta, lambdas, s2)
        return logdet, T - Q

    def loglik(self, t: dict, beta, lambdas: list, sigma_e):
        """log p(y | β, θ) = log N(y | Xβ, ZGZ' + σ_e² I) as a PyTensor expression."""
        logdet, P = self.precision(t, beta - t["beta0"], lambdas, sigma_e)
        n = t["n"]
        return -0.5 * (n * np.log(2 * np.pi) + n * pt.log(sigma_e**2) + logdet + P[0, 0])

    def loglik_beta_integrated(self, t: dict, prior_mu, prior_sd, lambdas: list, sigma_e):
        """log p(y | θ) with β ~ N(μ, diag(s²)) integrated out as well, and β's exact conditional.

        With P = [y, X]'V⁻¹[y, X] (in β − β₀ units: h = X'V⁻¹(y − Xβ₀), H = X'V⁻¹X) the
        posterior of β given θ is Gaussian with precision A = H + diag(s⁻²); in standard units
        (β − β₀ = s ∘ z) A_s = sHs + I (well conditioned whatever the scale of X) and
        b_s = s ∘ h + (μ − β₀)/s:

            log p(y | θ) = −½ [ n log 2π + log|V| + y'V⁻¹y + |m|² − b_s'A_s⁻¹b_s + log|A_s| ],

        m = (μ − β₀)/s. Returns (log p(y | θ), E[β | y, θ], chol(A_s)): β | y, θ = E + s ∘ L⁻ᵀε.
        """
        logdet, P = self.precision(t, None, lambdas, sigma_e)
        m = (prior_mu - t["beta0"]) / prior_sd
        p = m.type.shape[0]
        A = prior_sd[:, None] * P[1:, 1:] * prior_sd[None, :] + pt.eye(p if p is not None else m.shape[0])
        b = prior_sd * P[1:, 0] + m
        chol, w, x, logdet_A = linalg.cholesky_solve(A, b)
        n = t["n"]
        value = -0.5 * (n * np.log(2 * np.pi) + n * pt.log(sigma_e**2) + logdet + P[0, 0] + pt.dot(m, m)
                        - pt.dot(w, w) + logdet_A)
        return value, t["beta0"] + prior_sd * x, chol

    def likelihood(self, inputs: GraphInputs) -> None:
        t = self.tensors()
        lambdas = [lam for _, _, lam in inputs.blocks]
        if inputs.beta is None:
            value, mean, chol = self.loglik_beta_integrated(t, inputs.beta_prior["mu"], inputs.beta_prior["sigma"],
                                                            lambdas, inputs.sigma_e)
            pm.Potential("y_marginal", value)
            pm.Deterministic(BETA_MEAN, mean, dims=BETA_DIM)
            pm.Deterministic(BETA_CHOL, chol, dims=(BETA_DIM, CHOL_COLUMN_DIM))
        else:
            pm.Potential("y_marginal", self.loglik(t, inputs.beta, lambdas, inputs.sigma_e))

    # ------------------------------------------------------------ exact draws after sampling
    @staticmethod
    def draw_beta(mean: np.ndarray, chol: np.ndarray, prior_sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exact draws of β | y, θ from the conditional that :meth:`loglik_beta_integrated`
        carries out of the sampler: ``mean`` (S, p), ``chol`` (S, p, p) the Cholesky factor L of
        the standardised precision A_s; β = mean + s ∘ L⁻ᵀε has covariance diag(s) A_s⁻¹ diag(s)."""
        eps = rng.standard_normal(mean.shape)
        noise = np.linalg.solve(np.swapaxes(chol, -1, -2), eps[..., None])[..., 0]
        return mean + prior_sd * noise

    @abstractmethod
    def draw_u(self, beta: np.ndarray, sigma: np.ndarray, corr: np.ndarray | None,
               rng: np.random.Generator, chunk: int | None = None) -> np.ndarray:
        """Exact draws of u | y, β, θ for every posterior draw: shape (S, q).

        ``sigma`` holds (S, components + 1) SDs with σ_e last; ``corr`` the correlation draws.
        """
