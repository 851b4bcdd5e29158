"""How a fit shows itself: the text summary, the HTML report a notebook draws, the short repr.

A notebook shows an object through its ``_repr_html_`` (rich) or ``_repr_pretty_``/``__repr__``
(text). :class:`Summary` is the text report as a ``str`` that a notebook shows as text, not
as a quoted string; :func:`fit_html` is the report of a fit as HTML tables. Nothing here
computes a posterior quantity: the numbers come from the :class:`~bayes_lmm.Fit` methods.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .results import Fit

#: columns of the variance-component table in both displays
VARIANCE_COLUMNS = ["sd_median", "sd_lower", "sd_upper", "variance_median", "fraction_median"]

_STYLE = (
    "<style>"
    ".bayes-lmm-fit table{border-collapse:collapse;margin:0.2em 0 0.8em 0;font-size:0.9em}"
    ".bayes-lmm-fit th,.bayes-lmm-fit td{padding:0.15em 0.6em;text-align:right;"
    "border-bottom:1px solid #ddd}"
    ".bayes-lmm-fit th{background:#f4f4f4}"
    ".bayes-lmm-fit h4{margin:0.6em 0 0.2em 0}"
    ".bayes-lmm-fit p{margin:0.2em 0}"
    ".bayes-lmm-fit .warn{color:#9c2a00}"
    ".bayes-lmm-fit .ok{color:#1d6b1d}"
    "</style>"
)


class Summary(str):
    """The plain-text report of a fit.

    A ``str`` (so ``print(summary)``, ``"1|pot" in summary`` and string methods work as on
    any string) that a notebook or an interactive prompt shows as its text, line breaks
    and all, rather than as a quoted one-line string.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(str(self))}</pre>"


def _table_html(table: pd.DataFrame) -> str:
    """A DataFrame as an HTML table with 4 significant decimals and booleans as ✓/✗."""
    shown = table.copy()
    shown.index.name = None  # the row labels speak for themselves; no extra header row
    for col in shown.columns:
        if pd.api.types.is_bool_dtype(shown[col]):
            shown[col] = np.where(shown[col], "✓", "✗")
    return shown.to_html(float_format=lambda v: f"{v:.4g}", border=0, escape=True)


def _split_summary(text: str) -> tuple[list[str], list[str]]:
    """Header lines (up to the first blank line) and diagnostics lines (from ``Diagnostics:``)
    of the text summary: the HTML report reuses them so that both displays say the same."""
    lines = text.splitlines()
    blank = lines.index("") if "" in lines else len(lines)
    diag = next((i for i, line in enumerate(lines) if line.startswith("Diagnostics:")), len(lines))
    return lines[:blank], lines[diag:]


def fit_html(fit: Fit, prob: float = 0.95) -> str:
    """The report of a fit as HTML: the model, its likelihood form and sampler, the tables of
    fixed effects (β), variance components (σ_j, σ_e) and random-effect correlations, and the
    convergence diagnostics with any warnings."""
    header, diagnostics = _split_summary(fit.summary(prob))
    title, *details = header or ["Bayesian linear mixed model"]
    parts = [_STYLE, '<div class="bayes-lmm-fit">',
             f"<p><b>{html.escape(title)}</b><br>"
             + "<br>".join(html.escape(line.strip()) for line in details) + "</p>",
             f"<h4>Fixed effects β ({prob:.0%} intervals)</h4>", _table_html(fit.fixed_effects(prob)),
             "<h4>Variance components</h4>",
             _table_html(fit.variance_components(prob)[VARIANCE_COLUMNS])]
    if "correlation" in fit.idata.posterior:
        parts += ["<h4>Random-effect correlations</h4>", _table_html(fit.random_effect_correlations(prob))]
    parts.append("<h4>Diagnostics</h4>")
    for line in diagnostics:
        text = line.strip()
        if text.startswith("Diagnostics:"):
            text = text[len("Diagnostics:"):].strip()
        css = "warn" if text.startswith(("WARNING", "NOTE")) else "ok"
        parts.append(f'<p class="{css}">{html.escape(text)}</p>')
    if len(diagnostics) <= 1 and not fit.diagnostics().problems():
        parts.append('<p class="ok">no convergence problems</p>')
    parts.append("</div>")
    return "\n".join(parts)


def fit_repr(fit: Fit) -> str:
    """One line: the model, its size and components, and how it was sampled."""
    design = fit.design
    model = repr(design.formula) if design.formula else "explicit X and Z"
    post = fit.idata.posterior
    return (f"<bayes_lmm.Fit {model} n={design.n} p={design.p} components={fit.component_names} "
            f"sampler={fit.sampler} parameterization={fit.parameterization} "
            f"draws={post.sizes['chain']}×{post.sizes['draw']}; fit.summary() for the tables>")
