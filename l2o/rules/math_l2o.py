"""Math-L2O (Liu et al., ICML 2023) as the official code runs it: ``CoordMathLSTM`` in
NetX-lab/GoMathL2O-Official ("L2O-PA") and NetX-lab/MathL2OProof-Official
("Math-L2O-P" / "Math-L2O-PA").

Its LSTM sees the raw, detached ``[∇f(y_k), y_k]`` (no normalization). Heads: a
preconditioner ``P = p_norm(p) · p_scale · α`` (α = ``lr`` or 0.9999 / L) and, with
``extrapolation`` (PA), an extrapolation weight ``A = a_norm(a) · a_scale``. With the
extrapolated point ``y_k`` held in the parameters (as for FISTA) and ``x_k`` in the state:

``x_{k+1} = prox_{P λ ||.||_1}(y_k - P ⊙ ∇f(y_k))``,
``y_{k+1} = x_{k+1} + A ⊙ (x_{k+1} - x_k)``  (``A = 0`` without extrapolation: P).

The reported iterate (meta-loss, evaluation) is ``y_k``, the point the official code
evaluates its objective at.

Defaults are the LASSO configuration (``sigmoid``: 2σ for both, so ``A ∈ (0, 2)``); the
sparse-logistic one is ``softplus`` with ``p_scale = 2``, ``a_scale = 0.3``
(:meth:`MathL2ORule.logistic`). There is no bias head: the official model has bias heads
b1, b2 but every paper configuration turns them off, and an additive bias does not vanish
at the optimum, so the iteration's fixed point would not be the minimizer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2o.rules.base import State, StepContext, validate_lr
from l2o.rules.gomath import base_step
from l2o.rules.lstm import CoordinateLSTMRule
from l2o.rules.squash import squash, squash_config, validate_squashes


class MathL2ORule(CoordinateLSTMRule):
    """Math-L2O-PA (``extrapolation=True``) or Math-L2O-P.

    Args:
        hidden_size, num_layers: the LSTM's (20, 2).
        lr: base step α (None: 0.9999 / L).
        extrapolation: learn ``A`` (PA) or not (P).
        p_norm, p_scale, a_norm, a_scale: the heads' squashes and scales.
        state_init: ``"randn"`` (official) or ``"zeros"``.
    """

    coordinatewise = True

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, lr: float | None = None,
                 extrapolation: bool = True, p_norm: str = "sigmoid", p_scale: float = 1.0,
                 a_norm: str = "sigmoid", a_scale: float = 1.0, state_init: str = "randn") -> None:
        super().__init__(num_features=2, hidden_size=hidden_size, num_layers=num_layers,
                         heads=("P", "A") if extrapolation else ("P",), state_init=state_init)
        validate_lr(lr)
        self.squashes = {"P": (p_norm, p_scale), "A": (a_norm, a_scale)}
        validate_squashes(self.squashes)
        self.lr, self.extrapolation = lr, bool(extrapolation)

    @classmethod
    def logistic(cls, **config: Any) -> "MathL2ORule":
        """The official sparse-logistic configuration: softplus, ``p_scale = 2``, ``a_scale = 0.3``."""
        return cls(**{"p_norm": "softplus", "p_scale": 2.0, "a_norm": "softplus", "a_scale": 0.3, **config})

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr, "extrapolation": self.extrapolation,
                **squash_config(self.squashes)}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        return {"x": x}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        return torch.stack([grad, x], dim=-1).detach(), {}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        P = squash(outputs["P"], *self.squashes["P"]) * base_step(self.lr, ctx, "Math-L2O")
        x_next = ctx.prox(x - P * grad, P)
        if not self.extrapolation:
            return x_next, {"x": x_next}
        A = squash(outputs["A"], *self.squashes["A"])
        return x_next + A * (x_next - state["x"]), {"x": x_next}
