"""LAPACK's Cholesky and BLAS's triangular solve on row-major arrays, called without holding
Python's global interpreter lock.

The blocked Gibbs sampler (:mod:`bayes_lmm.gibbs_sampling`) runs its chains in threads; its
cost is one Cholesky of the dense remainder per sweep. SciPy's Python wrappers
(``scipy.linalg.lapack.dpotrf``) keep the lock while LAPACK runs, so two chains took as long
as one after the other (2 × 30 factorisations of 1,143 × 1,143: 0.88 s in sequence, 0.83 s in
two threads). The same routines are reached here through SciPy's public Cython interface
(``scipy.linalg.cython_lapack`` / ``cython_blas``, whose function pointers every Cython user
imports) and called with ctypes, which releases the lock. Where that interface cannot be had,
the Python wrappers are used: the same results, chains in sequence.

A row-major r×r array is read by Fortran as its transpose: its lower triangle is Fortran's
upper triangle, so ``potrf`` factors S = U'U in Fortran terms, which is S = LL' with the
row-major lower triangle L = U'.
"""

from __future__ import annotations

import ctypes

import numpy as np
import scipy.linalg as sl

_INT = ctypes.c_int
_POTRF = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.POINTER(_INT), ctypes.c_void_p, ctypes.POINTER(_INT),
                          ctypes.POINTER(_INT))
_TRSV = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(_INT),
                         ctypes.c_void_p, ctypes.POINTER(_INT), ctypes.c_void_p, ctypes.POINTER(_INT))


def _address(module, name: str) -> int:
    """The address behind a Cython module's exported function ``name`` (its PyCapsule)."""
    capsule = module.__pyx_capi__[name]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return get_pointer(capsule, get_name(capsule))


def _routines():
    """(dpotrf, dtrsv) as ctypes functions, or None where SciPy's Cython interface is missing."""
    try:
        from scipy.linalg import cython_blas, cython_lapack

        return _POTRF(_address(cython_lapack, "dpotrf")), _TRSV(_address(cython_blas, "dtrsv"))
    except (ImportError, AttributeError, KeyError, TypeError, ValueError):
        return None


#: loaded once per process, on first use (not at import)
_CACHE: dict[str, object] = {}


def routines():
    if "routines" not in _CACHE:
        _CACHE["routines"] = _routines()
    return _CACHE["routines"]


def releases_lock() -> bool:
    """Whether the factorisations run without the interpreter lock (chains in parallel threads)."""
    return routines() is not None


def cholesky_inplace(S: np.ndarray) -> bool:
    """Overwrite the lower triangle of the row-major, C-contiguous S (r×r, only its lower
    triangle read) with L, S = LL'. False where S is not positive definite."""
    r = S.shape[0]
    fns = routines()
    if fns is None:
        _, info = sl.lapack.dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
        return info == 0
    info = _INT(0)
    n = _INT(r)
    fns[0](b"U", ctypes.byref(n), S.ctypes.data, ctypes.byref(n), ctypes.byref(info))
    return info.value == 0


def solve_lower(L: np.ndarray, x: np.ndarray, *, transposed: bool = False) -> None:
    """Overwrite x with L⁻¹x (or L⁻ᵀx with ``transposed``), L the row-major lower factor of
    :func:`cholesky_inplace`."""
    r = L.shape[0]
    fns = routines()
    if fns is None:
        x[:] = sl.solve_triangular(L, x, lower=True, trans=1 if transposed else 0, check_finite=False)
        return
    n, one = _INT(r), _INT(1)
    # Fortran sees U = L': L x = b is U'x = b ("T"), L'x = b is Ux = b ("N")
    fns[1](b"U", b"N" if transposed else b"T", b"N", ctypes.byref(n), L.ctypes.data, ctypes.byref(n),
           x.ctypes.data, ctypes.byref(one))
