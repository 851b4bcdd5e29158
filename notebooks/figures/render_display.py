"""Render the notebook display of a fit to ``fit_display.png`` (the README's screenshot).

Executes ``notebooks/01_seedling.py`` in a Jupyter kernel (nbclient, its own parameters),
takes the HTML that the cell holding only ``fit`` displayed, and photographs that HTML with
headless Chromium (``apt-get install chromium``). Run from the repository root:
``python notebooks/figures/render_display.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import jupytext
import nbclient
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE.parent / "01_seedling.py"
OUT = HERE / "fit_display.png"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font-family: "DejaVu Sans", sans-serif; font-size: 13px; margin: 12px; background: white; }}
.cell {{ border-left: 3px solid #42a5f5; padding: 2px 10px; }}
.prompt {{ font-family: monospace; color: #303f9f; margin-bottom: 6px; }}
</style></head><body><div class="prompt">In [ ]: fit</div><div class="cell">{html}</div></body></html>"""


def displayed_html() -> str:
    nb = jupytext.read(NOTEBOOK)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.strip() == "fit")
    return next(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))


def screenshot(html: str, out: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("needs headless Chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp:
        page, raw = Path(tmp) / "fit.html", Path(tmp) / "raw.png"
        page.write_text(PAGE.format(html=html), encoding="utf-8")
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={raw}", "--window-size=1000,1400", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
        image = Image.open(raw).convert("RGB")
    # crop the white margin below and right of the report, then store as a 64-colour palette
    ink = np.argwhere(np.asarray(image).min(axis=2) < 250)
    bottom, right = ink.max(axis=0) + 12
    image = image.crop((0, 0, min(int(right), image.width), min(int(bottom), image.height)))
    image.quantize(colors=64).save(out, optimize=True)


if __name__ == "__main__":
    screenshot(displayed_html(), OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)")
