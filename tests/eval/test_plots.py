"""Convergence plots: one style per method across a report, a named band, a legend off the
curves, files named by scenario (issue 14)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from l2o.eval.plots import BAND, draw_convergence, method_styles, plot_filename  # noqa: E402


def _curves(names):
    generator = torch.Generator().manual_seed(0)
    return {name: torch.rand(21, 5, generator=generator, dtype=torch.float64) for name in names}


def test_a_method_keeps_its_style_whatever_else_is_plotted():
    styles = method_styles(["GoMathL2O", "FISTA", "Adam"])
    figure_a = draw_convergence(_curves(["GoMathL2O", "FISTA", "Adam"]), styles=styles)
    figure_b = draw_convergence(_curves(["Adam", "FISTA"]), styles=styles)
    def colour(figure, name):
        return next(line.get_color() for line in figure.axes[0].get_lines() if line.get_label() == name)
    for name in ("FISTA", "Adam"):
        assert colour(figure_a, name) == colour(figure_b, name) == styles[name]["color"]


def test_styles_differ_so_identical_curves_stay_visible():
    styles = method_styles([f"m{i}" for i in range(12)])
    keys = {(s["color"], s["linestyle"], s["marker"]) for s in styles.values()}
    assert len(keys) == 12
    assert len({(s["linestyle"], s["marker"]) for s in styles.values()}) > 1


def test_the_band_is_named_and_the_legend_sits_outside_the_axes():
    figure = draw_convergence(_curves(["a", "b"]), title="t")
    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["a", "b", BAND]
    figure.canvas.draw()
    legend_box = legend.get_window_extent()
    axes_box = figure.axes[0].get_window_extent()
    assert legend_box.x0 >= axes_box.x1  # right of the plotting area: it covers no curve


def test_files_are_named_after_their_scenario():
    assert plot_filename("OOD: A scaled x3") == "convergence-ood-a-scaled-x3.png"
    assert plot_filename("paper OOD: x0 shifted +10", prefix="gomath-lasso") == \
        "gomath-lasso-paper-ood-x0-shifted-plus10.png"
    assert plot_filename("x0 shifted -10") != plot_filename("x0 shifted +10")
