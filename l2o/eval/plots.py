"""Convergence plots: log-scale relative suboptimality vs iteration, median and IQR band.

Every plot of a report draws a method in the same style (:func:`method_styles` over all
the report's method names): one colour, and a line style plus sparse markers, so that a
method drawn exactly under another stays visible. The band is named in the legend, which
sits outside the axes, and files are named after their scenario (:func:`plot_filename`).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

#: matplotlib's tab10 colours, then line styles and markers cycled at different periods.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "x", "+", "*", "<", ">", "P")
BAND = "interquartile range (25-75%)"


def method_styles(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """A distinct ``{color, linestyle, marker}`` per name, in order (first seen first)."""
    styles = zip(itertools.cycle(COLORS), itertools.cycle(LINESTYLES), itertools.cycle(MARKERS))
    return {name: {"color": c, "linestyle": ls, "marker": m}
            for name, (c, ls, m) in zip(dict.fromkeys(names), styles)}


def plot_filename(scenario: str, prefix: str = "convergence") -> str:
    """``prefix-<scenario as a slug>.png``, e.g. ``convergence-ood-a-scaled-x3.png``; signs
    of numbers are spelled (``+10`` -> ``plus10``) so that ±shifts get distinct files."""
    spelled = re.sub(r"-(?=\d)", "minus", re.sub(r"\+(?=\d)", "plus", scenario.lower()))
    slug = re.sub(r"[^a-z0-9]+", "-", spelled).strip("-") or "scenario"
    return f"{prefix}-{slug}.png"


def plot_convergence(curves: dict[str, Tensor], path: str | Path, title: str = "",
                     styles: dict[str, dict[str, str]] | None = None) -> Path:
    """Write the PNG of :func:`draw_convergence` to ``path``."""
    import matplotlib.pyplot as plt

    figure = draw_convergence(curves, title, styles)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def draw_convergence(curves: dict[str, Tensor], title: str = "",
                     styles: dict[str, dict[str, str]] | None = None):
    """A matplotlib figure of ``curves[name]: (T + 1, B)`` relative suboptimality per method.

    Each method is drawn as its median over the B instances with the 25–75% band, in
    ``styles[name]`` (default: :func:`method_styles` of ``curves``; pass one mapping for
    every plot of a report so a method keeps its style). Values are floored at 1e-16 so
    that exact optima stay on a log axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    styles = {**method_styles(curves), **(styles or {})}
    figure, axes = plt.subplots(figsize=(8.4, 4.2))
    for name, relative in curves.items():
        values = relative.detach().to(torch.float64).cpu().clamp_min(1e-16)
        values = torch.nan_to_num(values, nan=float("inf")).clamp_max(1e300)
        low, mid, high = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=1)
        steps = range(values.shape[0])
        style = styles[name]
        axes.plot(steps, mid.numpy(), label=name, color=style["color"], linestyle=style["linestyle"],
                  marker=style["marker"], markevery=max(1, len(steps) // 8), markersize=4, linewidth=1.4)
        axes.fill_between(steps, low.numpy(), high.numpy(), color=style["color"], alpha=0.15, linewidth=0)
    axes.set_yscale("log")
    axes.set_xlabel("iteration k")
    axes.set_ylabel("(F(x_k) - F*) / |F*|  (median)")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    handles.append(Patch(facecolor="0.5", alpha=0.3, label=BAND))
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                frameon=False)
    figure.tight_layout()
    return figure
