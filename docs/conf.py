"""Sphinx configuration of the bayes_lmm documentation.

Build: ``python3 -m sphinx -W --keep-going -b html docs docs/_build/html`` from the repository root.
The notebooks in ``notebooks/`` (jupytext percent files) are copied into ``docs/notebooks/``
(generated, ignored by git) with small draw counts in their ``parameters`` cell, then executed
by myst-nb, so every figure on the site comes from the code as it is.
"""

import sys
from pathlib import Path

import jupytext
import nbformat

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout, not another installed copy

import bayes_lmm  # noqa: E402

# -- notebooks: the repository's notebooks with small draws ---------------------------------
SMALL = "DRAWS, TUNE, CHAINS = 150, 150, 2"
NOTEBOOK_SRC = ROOT / "notebooks"
NOTEBOOK_OUT = DOCS / "notebooks"


def _write_small_notebooks() -> None:
    """Write each notebook as .ipynb with its parameters cell set to SMALL.

    A hidden first cell changes into ``notebooks/`` so the notebooks' relative data paths
    resolve as when they are run in place.
    """
    NOTEBOOK_OUT.mkdir(exist_ok=True)
    for path in sorted(NOTEBOOK_SRC.glob("[0-9]*.py")):
        nb = jupytext.read(path)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(params) != 1:
            raise RuntimeError(f"{path.name}: expected one cell tagged 'parameters'")
        params[0].source = SMALL
        chdir = nbformat.v4.new_code_cell(
            f"import os\nos.chdir({str(NOTEBOOK_SRC)!r})", metadata={"tags": ["remove-cell"]})
        nb.cells.insert(0, chdir)
        target = NOTEBOOK_OUT / (path.stem + ".ipynb")
        text = nbformat.writes(nb)
        # rewrite only on change, so Sphinx and the execution cache see unchanged notebooks
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


_write_small_notebooks()

# -- project ----------------------------------------------------------------------------------
project = "bayes_lmm"
author = "bayes_lmm developers"
copyright = "2026, bayes_lmm developers"
release = bayes_lmm.__version__ if hasattr(bayes_lmm, "__version__") else "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # MathJax served from the site itself: the formulas render without a network
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
templates_path = ["_templates"]

# -- API reference ----------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()

intersphinx_mapping = {}

# -- notebooks ------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath"]
nb_execution_mode = "cache"
nb_execution_timeout = 1800
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- HTML -------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "bayes_lmm"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path = []
