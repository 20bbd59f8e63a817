"""Hypergradient descent (Baydin et al. 2018): SGD-HD and Adam-HD.

The step size α (one per instance, ``(B, 1)``) is itself updated by gradient descent on
``f(x_k)`` as a function of α_{k-1}: with ``u_{k-1}`` the previous update direction,
``∂f(x_k)/∂α_{k-1} = -<g_k, u_{k-1}>``, hence

``α_k = α_{k-1} + β <g_k, u_{k-1}>``,  ``x_{k+1} = x_k - α_k u_k``,

where ``u = g`` for SGD-HD and ``u = m̂ / (sqrt(v̂) + ε)`` for Adam-HD. On composite
problems ``g = ∇f(x) + λ sign(x)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.features import composite_gradient, instance_dot
from l2o.rules.adam import adam_direction, adam_init, validate_adam
from l2o.rules.base import State, StepContext, UpdateRule, validate_lr


class HypergradientRule(UpdateRule):
    """Shared core of SGD-HD and Adam-HD; subclasses define the direction ``u``.

    State: ``alpha`` ``(B, 1)``, ``previous_direction`` ``(B, n)`` plus the direction's own.
    """

    def __init__(self, lr: float, hypergrad_lr: float) -> None:
        super().__init__()
        validate_lr(lr, allow_none=False)
        if not (isinstance(hypergrad_lr, (int, float)) and 0.0 <= hypergrad_lr < float("inf")):
            raise ValueError(f"Invalid hypergradient learning rate: {hypergrad_lr}")
        self.lr, self.hypergrad_lr = lr, hypergrad_lr

    def direction(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def direction_state(self, x: Tensor) -> State:
        return {}

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        return {
            "alpha": torch.full_like(x[:, :1], float(self.lr)),
            "previous_direction": torch.zeros_like(x),
            **self.direction_state(x),
        }

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        g = composite_gradient(ctx.nonsmooth_point(x), grad, ctx.l1)
        alpha = state["alpha"] + self.hypergrad_lr * instance_dot(g, state["previous_direction"])
        u, direction_state = self.direction(g, state)
        return x - alpha * u, {"alpha": alpha, "previous_direction": u, **direction_state}


class SGDHDRule(HypergradientRule):
    """SGD with hypergradient descent on its step size (``u = g``)."""

    def direction(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        return grad, {}

    def extra_repr(self) -> str:
        return f"lr={self.lr}, hypergrad_lr={self.hypergrad_lr}"


class AdamHDRule(HypergradientRule):
    """Adam with hypergradient descent on its step size."""

    def __init__(
        self,
        lr: float = 1e-3,
        hypergrad_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(lr, hypergrad_lr)
        validate_adam(betas, eps)
        self.betas, self.eps = tuple(betas), eps

    def direction_state(self, x: Tensor) -> State:
        return adam_init(x)

    def direction(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        return adam_direction(grad, state, self.betas, self.eps)

    def extra_repr(self) -> str:
        return f"lr={self.lr}, hypergrad_lr={self.hypergrad_lr}, betas={self.betas}, eps={self.eps}"
