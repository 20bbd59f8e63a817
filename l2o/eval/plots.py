"""Convergence plots: log-scale relative suboptimality vs iteration, median and IQR band."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor


def plot_convergence(curves: dict[str, Tensor], path: str | Path, title: str = "") -> Path:
    """Write a PNG of ``curves[name]: (T + 1, B)`` relative suboptimality per method.

    Each method is drawn as its median over the B instances with the 25–75% band.
    Values are floored at 1e-16 so that exact optima stay on a log axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for name, relative in curves.items():
        values = relative.detach().to(torch.float64).cpu().clamp_min(1e-16)
        values = torch.nan_to_num(values, nan=float("inf")).clamp_max(1e300)
        low, mid, high = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64), dim=1)
        steps = range(values.shape[0])
        (line,) = axes.plot(steps, mid.numpy(), label=name)
        axes.fill_between(steps, low.numpy(), high.numpy(), color=line.get_color(), alpha=0.2)
    axes.set_yscale("log")
    axes.set_xlabel("iteration k")
    axes.set_ylabel("(F(x_k) - F*) / |F*|")
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
