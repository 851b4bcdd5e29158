"""The compiled kernel against the PyMC graph, the statement of the model (no sampling).

For every exact form the registry picks, every prior family of a standard deviation and
LKJ's η, the kernel's log-density and gradient at random unconstrained points equal the
graph's compiled ``logp``/``dlogp`` (Jacobians included) to relative 1e-8, and its
expansion (σ, correlations, β's conditional mean and Cholesky factor) equals the graph's
deterministics. Designs the kernel cannot evaluate are named with the reason.
"""

import numpy as np
import pandas as pd
import pytensor
import pytest

import bayes_lmm as bl
from bayes_lmm.graph import integrates_beta
from bayes_lmm.kernel_sampling import kernel_model, nutpie_model, unavailable
from bayes_lmm.likelihood import kernel
from bayes_lmm.names import BETA_CHOL, BETA_MEAN
from bayes_lmm.pipeline import build_with_form

#: PyTensor's Python linker: no C compilation for the reference values
PY_MODE = pytensor.compile.mode.Mode(linker="py", optimizer="fast_compile")


@pytest.fixture(scope="module")
def unbalanced():
    """Unbalanced nesting a/b, a crossed factor d, covariates x, z, a factor f."""
    rng = np.random.default_rng(8)
    rows = [(a, b) for a in range(5) for b in range(rng.integers(1, 4)) for _ in range(rng.integers(1, 5))]
    data = pd.DataFrame(rows, columns=["a", "b"])
    data["d"] = rng.integers(0, 3, len(data))
    data["f"] = rng.choice(["lo", "mid", "hi"], len(data))
    data["x"] = rng.normal(size=len(data))
    data["z"] = rng.normal(size=len(data))
    data["y"] = 50.0 + data["a"] * 0.5 + data["x"] + rng.normal(size=len(data))
    return data


FORMULAS = [
    ("y ~ x + (1|a:b)", "grouped"),  # k = 1, levels summed by row count
    ("y ~ f + (1|a)", "grouped"),
    ("y ~ x + (x|a)", "grouped"),  # a 2×2 correlated block
    ("y ~ x + (x + z||a:b)", "crossed"),  # three one-coefficient blocks of one factor
    ("y ~ x + (1|a/b)", "nested"),
    ("y ~ x + (1|a:b) + (1|d)", "crossed"),
    ("y ~ x + (1|a:b) + (x|d)", "crossed"),  # correlated block in the remainder
    ("y ~ z + (x|a) + (x||d)", "crossed"),
    ("y ~ x + (x|a) + (x|d)", "dense"),  # two correlated blocks: one is eliminated
    ("y ~ x + (x + z|a)", "grouped"),  # a 3×3 correlated block: LKJ through its CPCs
    ("y ~ x + (x + z + x:z|a)", "grouped"),  # 4×4
    ("y ~ x + (1|a:b) + (x + z|d)", "crossed"),  # a 3×3 block in the remainder
    ("y ~ x + (x + z|a) + (x|d)", "dense"),  # crossed 3×3 and 2×2 blocks
]


def _kernel_and_graph(formula, data, priors=None):
    spec = bl.ModelSpec(formula=formula, priors=bl.spec.normalize_priors(priors))
    design = bl.design_from_formula(spec.formula, data)
    model, prior_set, form = build_with_form(spec, design, parameterization="marginal")
    km = kernel_model(model, design, prior_set, form, beta_integrated=integrates_beta(design, prior_set, form))
    return km, model, form


def _compare(km, model, rng, points=4, scale=1.0, expand_rtol=1e-8):
    names = km.data.names
    logp = model.compile_logp(jacobian=True, mode=PY_MODE)
    dlogp = model.compile_dlogp(jacobian=True, mode=PY_MODE)
    outs = [model["sigma"], model[BETA_MEAN], model[BETA_CHOL]]
    if "correlation" in model.named_vars:
        outs.append(model["correlation"])
    deterministics = model.compile_fn(model.replace_rvs_by_values(outs), inputs=model.value_vars, mode=PY_MODE)
    f = km.function()
    expand = km.expand_function()
    for _ in range(points):
        x = rng.normal(0.0, scale, km.data.n_dim)
        point = dict(zip(names, x))
        value, grad = f(x)
        ref, gref = logp(point), dlogp(point)
        assert abs(value - ref) <= 1e-8 * abs(ref)
        np.testing.assert_allclose(grad, gref, rtol=1e-8, atol=1e-8 * np.max(np.abs(gref)))
        traced = expand(x)
        for name, ref_value in zip(["sigma", BETA_MEAN, BETA_CHOL, "correlation"], deterministics(point)):
            np.testing.assert_allclose(traced[name], ref_value, rtol=expand_rtol,
                                       atol=expand_rtol * np.max(np.abs(ref_value)) + 1e-12)


