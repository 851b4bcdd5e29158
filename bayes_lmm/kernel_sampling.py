"""NUTS on the compiled kernel (:mod:`bayes_lmm.likelihood.kernel`) through nutpie (its C
callbacks handed over directly, or its public ``from_pyfunc`` interface): the fast path of
every exact form, with nothing compiled per model.

The PyMC model stays the statement of the model: the kernel evaluates the same log-density
(tests/test_kernel.py holds it to the graph's compiled log-density and gradient), its
coordinates are the graph's value variables in the graph's order, and the trace holds the
graph's deterministics (``sigma``, ``correlation``, β's conditional), so everything after
sampling is shared with the PyMC path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import pymc as pm

from . import lkj
from .design import RESIDUAL, Design
from .graph import integrates_beta
from .likelihood import Form, kernel
from .likelihood.kernel_data import (
    KERNEL_K_MAX,
    KernelData,
    SdPrior,
    build_kernel_data,
    kernel_applies,
)
from .names import (
    BETA_CHOL,
    BETA_DIM,
    BETA_MEAN,
    CHOL_COLUMN_DIM,
    COMPONENT_DIM,
    CORR_DIM,
    block_key,
    safe_name,
)
from .nutpie_cache import seeded_initial_point
from .priors import PriorSet

#: serialises the graph's initial-point function (not thread-safe) across nutpie's chain threads
_START_LOCK = threading.Lock()
#: the families the kernel evaluates (others sample the PyMC graph)
SUPPORTED_SD_FAMILIES = frozenset(kernel.SD_FAMILIES)


@dataclass(frozen=True, eq=False)
class KernelModel:
    """A design's kernel arrays, the loaded kernel, and the trace's names and dims."""

    data: KernelData
    kernel: kernel.Kernel
    coords: dict
    packed: tuple[np.ndarray, np.ndarray]
    start: object  # seed ↦ the graph's initial point by value-variable name

    def function(self) -> _LogDensity:
        """A log-density function x ↦ (log p, ∇ log p) with its own buffers (one per chain:
        nutpie calls it from the chain's thread)."""
        return _LogDensity(self)

    def expand_function(self):
        """x ↦ the traced variables: σ's, correlations and β's conditional given θ."""
        f = self.function()
        d = self.data

        def expand(x, **_shared):  # nutpie passes its shared data (none here) by keyword
            f(x)
            mean, chol, sigma, corr = f.outs
            traced = {"sigma": sigma.copy(), BETA_MEAN: d.beta0 + d.beta_sd * mean, BETA_CHOL: chol.copy()}
            if d.n_corr:
                traced["correlation"] = corr[: d.n_corr].copy()
            return traced

        return expand

    def initial_point(self, seed: int) -> np.ndarray:
        """The graph's own seeded initial point (PyMC's support points jittered by U(−1, 1)
        on the unconstrained scale): the same start as the graph path with the same seed.
        nutpie asks from every chain's thread at once, and the PyTensor function behind
        ``start`` keeps its values in shared storage: one call at a time."""
        with _START_LOCK:
            point = self.start(seed)
        return np.array([float(np.asarray(point[name])) for name in self.data.names])


class _LogDensity:
    """x ↦ (log p, ∇ log p) through the kernel, holding every buffer the kernel writes (the
    pointers are resolved once; a call costs the kernel plus a few microseconds)."""

    def __init__(self, km: KernelModel):
        d = km.data
        self.x, self.grad = np.zeros(d.n_dim), np.zeros(d.n_dim)
        self.outs = (np.zeros(d.p), np.zeros((d.p, d.p)), np.zeros(d.n_sd), np.zeros(max(d.n_corr, 1)))
        self.packed = km.packed
        ints, floats = self.packed
        self.pointers = ([self.x.ctypes.data, self.grad.ctypes.data] + [a.ctypes.data for a in self.outs]
                         + [ints.ctypes.data, floats.ctypes.data])
        self.fn = km.kernel.raw

    def __call__(self, x, **_shared):  # nutpie passes its shared data (none here) by keyword
        self.x[:] = x
        value = self.fn(*self.pointers)
        return value, self.grad.copy()


def expected_names(design: Design, prior_set: PriorSet) -> tuple[str, ...]:
    """The graph's value variables as the kernel lays them out: per block its σ's then its
    correlation (one CPC per coordinate for k ≥ 3), σ_e last (names as
    :func:`bayes_lmm.graph.build_model` gives them)."""
    def sd(name, prior):
        raw = f"var_{name}_std" if prior.family == "InverseGamma" else f"sigma_{name}_std"
        return f"{raw}_log__"

    names = []
    for blk in design.blocks:
        names += [sd(safe_name(c), prior_set.component(c)) for c in blk.components]
        corr = f"corr_{safe_name(block_key(design, blk))}"
        if blk.correlated and blk.n_coefs == 2:
            names.append(f"{corr}_beta_logodds__")
        elif blk.correlated and blk.n_coefs > 2:
            names += [f"{corr}_cpc_{i}_{j}_logodds__" for i, j in lkj.cpc_pairs(blk.n_coefs)]
    return tuple(names + [sd(RESIDUAL, prior_set.residual)])


def unavailable(design: Design, prior_set: PriorSet, form: Form, *, beta_integrated: bool) -> str | None:
    """Why the kernel cannot evaluate this model, in words (None: it can)."""
    if form.samples_u:
        return f"the {form.name} parameterization samples u"
    if design.residual is not None:
        return "the kernel is written for R = σ²_e I, not a residual structure"
    if not beta_integrated:
        return "β is sampled (a prior on β other than Normal, or more than 30 fixed effects)"
    if any(b.n_coefs > KERNEL_K_MAX and b.dense is None for b in design.blocks):
        return f"a random block of more than {KERNEL_K_MAX} coefficients"
    if not kernel_applies(design):
        return "the random effects leave too large a system after eliminating one factor"
    priors = [prior_set.component(c) for c in design.components] + [prior_set.residual]
    odd = sorted({p.family for p in priors} - SUPPORTED_SD_FAMILIES)
    if odd:
        return f"a standard deviation prior of family {', '.join(odd)}"
    return None


def kernel_could_sample(design: Design, prior_set: PriorSet) -> bool:
    """Whether the kernel could sample this design's exact form with these priors (β
    integrated out, supported families, no residual structure) and loads on this machine;
    the size of the system is :func:`~bayes_lmm.likelihood.kernel_data.kernel_applies`'s."""
    if design.residual is not None or not design.blocks or not integrates_beta(design, prior_set, "marginal"):
        return False
    priors = [prior_set.component(c) for c in design.components] + [prior_set.residual]
    if {p.family for p in priors} - SUPPORTED_SD_FAMILIES:
        return False
    return kernel.load() is not None


def kernel_model(model: pm.Model, design: Design, prior_set: PriorSet, form: Form, *,
                 beta_integrated: bool) -> KernelModel | None:
    """The kernel model of a fit, or None where the kernel does not apply
    (:func:`unavailable`) or cannot be loaded (no C compiler, no writable directory)."""
    if unavailable(design, prior_set, form, beta_integrated=beta_integrated) is not None:
        return None
    lib = kernel.load()
    if lib is None:
        return None
    priors = [prior_set.component(c) for c in design.components] + [prior_set.residual]
    sd_priors = [SdPrior.of(p) for p in priors]
    names = tuple(model.rvs_to_values[rv].name for rv in model.free_RVs)
    if names != expected_names(design, prior_set):
        return None  # the graph has other coordinates than the kernel reads: sample the graph
    mu = np.array([dict(p.params)["mu"] for p in prior_set.beta], float)
    sd = np.array([dict(p.params)["sigma"] for p in prior_set.beta], float)
    try:
        data = build_kernel_data(design, sd_priors, prior_set.correlation.kwargs()["eta"], mu, sd, names)
    except ValueError:
        return None
    coords = {k: list(v) for k, v in model.coords.items() if k in (BETA_DIM, COMPONENT_DIM, CORR_DIM, CHOL_COLUMN_DIM)}
    return KernelModel(data=data, kernel=lib, coords=coords, packed=data.packed(),
                       start=seeded_initial_point(model))


def _traced(d: KernelData):
    """Names, shapes and dims of the traced variables, in the order the kernel expands them."""
    names = ["sigma", BETA_MEAN, BETA_CHOL] + (["correlation"] if d.n_corr else [])
    shapes = [(d.n_sd,), (d.p,), (d.p, d.p)] + ([(d.n_corr,)] if d.n_corr else [])
    dims = {"sigma": (COMPONENT_DIM,), BETA_MEAN: (BETA_DIM,), BETA_CHOL: (BETA_DIM, CHOL_COLUMN_DIM)}
    if d.n_corr:
        dims["correlation"] = (CORR_DIM,)
    return names, shapes, dims


@dataclass(frozen=True)
class _Address:
    """What nutpie reads of a compiled callback: its address."""

    address: int


def _native_model(km: KernelModel):
    """nutpie's model of C callbacks with the kernel's own addresses: the sampler calls the
    kernel without the Python interpreter (nutpie's callback interface of
    ``nutpie.compile_pymc.CompiledPyMCModel``, tested with the versions pyproject.toml allows)."""
    from nutpie.compile_pymc import CompiledPyMCModel

    d = km.data
    names, shapes, dims = _traced(d)
    sizes = [int(np.prod(s)) for s in shapes]
    ends = np.cumsum(sizes)
    slices = [slice(int(e - n), int(e)) for n, e in zip(sizes, ends)]
    ints, floats = km.packed
    user_data = np.array([ints.ctypes.data, floats.ctypes.data], dtype=np.uint64)
    # not for nutpie's with_data (it would rewrite user_data as a record of PyTensor's arrays):
    # a kernel model is built per fit and never reused with other data
    return CompiledPyMCModel(
        dims=dims, compiled_logp_func=_Address(km.kernel.nutpie_logp),
        compiled_expand_func=_Address(km.kernel.nutpie_expand), initial_point_func=km.initial_point,
        # the arrays the callbacks read through user_data stay alive with the model
        shared_data={"ints": ints, "floats": floats}, user_data=user_data, n_expanded=int(ends[-1]),
        shape_info=(names, slices, shapes), logp_func=None, expand_func=None, _n_dim=d.n_dim,
        _shapes=dict(zip(names, shapes)), _coords=km.coords)


def nutpie_model(km: KernelModel):
    """A nutpie model of the kernel: its C callbacks handed to nutpie directly, or where this
    nutpie differs, ``nutpie.compiled_pyfunc.from_pyfunc`` (public, through the
    interpreter: Example 1 sampled in 2.5 s against 0.4 s). Nothing is compiled either way."""
    try:
        return _native_model(km)
    except (ImportError, AttributeError, TypeError):
        pass
    from nutpie.compiled_pyfunc import from_pyfunc

    names, shapes, dims = _traced(km.data)

    def make_logp():
        return km.function()

    def make_expand(seed1, seed2, chain):
        return km.expand_function()

    return from_pyfunc(km.data.n_dim, make_logp, make_expand, [np.dtype("float64")] * len(names), shapes, names,
                       coords=km.coords, dims=dims, make_initial_point_fn=km.initial_point)
