"""GoMathL2O (Song, Lin et al., CVPR 2024): gradient-only features, gradient-based history.

Per coordinate, the LSTM sees only ``[∇f(x_k), lower, upper]`` (the gradient and the two
ends of ∂(λ||x_k||_1)), each divided by its norm at k = 0 — never ``x_k`` itself, which
keeps the input bounded under objective and initial-point shifts. Heads, squashed:

``R = 2σ(r) · α``  (α = ``lr`` or 0.9999 / L),  ``Q = 2σ(q)``,  ``B = σ(b)``;

update with history ``V`` (V_0 = 0):

``u = x_k - R ⊙ ∇f(x_k) - Q ⊙ V_k``,  ``x_{k+1} = prox_{R λ ||.||_1}(u)``,
``V_{k+1} = B ⊙ V_k + (1 - B) ⊙ (x_k - x_{k+1})``.

The optional bias heads b3, b4 of the paper (off by default there) are not included.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2o.features import gradient_features
from l2o.rules.base import State, StepContext, step_size, validate_lr
from l2o.rules.lstm import CoordinateLSTMRule
from problems.proximal import soft_threshold

SAFE_STEP = 0.9999


def learned_step(raw: Tensor, lr: float | None, ctx: StepContext, rule: str) -> Tensor:
    """``2σ(raw) · α`` with ``α = lr`` or ``0.9999 / L``: a preconditioner in (0, 2α)."""
    base = lr if lr is not None else SAFE_STEP * step_size(None, ctx, rule)
    return 2.0 * torch.sigmoid(raw) * base


class GoMathRule(CoordinateLSTMRule):
    """GoMathL2O. Args: ``hidden_size``, ``num_layers`` of the LSTM; ``lr``: base step α
    (None: 0.9999 / L from the problem, or ``LearnedOptimizer(lipschitz=...)``)."""

    heads = ("R", "Q", "B")

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, lr: float | None = None) -> None:
        super().__init__(num_features=3, hidden_size=hidden_size, num_layers=num_layers)
        validate_lr(lr)
        self.lr = lr

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        return {"history": torch.zeros_like(x), "feature_scale": x.new_zeros(x.shape[0], 3)}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        features, scale = gradient_features(grad, x, ctx.l1, state["feature_scale"])
        return features, {"feature_scale": scale}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        R = learned_step(outputs["R"], self.lr, ctx, "GoMathL2O")
        Q = 2.0 * torch.sigmoid(outputs["Q"])
        B = torch.sigmoid(outputs["B"])
        history = state["history"]
        x_next = soft_threshold(x - R * grad - Q * history, R * ctx.l1)
        return x_next, {"history": B * history + (1.0 - B) * (x - x_next)}