@pytest.mark.parametrize("formula,form_name", FORMULAS)
def test_kernel_equals_graph_for_every_form(unbalanced, formula, form_name):
    km, model, form = _kernel_and_graph(formula, unbalanced)
    assert form.name == form_name
    assert km is not None
    # the kernel's coordinates are the graph's value variables, in order
    assert km.data.names == tuple(v.name for v in model.value_vars)
    _compare(km, model, np.random.default_rng(3))


SD_PRIORS = [
    bl.HalfNormal(2.0),
    bl.HalfStudentT(3.0, 1.5),
    bl.HalfCauchy(0.7),
    bl.Exponential(0.5),
    bl.InverseGamma(3.0, 2.0),
]


@pytest.mark.parametrize("prior", SD_PRIORS, ids=lambda p: p.family)
@pytest.mark.parametrize("formula", ["y ~ x + (x|a)", "y ~ x + (1|a:b) + (1|d)"])
def test_kernel_equals_graph_for_every_prior_family(unbalanced, prior, formula):
    priors = {"random": prior, "Residual": prior, "correlation": bl.LKJ(1.5)}
    km, model, _ = _kernel_and_graph(formula, unbalanced, priors)
    _compare(km, model, np.random.default_rng(5), points=3)


def test_kernel_with_normal_priors_on_beta_and_far_points(unbalanced):
    """Given Normal priors on β (their means and scales) and points far out on the
    unconstrained axes (σ_b → 0 and → ∞, r → ±1), the kernel still equals the graph (β's
    conditional there to 1e-6: both sides round differently in an ill-conditioned system)."""
    priors = {"x": bl.Normal(1.0, 0.5), "Intercept": bl.Normal(40.0, 20.0)}
    km, model, _ = _kernel_and_graph("y ~ x + (x|a) + (1|d)", unbalanced, priors)
    _compare(km, model, np.random.default_rng(11), points=6, scale=4.0, expand_rtol=1e-6)


def test_kernel_on_matrix_input_with_rank_deficient_x():
    """The notes' Example 1 as matrices: X = [1, genotype1, genotype2] (rank 2), Z one
    column per pot; the dense-Z path of the kernel."""
    data = pd.read_csv("models/data/seedling.csv")
    g = pd.get_dummies(data["genotype"].astype(str)).to_numpy(float)
    X = np.column_stack([np.ones(len(data)), g])
    Z = pd.get_dummies(data["pot"].astype(str)).to_numpy(float).copy()
    Z[0, :2] = (0.5, 0.3)  # two nonzeros in a row: a dense Z block
    design = bl.design_from_matrices(data["weight"].to_numpy(), X, {"pot": Z})
    spec = bl.ModelSpec(formula=None)
    model, prior_set, form = build_with_form(spec, design, parameterization="marginal")
    km = kernel_model(model, design, prior_set, form, beta_integrated=integrates_beta(design, prior_set, form))
    assert design.blocks[0].dense is not None and km is not None
    _compare(km, model, np.random.default_rng(2))


def test_kernel_names_what_it_cannot_do(unbalanced):
    spec = bl.ModelSpec(formula="y ~ x + (x + z + f + x:z|a:b)")
    design = bl.design_from_formula(spec.formula, unbalanced)
    model, prior_set, form = build_with_form(spec, design, parameterization="marginal")
    why = unavailable(design, prior_set, form, beta_integrated=True)
    assert why == "a random block of more than 4 coefficients"
    spec = bl.ModelSpec(formula="y ~ x + (1|a)", priors=bl.spec.normalize_priors({"x": bl.StudentT(3.0, 0.0, 1.0)}))
    design = bl.design_from_formula(spec.formula, unbalanced)
    model, prior_set, form = build_with_form(spec, design)
    assert not integrates_beta(design, prior_set, form)
    assert "β is sampled" in unavailable(design, prior_set, form, beta_integrated=False)
    assert kernel_model(model, design, prior_set, form, beta_integrated=False) is None


