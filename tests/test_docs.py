"""The documentation site: every public name documented with an example, and the site builds.

The build runs Sphinx with warnings as errors (``-W``) into a temporary directory; myst-nb
executes the notebooks there with small draws and fails the build on any cell error.
"""

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from numpydoc.docscrape import NumpyDocString

import bayes_lmm as bl

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9]*.py"))


def _takes_parameters(obj) -> bool:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return any(name not in ("self", "args", "kwargs") for name in params)


@pytest.mark.parametrize("name", bl.__all__)
def test_public_name_has_numpydoc_docstring_with_example(name):
    obj = getattr(bl, name)
    doc = NumpyDocString(inspect.getdoc(obj) or "")
    examples = "\n".join(doc["Examples"])
    assert ">>> " in examples, f"bl.{name}: no Examples section with >>> lines"
    if inspect.isfunction(obj):
        if _takes_parameters(obj):
            assert doc["Parameters"], f"bl.{name}: no Parameters section"
        assert doc["Returns"], f"bl.{name}: no Returns section"


def test_fit_public_methods_have_docstrings():
    missing = [name for name, member in vars(bl.Fit).items()
               if not name.startswith("_") and not (getattr(member, "__doc__", None)
                                                    or getattr(getattr(member, "fget", None), "__doc__", None))]
    assert not missing, f"Fit members without a docstring: {missing}"


def test_api_reference_lists_every_public_name():
    api = (ROOT / "docs" / "api.rst").read_text()
    listed = set(re.findall(r"^   (\w+)$", api, flags=re.M))
    assert set(bl.__all__) <= listed, f"missing from docs/api.rst: {set(bl.__all__) - listed}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "html"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"docs build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out


@pytest.mark.slow
def test_docs_build_documents_every_public_name(site):
    api = (site / "api.html").read_text()
    for name in bl.__all__:
        page = site / "generated" / f"bayes_lmm.{name}.html"
        assert page.exists(), f"no API page for bl.{name}"
        html = page.read_text()
        assert f'id="bayes_lmm.{name}"' in html, f"bl.{name} is not documented on its page"
        assert "Examples" in html, f"bl.{name}: no Examples on its page"
        assert f"generated/bayes_lmm.{name}.html" in api, f"api.html does not link bl.{name}"


@pytest.mark.slow
def test_docs_build_renders_every_notebook_with_figures(site):
    assert len(NOTEBOOKS) >= 5
    for stem in NOTEBOOKS:
        html = (site / "notebooks" / f"{stem}.html").read_text()
        assert "<img" in html, f"{stem}: no figure on the page"
        assert "Traceback (most recent call last)" not in html, f"{stem}: a cell errored"
        if 'class="math' in html:  # the notes' formulas render offline: MathJax from the site
            assert 'src="../_static/mathjax/tex-chtml.js"' in html, stem
    assert 'class="math' in (site / "notebooks" / "01_seedling.html").read_text()
    images = list((site / "_images").glob("*.png"))
    assert len(images) >= len(NOTEBOOKS)
