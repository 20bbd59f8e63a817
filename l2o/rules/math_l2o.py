"""Math-L2O (Liu et al., ICML 2023), the coordinate-wise "math LSTM" baseline.

Unlike GoMathL2O its LSTM input includes the raw iterate: ``[x_k, ∇f(y_k), lower,
upper]`` (the last three normalized by their norms at k = 0). Heads: a preconditioner
``P = 2σ(p) · α``, an extrapolation weight ``A = σ(a)`` and a bias ``b`` (in units of
the RMS of the first gradient). With the extrapolated point ``y_k`` held in the
parameters (as for FISTA) and ``x_k`` in the state:

``x_{k+1} = prox_{P λ ||.||_1}(y_k - P ⊙ (∇f(y_k) + b))``,
``y_{k+1} = x_{k+1} + A ⊙ (x_{k+1} - x_k)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2o.features import gradient_features
from l2o.rules.base import State, StepContext, validate_lr
from l2o.rules.gomath import learned_step
from l2o.rules.lstm import CoordinateLSTMRule
from problems.proximal import soft_threshold


class MathL2ORule(CoordinateLSTMRule):
    """Math-L2O. Args as :class:`~l2o.rules.gomath.GoMathRule`."""

    heads = ("P", "A", "b")

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, lr: float | None = None) -> None:
        super().__init__(num_features=4, hidden_size=hidden_size, num_layers=num_layers)
        validate_lr(lr)
        self.lr = lr

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        return {"x": x, "feature_scale": x.new_zeros(x.shape[0], 3)}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        features, scale = gradient_features(grad, state["x"], ctx.l1, state["feature_scale"])
        return torch.cat([state["x"].unsqueeze(-1), features], dim=-1), {"feature_scale": scale}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        P = learned_step(outputs["P"], self.lr, ctx, "Math-L2O")
        A = torch.sigmoid(outputs["A"])
        gradient_rms = state["feature_scale"][:, :1] / x.shape[1] ** 0.5
        bias = outputs["b"] * gradient_rms
        x_next = soft_threshold(x - P * (grad + bias), P * ctx.l1)
        y_next = x_next + A * (x_next - state["x"])
        return y_next, {"x": x_next}

    def iterate(self, x: Tensor, state: State) -> Tensor:
        return state["x"]
