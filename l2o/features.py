"""Per-coordinate features shared by the update rules.

Every function is batched over ``(B, n)`` coordinates with ``(B, 1)`` per-instance
scalars, and differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from problems.proximal import l1_subdifferential_bounds, l1_subgradient


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


def first_value_scale(stored: Tensor, current: Tensor) -> Tensor:
    """A per-instance normalizer fixed at k = 0: ``stored`` once set (> 0), else
    ``current``. Both ``(B, 1)``; no host synchronization."""
    return torch.where(stored > 0, stored, current)


def gradient_features(
    grad: Tensor, x: Tensor, l1: Tensor, scales: Tensor
) -> tuple[Tensor, Tensor]:
    """GoMathL2O's gradient-only features (3 per coordinate) and their k = 0 scales.

    ``[∇f(x_k), lower, upper]`` where ``[lower, upper]`` is the subdifferential of
    ``λ||x||_1`` at ``x_k`` (coordinate-wise), each divided by its own norm at k = 0 so
    the input magnitude stays bounded whatever the problem's scale.

    The scales are constants of the instance, taken at ``x₀`` as the official code takes
    them (once, in ``reset_state``), so no gradient flows through them: a meta-training
    unroll starts from a constant ``x₀``, and detaching them spares its backward a reduction
    per step that would only carry zeros (with :func:`part_norms`, 7% of a compiled training
    batch at the toy LASSO size). Only a zero norm at k = 0 (``∇f(x₀) = 0``), which a later
    step then replaces, is taken from a point that depends on the rule.

    Args:
        grad, x: ``(B, n)``.
        l1: ``(B, 1)``.
        scales: ``(B, 3)`` norms fixed at k = 0 (zeros before the first step).
    Returns:
        ``features (B, n, 3)`` and the ``(B, 3)`` scales to keep.
    """
    parts = gradient_feature_parts(grad, x, l1)
    scales = first_value_scale(scales, part_norms(parts).detach())
    divisors = scales.clamp_min(torch.finfo(grad.dtype).tiny).unbind(-1)
    # each contiguous part divided, then stacked: the same numbers as dividing the stacked
    # (B, n, 3), whose innermost size 3 torch divides at a fifth of the rate (1M coordinates)
    return torch.stack([part / divisor[:, None] for part, divisor in zip(parts, divisors)], dim=-1), scales


def gradient_feature_parts(grad: Tensor, x: Tensor, l1: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``∇f(x_k)``, ``lower``, ``upper``: :func:`gradient_features` before their scaling and
    stacking, each ``(B, n)``."""
    lower, upper = l1_subdifferential_bounds(x, l1)
    return grad, lower, upper


def part_norms(parts: tuple[Tensor, ...]) -> Tensor:
    """Per-instance norms of each part: ``P × (B, n) -> (B, P)``. Each norm reduces a
    contiguous row; over the stacked ``(B, n, P)`` features, Inductor runs such a reduction
    as one parallel region per instance."""
    return torch.stack([torch.linalg.vector_norm(part, dim=-1) for part in parts], dim=-1)


def gradient_feature_scales(grad: Tensor, x: Tensor, l1: Tensor, scales: Tensor, chunk: int) -> Tensor:
    """:func:`gradient_features`' ``(B, 3)`` scales from ``grad``, ``x`` ``(B, n)`` taken ``chunk``
    coordinates at a time (no full-size temporary): the norms of the chunks' features
    combined as ``sqrt(Σ_chunks norm²)``, kept where ``scales`` are already set."""
    norms = torch.stack([
        part_norms(gradient_feature_parts(grad[:, k : k + chunk], x[:, k : k + chunk], l1))
        for k in range(0, grad.shape[1], chunk)
    ])
    return first_value_scale(scales, torch.linalg.vector_norm(norms, dim=0))
