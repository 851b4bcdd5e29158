"""The package's shape: imports go downward only (no cycle, function-level imports included),
no module is over 400 lines, only the registry lists the forms, and queries leave a fit as
it was."""

import ast
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

PACKAGE = Path(__file__).resolve().parent.parent / "bayes_lmm"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports anywhere it runs (module level, functions,
    branches; not ``if TYPE_CHECKING:``). The top-level package (the facade, which imports
    everything) is not a target."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    # ``if TYPE_CHECKING:`` blocks never run: their imports name types for annotations only
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # ``from . import linalg`` names a module; ``from .graph import build_model`` a name in one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != "bayes_lmm" and t != name}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_function_level_imports_and_finds_cycles():
    graph = _graph()
    assert "bayes_lmm.results" in graph["bayes_lmm.persist"]  # import inside a function body
    assert "bayes_lmm.likelihood.linalg" in graph["bayes_lmm.likelihood.grouped"]  # from . import linalg
    assert "bayes_lmm.results" not in graph["bayes_lmm.plots"]  # type-only import
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_the_package():
    cycle = _cycle(_graph())
    assert cycle is None, " → ".join(cycle)


def test_results_is_below_plots_and_persist():
    graph = _graph()
    assert not graph["bayes_lmm.results"] & {"bayes_lmm.plots", "bayes_lmm.persist", "bayes_lmm.fit_methods"}
    below = {m for m in graph if m.startswith("bayes_lmm.likelihood")} | {
        "bayes_lmm.graph", "bayes_lmm.design", "bayes_lmm.tables", "bayes_lmm.means", "bayes_lmm.prediction",
        "bayes_lmm.checks", "bayes_lmm.diagnostics", "bayes_lmm.convergence", "bayes_lmm.completion"}
    assert not [m for m in below if "bayes_lmm.results" in graph[m]]


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_only_the_registry_lists_the_forms():
    """Form classes are named in their own module, the registry and the package docstring only."""
    names = ("GroupedForm", "NestedForm", "CrossedForm", "DenseForm")
    allowed = {"grouped.py", "nested.py", "crossed.py", "dense.py", "registry.py"}
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name not in allowed and any(n in p.read_text() for n in names)]
    assert not offenders


def test_queries_leave_the_fit_as_it_was(seedling_fit):
    before = seedling_fit.idata.posterior.copy(deep=True)
    groups = list(seedling_fit.idata.groups())
    table = seedling_fit.contrast("genotype[1] - genotype[2]")
    seedling_fit.fixed_effects(), seedling_fit.variance_components(), seedling_fit.marginal_means("genotype")
    seedling_fit.check(), seedling_fit.summary()
    xr.testing.assert_identical(seedling_fit.idata.posterior, before)
    assert list(seedling_fit.idata.groups()) == groups
    beta = seedling_fit.draws("beta")
    assert table["mean"].iloc[0] == pytest.approx(np.mean(beta[:, 1] - beta[:, 2]))
