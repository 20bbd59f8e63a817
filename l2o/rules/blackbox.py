"""Black-box coordinate-wise LSTM optimizers: L2L (Andrychowicz et al. 2016) and RNNprop
(Lv et al. 2017). Both follow the subgradient ``g = ∇f(x) + λ sign(x)`` on composite
problems.

* L2L: input ``log_sign_preprocess(g)`` (2 features), update ``x + out_scale · δ``.
* RNNprop: input ``[m̂ / (sqrt(v̂) + ε), g / (sqrt(v̂) + ε)]`` with β1 = β2 = 0.95,
  update ``x - lr · tanh(δ)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2o.features import composite_gradient, log_sign_preprocess
from l2o.rules.adam import adam_direction, adam_init
from l2o.rules.base import State, StepContext, validate_lr
from l2o.rules.lstm import CoordinateLSTMRule


class L2LRule(CoordinateLSTMRule):
    """Learning to learn by gradient descent by gradient descent. ``out_scale``: 0.1."""

    heads = ("delta",)

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, out_scale: float = 0.1) -> None:
        super().__init__(num_features=2, hidden_size=hidden_size, num_layers=num_layers)
        validate_lr(out_scale, allow_none=False)
        self.out_scale = out_scale

    def config(self) -> dict[str, Any]:
        return {**super().config(), "out_scale": self.out_scale}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        return log_sign_preprocess(composite_gradient(x, grad, ctx.l1)), {}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        return x + self.out_scale * outputs["delta"], {}


class RNNpropRule(CoordinateLSTMRule):
    """RNNprop. ``lr``: the largest per-coordinate move per step (0.1)."""

    heads = ("delta",)
    betas = (0.95, 0.95)
    eps = 1e-8

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, lr: float = 0.1) -> None:
        super().__init__(num_features=2, hidden_size=hidden_size, num_layers=num_layers)
        validate_lr(lr, allow_none=False)
        self.lr = lr

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        return adam_init(x)

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        g = composite_gradient(x, grad, ctx.l1)
        normalized_momentum, moments = adam_direction(g, state, self.betas, self.eps)
        v_hat = moments["exp_avg_sq"] / (1 - self.betas[1] ** moments["adam_step"])
        normalized_gradient = g / (v_hat.sqrt() + self.eps)
        return torch.stack([normalized_momentum, normalized_gradient], dim=-1), moments

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        return x - self.lr * torch.tanh(outputs["delta"]), {}