def test_native_callbacks_equal_the_kernel(unbalanced):
    """nutpie's C callbacks (log density; expansion) give the kernel's values."""
    import ctypes

    km, _, _ = _kernel_and_graph("y ~ x + (x|a) + (1|d)", unbalanced)
    nm = nutpie_model(km)
    assert nm.compiled_logp_func.address == km.kernel.nutpie_logp
    x = np.random.default_rng(1).normal(size=km.data.n_dim)
    value, grad = km.function()(x)
    logp_cb = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_void_p)(km.kernel.nutpie_logp)
    g, out = np.zeros_like(x), np.zeros(1)
    assert logp_cb(len(x), x.ctypes.data, g.ctypes.data, out.ctypes.data, nm.user_data.ctypes.data) == 0
    assert out[0] == value and np.array_equal(g, grad)
    expand_cb = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p)(km.kernel.nutpie_expand)
    flat = np.zeros(nm.n_expanded)
    assert expand_cb(len(x), nm.n_expanded, x.ctypes.data, flat.ctypes.data, nm.user_data.ctypes.data) == 0
    traced = km.expand_function()(x)
    names, slices, shapes = nm.shape_info
    for name, sl, shape in zip(names, slices, shapes):
        np.testing.assert_array_equal(flat[sl].reshape(shape), traced[name])


def test_kernel_writes_only_its_own_buffers(unbalanced):
    """The log-density function owns every buffer the kernel writes (β's conditional, σ,
    correlations): after garbage collection, arrays allocated meanwhile stay as they were."""
    import gc

    km, _, _ = _kernel_and_graph("y ~ x + (x|a) + (1|d)", unbalanced)
    f = km.function()
    gc.collect()
    others = [np.full(n, 7.0) for n in (1, 2, 3, 4, 6, 8) for _ in range(50)]
    first = f(np.zeros(km.data.n_dim))
    for _ in range(20):
        assert f(np.zeros(km.data.n_dim))[0] == first[0]
    assert all(np.all(a == 7.0) for a in others)


def test_initial_points_are_the_graphs(unbalanced):
    """The kernel starts where the graph path starts for the same seed (PyMC's support
    points jittered by U(−1, 1)): InverseGamma's support point included."""
    from bayes_lmm.nutpie_cache import seeded_initial_point

    km, model, _ = _kernel_and_graph("y ~ x + (x|a)", unbalanced,
                                     {"random": bl.InverseGamma(0.8, 1.0), "Residual": bl.InverseGamma(3.0, 2.0)})
    graph = seeded_initial_point(model)
    for seed in (0, 5):
        start = graph(seed)
        np.testing.assert_array_equal(km.initial_point(seed), [start[n] for n in km.data.names])
    assert not np.array_equal(km.initial_point(0), km.initial_point(5))


def test_initial_points_from_many_threads(unbalanced):
    """nutpie asks for initial points from every chain's thread at once: the answers are
    those of one thread at a time (the graph's initial-point function is not thread-safe)."""
    from concurrent.futures import ThreadPoolExecutor

    km, _, _ = _kernel_and_graph("y ~ x + (x|a) + (1|d)", unbalanced)
    seeds = list(range(400))
    expected = [km.initial_point(s) for s in seeds]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(km.initial_point, seeds))
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_kernel_rejects_impossible_points(unbalanced):
    """A non-finite log density is reported to nutpie as such (code 4), not as a number."""
    km, _, _ = _kernel_and_graph("y ~ x + (1|a:b) + (1|d)", unbalanced)
    x = np.full(km.data.n_dim, 800.0)  # σ = e^800 overflows
    value, _ = km.function()(x)
    assert not np.isfinite(value)


def test_kernel_library_is_found_again(tmp_path):
    lib = kernel.load([tmp_path])
    files = list(tmp_path.glob("lmm_kernel-*.so"))
    assert lib is not None and len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    assert kernel.load([tmp_path]) is not None
    assert files[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
