"""Proximal operators and the accelerated proximal-gradient (FISTA) update.

This is problem math shared by the problem families (to certify optima) and by the
update rules in ``l2o.rules`` (to optimize): it is written once, here.

Shapes: ``x`` is ``(B, n)`` — a batch of B points of dimension n (a deployed optimizer
uses B = 1 and n = the number of coordinates of a parameter group). Per-instance
scalars are ``(B, 1)`` so that they broadcast over coordinates.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def soft_threshold(x: Tensor, threshold: Tensor | float) -> Tensor:
    """prox of ``threshold * ||.||_1``: ``sign(x) * max(|x| - threshold, 0)``.

    ``threshold`` broadcasts against ``x`` (scalar, ``(B, 1)`` or ``(B, n)``) and must be
    non-negative. Differentiable in both arguments (almost everywhere).
    """
    return torch.sign(x) * torch.relu(x.abs() - threshold)


def l1_subgradient(x: Tensor, l1: Tensor | float) -> Tensor:
    """The minimum-norm-free subgradient ``l1 * sign(x)`` of ``l1 * ||x||_1`` (0 at x_i = 0)."""
    return l1 * torch.sign(x)


def l1_subdifferential_bounds(x: Tensor, l1: Tensor | float) -> tuple[Tensor, Tensor]:
    """The two ends of the subdifferential of ``l1 * ||x||_1`` per coordinate.

    Where ``x_i != 0`` both ends equal ``l1 * sign(x_i)``; where ``x_i == 0`` they are
    ``-l1`` and ``+l1``. Returns ``(lower, upper)``, each shaped like ``x``.
    """
    sign = torch.sign(x)
    at_zero = (sign == 0).to(x.dtype)
    return l1 * (sign - at_zero), l1 * (sign + at_zero)


def nesterov_momentum(t: Tensor) -> tuple[Tensor, Tensor]:
    """FISTA's sequence: ``t' = (1 + sqrt(1 + 4 t^2)) / 2`` and ``beta = (t - 1) / t'``."""
    t_next = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
    return t_next, (t - 1.0) / t_next


def fista_step(
    x: Tensor,
    y: Tensor,
    grad_y: Tensor,
    step: Tensor | float,
    prox: Callable[[Tensor, Tensor | float], Tensor],
    t: Tensor,
    restart: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """One FISTA iteration (Beck & Teboulle 2009) with optional adaptive restart.

    ``x' = prox_{step * r}(y - step * grad_y)``,
    ``t' = (1 + sqrt(1 + 4 t^2)) / 2``,
    ``y' = x' + (t - 1) / t' * (x' - x)``.

    With ``restart`` (O'Donoghue & Candès 2015, gradient scheme), an instance whose
    momentum points uphill, ``(y - x')^T (x' - x) > 0``, restarts: ``t' = 1``, ``y' = x'``.

    Args:
        x: ``(B, n)`` previous main iterate x_k.
        y: ``(B, n)`` extrapolated point y_k where the gradient was taken.
        grad_y: ``(B, n)`` gradient of the smooth part at ``y``.
        step: step size, scalar or ``(B, 1)``.
        prox: ``(z, step) -> prox_{step * r}(z)`` of the nonsmooth part r, e.g.
            ``lambda z, s: soft_threshold(z, s * l1)`` (identity for smooth problems).
        t: ``(B, 1)`` momentum sequence t_k (t_0 = 1).
    Returns:
        ``(x_next, y_next, t_next)``.
    """
    x_next = prox(y - step * grad_y, step)
    t_next, beta = nesterov_momentum(t)
    if restart:
        uphill = ((y - x_next) * (x_next - x)).sum(dim=-1, keepdim=True) > 0
        t_next = torch.where(uphill, torch.ones_like(t_next), t_next)
        beta = torch.where(uphill, torch.zeros_like(beta), beta)
    y_next = x_next + beta * (x_next - x)
    return x_next, y_next, t_next
