"""Convergence metrics over trajectories ``(T + 1, B)``."""

from __future__ import annotations

import torch
from torch import Tensor


def relative_suboptimality(objective: Tensor, optimum: Tensor) -> Tensor:
    """``(F(x_k) - F*) / |F*|``, broadcasting ``optimum: (B,)`` over ``objective: (..., B)``.

    Where ``F* = 0`` the denominator is floored at the dtype's ``tiny`` (so the value is
    a huge number, not a division by zero). Non-finite objectives stay non-finite.
    """
    optimum = optimum.to(objective.dtype)
    return (objective - optimum) / optimum.abs().clamp_min(torch.finfo(objective.dtype).tiny)


def iterations_to(relative: Tensor, eps: float) -> Tensor:
    """``(B,)`` first k with ``relative[k] <= eps`` (float; ``inf`` where never reached)."""
    reached = relative <= eps
    first = torch.argmax(reached.to(torch.int8), dim=0).to(torch.float64)
    return torch.where(reached.any(dim=0), first, torch.full_like(first, float("inf")))


def median(values: Tensor) -> float:
    """Median of a 1-D tensor as a float; ``inf`` entries count as largest (so the median
    is ``inf`` once half of them are)."""
    ordered = torch.sort(values.reshape(-1).to(torch.float64)).values
    n = ordered.numel()
    if n == 0:
        raise ValueError("median of an empty tensor")
    middle = ordered[n // 2]
    return float(middle if n % 2 else 0.5 * (ordered[n // 2 - 1] + middle))


def speedup(baseline_iterations: Tensor, method_iterations: Tensor) -> float:
    """How many times fewer iterations the method needs: ratio of median iterations.

    ``inf`` when only the method reaches the target, ``0`` when only the baseline does,
    ``nan`` when neither does.
    """
    base, method = median(baseline_iterations), median(method_iterations)
    if method == 0 and base == 0:
        return 1.0
    if method == float("inf") and base == float("inf"):
        return float("nan")
    return base / method if method > 0 else float("inf")
