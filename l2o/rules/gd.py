"""Proximal gradient descent (ISTA); plain gradient descent when λ = 0.

``x_{k+1} = prox_{α λ ||.||_1}(x_k - α ∇f(x_k))`` with ``α = lr`` or ``1 / L``.
"""

from __future__ import annotations

from torch import Tensor

from l2o.rules.base import State, StepContext, UpdateRule, step_size, validate_lr


class ProxGDRule(UpdateRule):
    """Proximal gradient descent / ISTA; GD on smooth problems.

    Args:
        lr: step size α; None uses ``1 / L`` from the context.
    """

    def __init__(self, lr: float | None = None) -> None:
        super().__init__()
        validate_lr(lr)
        self.lr = lr

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        alpha = step_size(self.lr, ctx, "ProxGD")
        return ctx.prox(x - alpha * grad, alpha), state

    def extra_repr(self) -> str:
        return f"lr={self.lr}"
