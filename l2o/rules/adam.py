"""Adam (Kingma & Ba 2015) as an update rule, and its direction shared with Adam-HD.

``m = β1 m + (1-β1) g``, ``v = β2 v + (1-β2) g²``,
``u = m̂ / (sqrt(v̂) + ε)`` with bias corrections, ``x' = x - lr · u``.
On composite problems the rule follows ``g = ∇f(x) + λ sign(x)`` (a subgradient), as the
Adam baselines of the L2O papers do.
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.features import composite_gradient
from l2o.rules.base import State, StepContext, UpdateRule, validate_lr


def validate_adam(betas: tuple[float, float], eps: float) -> None:
    """Shared hyperparameter checks of the Adam family."""
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"Invalid betas: {betas} (each must be in [0, 1))")
    if not eps >= 0.0:
        raise ValueError(f"Invalid epsilon value: {eps}")


def adam_init(x: Tensor) -> State:
    """Zero moments and a zero step count."""
    return {
        "exp_avg": torch.zeros_like(x),
        "exp_avg_sq": torch.zeros_like(x),
        "adam_step": torch.zeros((), dtype=x.dtype, device=x.device),
    }


def adam_direction(
    grad: Tensor, state: State, betas: tuple[float, float], eps: float
) -> tuple[Tensor, State]:
    """Update the moments with ``grad: (B, n)`` and return ``(u, moments)`` where
    ``u = m̂ / (sqrt(v̂) + ε)``."""
    beta1, beta2 = betas
    k = state["adam_step"] + 1
    m = beta1 * state["exp_avg"] + (1 - beta1) * grad
    v = beta2 * state["exp_avg_sq"] + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**k)
    v_hat = v / (1 - beta2**k)
    return m_hat / (v_hat.sqrt() + eps), {"exp_avg": m, "exp_avg_sq": v, "adam_step": k}


class AdamRule(UpdateRule):
    """Adam. Args: ``lr``, ``betas``, ``eps`` as in ``torch.optim.Adam``."""

    def __init__(
        self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__()
        validate_lr(lr, allow_none=False)
        validate_adam(betas, eps)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        return adam_init(x)

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        g = composite_gradient(ctx.nonsmooth_point(x), grad, ctx.l1)
        direction, moments = adam_direction(g, state, self.betas, self.eps)
        return x - self.lr * direction, moments

    def extra_repr(self) -> str:
        return f"lr={self.lr}, betas={self.betas}, eps={self.eps}"
