"""Per-coordinate features shared by the update rules.

Every function is batched over ``(B, n)`` coordinates with ``(B, 1)`` per-instance
scalars, and differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from problems.proximal import l1_subgradient


def composite_gradient(x: Tensor, grad: Tensor, l1: Tensor | float) -> Tensor:
    """The (sub)gradient a non-proximal rule follows on ``f + λ||x||_1``:
    ``∇f(x) + λ sign(x)``. With λ = 0 it is ``∇f(x)`` itself."""
    return grad + l1_subgradient(x, l1)


def instance_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-instance inner product ``<a_b, b_b>``: ``(B, n), (B, n) -> (B, 1)``."""
    return (a * b).sum(dim=-1, keepdim=True)


def instance_norm(a: Tensor, eps: float = 0.0) -> Tensor:
    """Per-instance Euclidean norm ``||a_b||``, floored at ``eps``: ``(B, n) -> (B, 1)``."""
    return torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp_min(eps)
