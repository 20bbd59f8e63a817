"""Black-box coordinate-wise LSTM optimizers as the GoMathL2O paper's official code runs
them (NetX-lab/GoMathL2O-Official): L2L ("L2O-DM", Andrychowicz et al. 2016,
``CoordBlackboxLSTM``) and RNNprop (Lv et al. 2017, ``RNNprop``). Both follow the
subgradient ``g = ∇f(x) + λ sign(x)`` of the whole objective (the official
``grad_method=bp_grad``), detached.

* L2L: ``[g, x] -> LSTM -> Linear(H, 1) -> ELU = δ``, ``x_{k+1} = x_k + out_scale · δ``
  (out_scale 0.1); ``g`` is detached, ``x`` is not (as in the official code). The official ``bp_grad`` differentiates the *batch mean* of the
  objective, so its L2L sees ``g / B`` for a batch of B instances; l2o feeds ``g``
  (a per-instance rule must not depend on the batch), and ``grad_scale = 1 / B``
  reproduces the official input exactly.
* RNNprop: ``[g / s, m̂ / s]`` with Adam's moments (β1 = β2 = 0.95),
  ``s = sqrt(v̂) + 1e-8``, ``-> Linear(2, H) + ELU -> LSTM -> Linear(H, 1) -> tanh = δ``,
  ``x_{k+1} = x_k - lr · δ`` (lr 0.1). Initial LSTM state ``0.01 · N(0, 1)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import elu

from l2o.features import composite_gradient
from l2o.rules.adam import adam_direction, adam_init
from l2o.rules.base import State, StepContext, validate_lr
from l2o.rules.lstm import CoordinateLSTMRule


class L2LRule(CoordinateLSTMRule):
    """Learning to learn by gradient descent by gradient descent.

    Args: ``hidden_size``, ``num_layers``; ``out_scale`` (0.1); ``grad_scale``: multiplies
    the gradient feature (1; ``1 / B`` is the official code at batch size B);
    ``state_init``: ``"randn"`` (official) or ``"zeros"``.
    """

    coordinatewise = True

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, out_scale: float = 0.1,
                 grad_scale: float = 1.0, state_init: str = "randn") -> None:
        super().__init__(num_features=2, hidden_size=hidden_size, num_layers=num_layers,
                         heads=("delta",), hidden_layer=False, state_init=state_init)
        validate_lr(out_scale, allow_none=False)
        validate_lr(grad_scale, allow_none=False)
        self.out_scale, self.grad_scale = out_scale, grad_scale

    def config(self) -> dict[str, Any]:
        return {**super().config(), "out_scale": self.out_scale, "grad_scale": self.grad_scale}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        g = composite_gradient(ctx.nonsmooth_point(x), grad, ctx.l1) * self.grad_scale
        return torch.stack([g.detach(), x], dim=-1), {}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        return x + self.out_scale * elu(outputs["delta"]), {}


class RNNpropRule(CoordinateLSTMRule):
    """RNNprop. Args: ``hidden_size``, ``num_layers``; ``lr``: the largest per-coordinate
    move per step (0.1); ``betas`` (0.95, 0.95); ``state_scale`` (0.01)."""

    coordinatewise = True

    eps = 1e-8

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, lr: float = 0.1,
                 betas: tuple[float, float] = (0.95, 0.95), state_init: str = "randn",
                 state_scale: float = 0.01) -> None:
        super().__init__(num_features=2, hidden_size=hidden_size, num_layers=num_layers,
                         heads=("delta",), input_layer=True, hidden_layer=False,
                         state_init=state_init, state_scale=state_scale)
        validate_lr(lr, allow_none=False)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas: {betas!r} (two floats in [0, 1))")
        self.lr, self.betas = lr, (float(betas[0]), float(betas[1]))

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr, "betas": list(self.betas),
                "state_scale": self.state_scale}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        return adam_init(x)

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        g = composite_gradient(ctx.nonsmooth_point(x), grad, ctx.l1).detach()
        normalized_momentum, moments = adam_direction(g, state, self.betas, self.eps)
        v_hat = moments["exp_avg_sq"] / (1 - self.betas[1] ** moments["adam_step"])
        return torch.stack([g / (v_hat.sqrt() + self.eps), normalized_momentum], dim=-1), moments

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        return x - self.lr * torch.tanh(outputs["delta"]), {}
