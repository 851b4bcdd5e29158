"""One compiled log-density-and-gradient kernel for every exact form (``kernel.c``).

Every exact form is the same computation: eliminate one random block E whose Z'Z is
block-diagonal by level (per-level k×k systems, levels with equal Z_l'Z_l summed
beforehand), then one Cholesky of the rest (the other blocks' coefficients and β). In
whitened coordinates, u_b = Λ_b v_b with v ~ N(0, I) and β − β₀ = s ∘ w with w ~ N(m, I),
the columns are W̃ = [Z_E Λ_E, Z_r Λ_r, X diag(s)] and

    log p(y | θ) = −½ [n log 2πσ² + log|P| + y'y/σ² + m'm − c'P⁻¹c],

P = I + W̃'W̃/σ², c = W̃'y/σ² + (0, m), the same density as every form's PyMC graph
(:meth:`~bayes_lmm.likelihood.base.ExactForm.loglik_beta_integrated`). The gradient comes
from Fisher's identity, ∂ℓ/∂θ = E[∂ log p(y, u | θ)/∂θ | y]: for a block with
Λ = diag(σ_b) L_R and J = Λ⁻¹∂Λ, ∂ℓ/∂θ = tr(J S_b) with S_b = Σ_levels (E[vv'] − I); for σ_e,
∂ℓ/∂log σ_e = −n + E‖y − Xβ − Zu‖²/σ². Both need only the posterior mean and the diagonal
blocks of P⁻¹, formed as differences from I so that nothing cancels as σ_b → 0.

The structure (levels, blocks, their sizes, the priors' families) is data, so one compiled
file serves every formula. It is compiled with the system's C compiler once per machine
(about 0.5 s) and kept in a cache directory; where that fails (no compiler, no writable
directory) :func:`load` returns None and the fit samples the PyMC graph instead.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

#: prior family codes of a standard deviation (their order in kernel.c)
SD_FAMILIES = ("HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "InverseGamma")
#: the interface version kernel.c reports (``bl_kernel_abi``)
ABI = 5
_SOURCE = Path(__file__).with_name("kernel.c")
_BASE_FLAGS = ("-O3", "-shared", "-fPIC", "-std=c99")


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compile_flags() -> tuple[str, ...]:
    """The compiler flags: -O3, plus AVX2 where this CPU has it (the kernel's k×k and m×m
    loops vectorise: kb07's 4×4 blocks, 1.86 → 1.10 ms per evaluation). The flags are part of
    the file's name, so a machine without AVX2 never loads a file built with it."""
    if os.uname().machine in ("x86_64", "AMD64") and {"avx2", "fma"} <= _cpu_flags():
        return _BASE_FLAGS + ("-mavx2", "-mfma")
    return _BASE_FLAGS


def cache_dirs() -> list[Path]:
    """Where the compiled kernel may be kept, in order: ``$BAYES_LMM_CACHE_DIR``,
    ``$XDG_CACHE_HOME/bayes_lmm``, ``~/.cache/bayes_lmm`` (when a home directory is known)
    and a per-user directory under the system's temporary directory."""
    out = []
    if os.environ.get("BAYES_LMM_CACHE_DIR"):
        out.append(Path(os.environ["BAYES_LMM_CACHE_DIR"]))
    if os.environ.get("XDG_CACHE_HOME"):
        out.append(Path(os.environ["XDG_CACHE_HOME"]) / "bayes_lmm")
    home = os.path.expanduser("~")
    if home and home != "~":
        out.append(Path(home) / ".cache" / "bayes_lmm")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    out.append(Path(tempfile.gettempdir()) / f"bayes_lmm-{uid}")
    return out


def _compiler() -> list[str] | None:
    """The C compiler command (``$CC`` split like a shell would, e.g. ``ccache gcc``)."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return [cc] if cc else None


def library_name(source: bytes, cc: list[str]) -> str:
    """The compiled file's name: a hash of the source, compiler, flags and platform, so a
    file of another library version or machine is never taken for this one."""
    key = hashlib.sha256(source + " ".join(cc).encode() + " ".join(compile_flags()).encode() + sys.platform.encode()
                         + os.uname().machine.encode()).hexdigest()[:20]
    return f"lmm_kernel-{key}.so"


def _private(path: Path) -> bool:
    """Whether ``path`` belongs to this user and nobody else may write it: a library another
    user could have planted (in a shared temporary directory) is never loaded."""
    try:
        st = path.stat()
    except OSError:
        return False
    owner_ok = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return owner_ok and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _directory(path: Path) -> bool:
    """Create ``path`` (mode 0700) if needed; whether it is a private, writable directory."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return False
    return path.is_dir() and _private(path) and os.access(path, os.W_OK | os.X_OK)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _open(path: Path, *, digest: str | None = None):
    """The loaded library, or None if the file is missing, not private, unreadable, corrupt or
    of another interface version. The file must match the SHA-256 recorded beside it when it
    was built (or ``digest``): a truncated shared library can crash the process that loads
    it, so nothing unchecked is loaded."""
    if not _private(path):
        return None
    try:
        expected = digest or _checksum_path(path).read_text().strip()
        if _digest(path) != expected:
            return None
        lib = ctypes.CDLL(str(path))
        if lib.bl_kernel_abi() != ABI:
            return None
    except (OSError, AttributeError):
        return None
    return lib


def _build(cc: list[str], directory: Path, name: str):
    """Compile into ``directory`` (a private temporary file renamed into place, so two
    processes writing the same entry never see each other's half-written file)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        os.close(fd)
    except OSError:
        return None
    try:
        done = subprocess.run([*cc, *compile_flags(), "-o", tmp, str(_SOURCE), "-lm"], capture_output=True, timeout=120)
        if done.returncode != 0:
            return None
        os.chmod(tmp, 0o700)
        digest = _digest(Path(tmp))
        lib = _open(Path(tmp), digest=digest)
        if lib is None:
            return None
        os.replace(tmp, directory / name)
        fd, tmp_sum = tempfile.mkstemp(prefix=f".{name}.", suffix=".sha256.tmp", dir=directory)
        with os.fdopen(fd, "w") as f:
            f.write(digest)
        os.replace(tmp_sum, _checksum_path(directory / name))
        return lib
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: the kernel of the default directories, once per process (None: it could not be had)
_LOADED: dict[str, object] = {}


def load(directories: list[Path] | None = None):
    """The kernel as a :class:`Kernel`, compiled on first use and cached on disk; None
    where it cannot be had (then the caller samples the PyMC graph).

    The first directory that can be made private and writable is used: its file is loaded,
    or built there if missing or unloadable (truncated, corrupt, another interface, not
    private); a read-only or missing directory is passed over for the next one. With the
    default directories the outcome is remembered for the process.
    """
    if directories is None and "default" in _LOADED:
        return _LOADED["default"]
    result = _load(directories if directories is not None else cache_dirs())
    if directories is None:
        _LOADED["default"] = result
    return result


def _load(dirs: list[Path]):
    cc = _compiler()
    try:
        source = _SOURCE.read_bytes()
    except OSError:
        return None
    if cc is None:
        return None
    name = library_name(source, cc)
    for d in dirs:
        if not _directory(d):
            continue
        lib = _open(d / name) if (d / name).exists() else None
        if lib is None:
            lib = _build(cc, d, name)
        if lib is not None:
            return Kernel(lib)
    return None


class Kernel:
    """The loaded ``bl_lmm_evaluate`` (log-density, gradient and β's conditional at x; its
    callers hold the pointers of every buffer, :class:`bayes_lmm.kernel_sampling.KernelModel`)
    and the addresses of nutpie's callbacks."""

    def __init__(self, lib):
        self.lib = lib
        fn = lib.bl_lmm_evaluate
        fn.argtypes = [ctypes.c_void_p] * 8
        fn.restype = ctypes.c_double
        #: the C function: (x, grad, β mean, β chol, σ, correlations, ints, floats) → log p
        self.raw = fn
        #: addresses of nutpie's callbacks (log density with gradient; expansion), which read
        #: user data of two addresses: the ints and the floats
        self.nutpie_logp = ctypes.cast(lib.bl_nutpie_logp, ctypes.c_void_p).value
        self.nutpie_expand = ctypes.cast(lib.bl_nutpie_expand, ctypes.c_void_p).value
        schur = lib.bl_gibbs_schur
        schur.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 5
        schur.restype = None
        #: the blocked Gibbs sampler's S = A + diag(add) − B' diag(w) B (lower triangle; see
        #: :mod:`bayes_lmm.likelihood.gibbs_system`): (r, A, add, m, indptr, indices, data, w, S)
        self.gibbs_schur = schur
