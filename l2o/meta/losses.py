"""Meta-losses over a segment of an unrolled trajectory.

Each takes ``objective: (K, B)`` = F(x_k) for the global step indices ``steps: (K,)``
(1-based, within the training horizon T) and ``optimum: (B,)`` F* (used by
``log_relative`` only), and returns a scalar.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

MetaLoss = Callable[[Tensor, Tensor, Tensor | None, int], Tensor]


def mean_objective(objective: Tensor, steps: Tensor, optimum: Tensor | None, horizon: int) -> Tensor:
    """``mean_k mean_b F(x_k)`` — GoMathL2O's "mean" loss."""
    return objective.mean()


def weighted_objective(objective: Tensor, steps: Tensor, optimum: Tensor | None, horizon: int) -> Tensor:
    """``Σ_k w_k mean_b F(x_k)`` with ``w_k = k / Σ_{j<=T} j`` (later steps weigh more)."""
    weights = steps.to(objective.dtype) / (horizon * (horizon + 1) / 2)
    return (weights[:, None] * objective).sum(0).mean()


def last_objective(objective: Tensor, steps: Tensor, optimum: Tensor | None, horizon: int) -> Tensor:
    """``mean_b F(x_T)``: only the horizon counts (segments not ending at T give 0)."""
    at_horizon = (steps == horizon)[:, None]  # a mask, not a branch: no host-device sync
    return torch.where(at_horizon, objective, torch.zeros_like(objective)).sum(0).mean()


def log_relative(objective: Tensor, steps: Tensor, optimum: Tensor | None, horizon: int) -> Tensor:
    """``mean_k mean_b log10((F(x_k) - F*) / |F*| + 1e-12)``: scale-free across instances."""
    if optimum is None:
        raise ValueError("log_relative needs the instances' optimum F*")
    relative = (objective - optimum) / optimum.abs().clamp_min(torch.finfo(objective.dtype).tiny)
    return torch.log10(relative.clamp_min(0.0) + 1e-12).mean()


META_LOSSES: dict[str, MetaLoss] = {
    "mean": mean_objective,
    "weighted": weighted_objective,
    "last": last_objective,
    "log_relative": log_relative,
}
