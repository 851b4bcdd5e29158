"""Compile a PyMC model for nutpie with on-disk caching of the compiled code.

nutpie turns PyTensor's numba function into two C callbacks (log-density with gradient,
and the expansion to every traced variable). Its callbacks close over the model's data
arrays, which numba cannot cache, so every new process pays 10–20 s of LLVM compilation
for them. Here the callbacks are generated as source text that reads every data array
through the user-data pointer (nutpie's own record layout) and calls PyTensor's numba
function, and numba stores their machine code in PyTensor's numba cache directory: a new
process with a model of the same structure loads it in milliseconds.

The cache key is the generated text (array layout, sizes) plus either the model's structure
signature (:func:`bayes_lmm.graph.model_signature`, the key under which a compiled model is
already reused with new data within a process) with a hash of this package's source and the
library versions, or, without a signature, PyTensor's own key of the inner function. The
signature is preferred because PyTensor's graph rewriting is not deterministic across
processes (three different inner keys for the same sleepstudy model in nine runs), which
would mean several cold compilations before the cache settles.

``compile_nutpie`` returns None where the inner function cannot be cached; the caller then
uses ``nutpie.compile_pymc_model``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pymc as pm

#: bump when the generated source changes meaning
_VERSION = 3
#: the dtypes a data array may have, by the name the generated source uses
_DTYPES = {np.dtype(t).name: np.dtype(t).type for t in
           ("float64", "float32", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
            "uint8", "bool")}


def _layout(user_data: np.ndarray, names: list[str]) -> dict[str, tuple[int, list[int]]]:
    """Word offsets (data pointer, shape entries) of each shared array in nutpie's record."""
    shared = user_data.dtype.fields["shared"][0]
    data_t, data_off = shared.fields["data"]
    shape_t, shape_off = shared.fields["shape"]
    out = {}
    for name in names:
        sub_t, sub_off = shape_t.fields[name]
        ndim = sub_t.shape[0] if sub_t.shape else 0
        first = (shape_off + sub_off) // 8
        out[name] = ((data_off + data_t.fields[name][1]) // 8, [first + k for k in range(ndim)])
    return out


def _unpack_lines(names: list[str], layout, dtypes: dict[str, np.dtype]) -> tuple[list[str], list[str]]:
    lines, args = [], []
    for i, name in enumerate(names):
        d, shape = layout[name]
        dims = "".join(f"int(ud[{k}]), " for k in shape)
        lines.append(f"    a{i} = carray(void_ptr(ud[{d}]), ({dims}), {dtypes[name].name})")
        args.append(f"a{i}")
    return lines, args


def _prologue(signature: str, checks: list[tuple[str, int]], n_words: int, names, layout, dtypes):
    """Header shared by both callbacks: size checks, then every data array unpacked."""
    unpack, args = _unpack_lines(names, layout, dtypes)
    lines = [signature]
    for arg, value in checks:
        lines += [f"    if {arg} != {value}:", "        return -1"]
    return lines + [f"    ud = carray(user_data_, ({n_words},), uint64)", *unpack], ", ".join(["x", *args])


def _source_logp(fname: str, n_dim: int, n_words: int, names, layout, dtypes) -> str:
    head, call = _prologue(f"def {fname}(dim, x_, out_, logp_, user_data_):", [("dim", n_dim)],
                           n_words, names, layout, dtypes)
    return "\n".join([
        *head,
        "    try:",
        f"        x = carray(x_, ({n_dim},))",
        f"        out = carray(out_, ({n_dim},))",
        "        logp = carray(logp_, ())",
        f"        logp_val, grad = inner({call})",
        "        logp[()] = logp_val",
        "        out[...] = grad",
        "        if not np.all(np.isfinite(out)):",
        "            return 3",
        "        if not np.isfinite(logp_val):",
        "            return 4",
        "    except Exception:",
        "        return 1",
        "    return 0",
        "",
    ])


def _source_expand(fname: str, n_dim: int, n_expanded: int, n_words: int, names, layout, dtypes) -> str:
    head, call = _prologue(f"def {fname}(dim, expanded, x_, out_, user_data_):",
                           [("dim", n_dim), ("expanded", n_expanded)], n_words, names, layout, dtypes)
    return "\n".join([
        *head,
        "    try:",
        f"        x = carray(x_, ({n_dim},))",
        f"        out = carray(out_, ({n_expanded},))",
        f"        (values,) = inner({call})",
        "        out[...] = values",
        "    except Exception:",
        "        return -2",
        "    return 0",
        "",
    ])


@functools.cache
def _environment_key() -> str:
    """This package's source and the versions of everything that shapes the machine code."""
    from pytensor import config

    h = hashlib.sha256(f"{_VERSION}|fastmath={config.numba__fastmath}".encode())
    for dist in ("numba", "llvmlite", "pytensor", "pymc", "nutpie", "numpy"):
        h.update(f"|{dist}={importlib.metadata.version(dist)}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()


def _cfunc_key(src: str, inner, structure_key: tuple | None) -> str | None:
    """The cache key of a generated callback (module docstring); None without any key."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    if inner_key is None:
        return None
    base = f"{_environment_key()}|{structure_key!r}" if structure_key is not None else inner_key
    return hashlib.sha256(f"{_VERSION}|{base}|{src}".encode()).hexdigest()


def _cfunc(src: str, fname: str, key: str, inner, signature):
    """Compile (or load from the disk cache) ``src`` as a numba C callback.

    With ``inner=None`` only a cached callback can be loaded: compiling fails at typing.
    """
    import numba
    from numba import carray
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import compile_numba_function_src

    # a distinct name per key: numba's symbol names start from the function's name
    name = f"{fname}_{key[:16]}"
    src = src.replace(f"def {fname}(", f"def {name}(", 1)
    # __name__: numba rebuilds a cached function's environment from this module
    env = {"__name__": __name__, "carray": carray, "void_ptr": address_as_void_pointer,
           "inner": inner, "np": np, **_DTYPES}
    py_func = compile_numba_function_src(src, name, global_env=env, cache_key=f"bayes_lmm_{key}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)
        return numba.cfunc(signature, cache=True)(py_func)


def _signatures():
    import numba

    ptr = numba.types.CPointer(numba.types.double)
    return (numba.types.int64(numba.types.uint64, ptr, ptr, ptr, numba.types.voidptr),
            numba.types.int64(numba.types.uint64, numba.types.uint64, ptr, ptr, numba.types.voidptr))


def _manifest_path(structure_key: tuple) -> Path:
    from pytensor import config

    key = hashlib.sha256(f"{_environment_key()}|{structure_key!r}".encode()).hexdigest()
    return Path(config.base_compiledir) / "bayes_lmm" / f"{key}.pkl"


def _user_data(model: pm.Model, names: list[str]):
    """Read-only copies of the model's data arrays and nutpie's user-data record for them."""
    from nutpie import compile_pymc as cp

    shared_vars = {name: model[name] for name in names}
    shared_data = {}
    for name, var in shared_vars.items():
        shared_data[name] = np.array(var.get_value(), order="C", copy=True)
        shared_data[name].flags.writeable = False
    return shared_data, cp.make_user_data(shared_vars, shared_data)


def _from_manifest(model: pm.Model, path: Path, initial_point_fn):
    """The compiled model from a manifest written by an earlier process, without building
    PyTensor functions; None when anything does not match or a callback is not cached."""
    import numba
    from nutpie import compile_pymc as cp

    try:
        with open(path, "rb") as f:
            m = pickle.load(f)
        data_names = {v.name for v in model.data_vars}
        if not set(m["shared"]) <= data_names:
            return None
        shared_data, user_data = _user_data(model, m["shared"])
        if any((v.ndim, v.dtype.str) != tuple(m["shared"][k]) for k, v in shared_data.items()):
            return None
        point = initial_point_fn(0)
        names, _, shapes = m["shape_info"]
        if any(tuple(np.shape(point[n])) != tuple(s) for n, s in zip(names, shapes) if n in point):
            return None
        logp_sig, expand_sig = _signatures()
        logp_c = _cfunc(m["logp_src"], "bl_logp", m["logp_key"], None, logp_sig)
        expand_c = _cfunc(m["expand_src"], "bl_expand", m["expand_key"], None, expand_sig)
    except (OSError, pickle.UnpicklingError, KeyError, EOFError, numba.core.errors.NumbaError):
        return None
    flat_initial = cp._rv_dict_to_flat_array_wrapper(
        initial_point_fn, names=list(names[: len(model.free_RVs)]),
        shapes=[tuple(s) for s in shapes[: len(model.free_RVs)]])
    return _compiled_model(model, m["n_dim"], m["n_expanded"], m["shape_info"], logp_c, expand_c,
                           flat_initial, shared_data, user_data, None, None)


def _compiled_model(model, n_dim, n_expanded, shape_info, logp_c, expand_c, initial_point_fn,
                    shared_data, user_data, logp_fn_pt, expand_fn_pt):
    from nutpie import compile_pymc as cp

    dims, coords = cp._prepare_dims_and_coords(model, shape_info)
    return cp.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c,
        initial_point_func=initial_point_fn, shared_data=shared_data, user_data=user_data,
        n_expanded=n_expanded, shape_info=shape_info, logp_func=logp_fn_pt,
        expand_func=expand_fn_pt,
    )


def seeded_initial_point(model: pm.Model):
    """PyMC's seeded initial-point function (support points jittered by U(−1, 1) on the
    transformed scale, as nutpie asks for), built with PyTensor's Python linker and no graph
    rewrites: the same values as ``pymc.initial_point.make_initial_point_fn`` in 0.01 s
    instead of 0.2–0.5 s (its C linker imports setuptools and compiles; the rewrites alone
    take 0.15 s), which a fit that loads everything else from the disk cache would pay."""
    import pytensor
    from pymc import initial_point as ip
    from pymc.pytensorf import compile as compile_fn
    from pymc.pytensorf import find_rng_nodes, replace_rng_nodes, reseed_rngs

    names = []
    for var in model.free_RVs:
        transform = model.rvs_to_transforms[var]
        names.append(ip.get_transformed_name(var.name, transform) if transform is not None else var.name)
    values = ip.make_initial_point_expression(
        free_rvs=model.free_RVs, rvs_to_transforms=model.rvs_to_transforms,
        initval_strategies=dict(model.rvs_to_initial_values), jitter_rvs=set(model.free_RVs),
        default_strategy="support_point", return_transformed=True)
    fn = compile_fn(inputs=[], outputs=replace_rng_nodes(values),
                    mode=pytensor.compile.mode.Mode(linker="py", optimizer=None))
    rngs = find_rng_nodes(fn.maker.fgraph.outputs)

    def seeded(seed):
        reseed_rngs(rngs, seed)
        return dict(zip(names, fn()))

    return seeded


def compile_nutpie(model: pm.Model, *, structure_key: tuple | None = None, compile_note: str | None = None):
    """A ``nutpie`` compiled model of ``model`` whose C callbacks are cached on disk.

    Parameters
    ----------
    model : pm.Model
    structure_key : tuple, optional
        Everything the compiled code of ``model`` depends on apart from the values of its
        data (see :func:`bayes_lmm.graph.model_signature`); models with equal keys must
        compile to the same function. With it, a later process loads the callbacks from a
        small manifest without building PyTensor functions at all; without it PyTensor's
        key of the graph is used.
    compile_note : str, optional
        Logged (logger ``bayes_lmm``, WARNING) just before compiling, when the disk cache
        does not hold the model.

    Returns
    -------
    nutpie's CompiledPyMCModel, or None where the compiled code cannot be cached.
    """
    from nutpie import compile_pymc as cp

    pymc_initial = cp._wrap_with_lock(seeded_initial_point(model))
    manifest = _manifest_path(structure_key) if structure_key is not None else None
    if manifest is not None and manifest.exists():
        compiled = _from_manifest(model, manifest, pymc_initial)
        if compiled is not None:
            return compiled
    if compile_note:
        logging.getLogger("bayes_lmm").warning(compile_note)
    n_dim, n_expanded, logp_fn_pt, expand_fn_pt, initial_point_fn, shape_info = cp._make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=pymc_initial)
    names = list(dict.fromkeys(v.name for v in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]))
    shared_data, user_data = _user_data(model, names)
    n_words = user_data.dtype.itemsize // 8
    layout = _layout(user_data, names)
    dtypes = {k: v.dtype for k, v in shared_data.items()}
    if any(dt.name not in _DTYPES for dt in dtypes.values()):
        return None
    logp_names = [v.name for v in logp_fn_pt.get_shared()]
    expand_names = [v.name for v in expand_fn_pt.get_shared()]
    logp_src = _source_logp("bl_logp", n_dim, n_words, logp_names, layout, dtypes)
    expand_src = _source_expand("bl_expand", n_dim, n_expanded, n_words, expand_names, layout, dtypes)
    logp_key = _cfunc_key(logp_src, logp_fn_pt.vm.jit_fn, structure_key)
    expand_key = _cfunc_key(expand_src, expand_fn_pt.vm.jit_fn, structure_key)
    if logp_key is None or expand_key is None:
        return None
    logp_sig, expand_sig = _signatures()
    logp_c = _cfunc(logp_src, "bl_logp", logp_key, logp_fn_pt.vm.jit_fn, logp_sig)
    expand_c = _cfunc(expand_src, "bl_expand", expand_key, expand_fn_pt.vm.jit_fn, expand_sig)
    if manifest is not None:
        _write_manifest(manifest, {
            "n_dim": n_dim, "n_expanded": n_expanded,
            "shape_info": ([str(n) for n in shape_info[0]], list(shape_info[1]),
                           [tuple(int(d) for d in s) for s in shape_info[2]]),
            "shared": {k: (v.ndim, v.dtype.str) for k, v in shared_data.items()},
            "logp_src": logp_src, "logp_key": logp_key,
            "expand_src": expand_src, "expand_key": expand_key,
        })
    return _compiled_model(model, n_dim, n_expanded, shape_info, logp_c, expand_c, initial_point_fn,
                           shared_data, user_data, logp_fn_pt, expand_fn_pt)


def _write_manifest(path: Path, content: dict) -> None:
    """Write atomically: processes of a Dask cluster may write the same manifest at once."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(content, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache directory only costs the next process a compilation


def clear_disk_cache() -> int:
    """Delete this package's manifests and compiled callbacks from PyTensor's compile
    directory (PyTensor's own cached code stays); returns the number of files removed."""
    from pytensor import config

    base = Path(config.base_compiledir)
    files = [*(base / "bayes_lmm").glob("*"), *(base / "numba").glob("*-bayes_lmm_*")]
    for f in files:
        f.unlink(missing_ok=True)
    return len(files)
