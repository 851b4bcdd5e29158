"""How a fit looks in a notebook and in its figures (issue 18, items 10 and 11)."""

import io
import itertools

import arviz as az
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bayes_lmm.display import Summary  # noqa: E402


def test_summary_is_text_that_a_notebook_shows_as_text(seedling_fit):
    from IPython.lib.pretty import pretty

    text = seedling_fit.summary()
    assert isinstance(text, str) and isinstance(text, Summary)
    assert "1|pot" in text and text.startswith("Bayesian linear mixed model")
    # the notebook and the prompt show the lines themselves, not a quoted '...\n...' string
    assert repr(text) == str(text) and pretty(text) == str(text)
    assert text._repr_html_().startswith("<pre>") and "weight ~ genotype + (1|pot)" in text._repr_html_()


def test_fit_displays_its_tables_as_html(sleep_fit):
    page = sleep_fit._repr_html_()
    assert page.count("<table") == 3  # fixed effects, variance components, correlations
    for part in ("Fixed effects", "Days", "Variance components", "1|Subject", "Residual",
                 "Random-effect correlations", "(1,Days)|Subject", "sampler nutpie",
                 "parameterization marginal", "divergences"):
        assert part in page, part
    short = repr(sleep_fit)
    assert "\n" not in short and len(short) < 300
    assert "Reaction ~ Days + (Days|Subject)" in short and "sampler=nutpie" in short


def test_html_without_correlations_has_two_tables(dyestuff_fit):
    page = dyestuff_fit._repr_html_()
    assert page.count("<table") == 2 and "correlations" not in page


def test_text_summary_lists_random_effect_correlations(sleep_fit):
    text = sleep_fit.summary()
    assert "Random-effect correlations" in text and "(1,Days)|Subject" in text


def test_posterior_has_no_internal_unconstrained_variables(dyestuff_fit, sleep_fit):
    for fit in (dyestuff_fit, sleep_fit):
        names = [str(v) for v in fit.idata.posterior.data_vars]
        assert not [n for n in names if n.endswith("__")], names
        shown = az.summary(fit.idata, kind="stats")
        assert not [i for i in shown.index if "_log__" in i or "logodds__" in i]


def _tick_labels(ax):
    return [t.get_text() for t in ax.get_yticklabels()]


def test_forest_puts_the_intercept_on_its_own_axis_and_no_earlier_contrast(seedling_fit):
    seedling_fit.contrast({"leaked": "genotype[1] - genotype[2]"}, store=True)
    fig = seedling_fit.plot_forest()
    labels = [_tick_labels(ax) for ax in fig.axes]
    assert labels == [["Intercept"], ["genotype[1]", "genotype[2]"]]
    # contrasts appear only when asked for, σ too
    fig = seedling_fit.plot_forest(contrasts=True, sigma=True, intercept=False)
    labels = [_tick_labels(ax) for ax in fig.axes]
    assert labels[0] == ["genotype[1]", "genotype[2]"] and labels[1] == ["1|pot", "Residual"]
    assert "leaked" in labels[2]


def test_trace_plot_separates_the_intercept_and_names_every_component(sleep_fit):
    fig = sleep_fit.plot_diagnostics("trace")
    left = fig.axes[0::2]
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in left]
    assert legends == [["Intercept"], ["Days"], ["1|Subject", "Days|Subject", "Residual"],
                       ["(1,Days)|Subject"]]
    # two chains: two lines per parameter in every trace panel
    assert [len(ax.get_lines()) for ax in fig.axes[1::2]] == [2, 2, 6, 2]


def test_every_variance_component_panel_has_a_legend(seedling_fit):
    fig = seedling_fit.plot_variance_components(random_seed=1)
    assert all(ax.get_legend() is not None for ax in fig.axes)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("name, kwargs", [
    ("plot_forest", {"sigma": True}), ("plot_diagnostics", {"kind": "trace"}),
    ("plot_variance_components", {"random_seed": 1}),
])
def test_titles_do_not_overlap_other_axes_or_titles(sleep_fit, name, kwargs):
    fig = getattr(sleep_fit, name)(**kwargs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [(i, t.get_window_extent(renderer)) for i, ax in enumerate(fig.axes)
              for t in (ax.title, ax._left_title) if t.get_text()]
    assert titles
    for (i, a), (j, b) in itertools.combinations(titles, 2):
        assert not _overlaps(a, b), (i, j)
    for i, box in titles:
        for j, ax in enumerate(fig.axes):
            if j != i:
                assert not _overlaps(box, ax.get_window_extent(renderer)), (i, j)
            tick_boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
            assert not any(_overlaps(box, t) for t in tick_boxes), (i, j)


PLOTS = [("plot_ppc", {"random_seed": 1}), ("plot_variance_components", {"random_seed": 1}),
         ("plot_forest", {}), ("plot_shrinkage", {}), ("plot_var_y", {"rows": [0, 1, 2]}),
         ("plot_diagnostics", {"kind": "trace"}), ("plot_diagnostics", {"kind": "rank"}),
         ("plot_check", {"random_seed": 1})]


@pytest.mark.parametrize("name, kwargs", PLOTS, ids=[f"{n}-{list(k.values())}" for n, k in PLOTS])
def test_plots_leave_no_open_pyplot_figure(dyestuff_fit, name, kwargs):
    """An open pyplot figure is drawn again by the inline backend when the cell ends."""
    plt.close("all")
    fig = getattr(dyestuff_fit, name)(**kwargs)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert plt.get_fignums() == []
    png = io.BytesIO()
    fig.savefig(png, format="png")  # a closed figure still renders and saves
    assert png.tell() > 5000


@pytest.mark.slow
def test_a_notebook_shows_the_fit_as_html_and_each_figure_once(dyestuff_fit, tmp_path):
    import nbclient
    import nbformat

    path = dyestuff_fit.save(tmp_path / "dyestuff.nc")
    cells = ["%matplotlib inline\nimport bayes_lmm as bl\n"
             f"fit = bl.load({str(path)!r})",
             "fit", "fit.summary()", "fit.plot_forest()", "fit.plot_diagnostics('trace')",
             "fit.plot_variance_components(random_seed=1)"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    outputs = [c["outputs"] for c in nb.cells]
    assert not any(o["output_type"] == "error" for out in outputs for o in out)
    for out in outputs[3:]:  # the returned Figure, and no second copy left open in pyplot
        assert sum("image/png" in o.get("data", {}) for o in out) == 1
    shown = outputs[1][0]["data"]
    assert "<table" in shown["text/html"] and "Variance components" in shown["text/html"]
    assert "\n" not in shown["text/plain"]  # the short repr
    text = outputs[2][0]["data"]["text/plain"]
    assert text.startswith("Bayesian linear mixed model") and "\n" in text  # not a quoted string
