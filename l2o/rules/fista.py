"""FISTA / Nesterov's accelerated proximal gradient, with optional adaptive restart.

The rule is evaluated at the extrapolated point: ``step`` receives ``y_k`` and ∇f(y_k)
and returns ``y_{k+1}``; the main iterate ``x_k`` lives in the state and is what
:meth:`FISTARule.iterate` reports (and what convergence rates are stated for).
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.rules.base import State, StepContext, UpdateRule, step_size, validate_lr
from problems.proximal import fista_step


class FISTARule(UpdateRule):
    """FISTA (Beck & Teboulle 2009); Nesterov's method when λ = 0.

    State: ``x`` ``(B, n)`` main iterate, ``t`` ``(B, 1)`` momentum sequence.

    Args:
        lr: step size; None uses ``1 / L``.
        restart: gradient-based adaptive restart (O'Donoghue & Candès 2015).
    """

    def __init__(self, lr: float | None = None, restart: bool = False) -> None:
        super().__init__()
        validate_lr(lr)
        self.lr = lr
        self.restart = bool(restart)

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        return {"x": x, "t": torch.ones_like(x[:, :1])}

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        alpha = step_size(self.lr, ctx, "FISTA")
        x_next, y_next, t_next = fista_step(
            state["x"], x, grad, alpha, ctx.prox, state["t"], restart=self.restart
        )
        return y_next, {"x": x_next, "t": t_next}

    def iterate(self, x: Tensor, state: State) -> Tensor:
        return state["x"]

    def extra_repr(self) -> str:
        return f"lr={self.lr}, restart={self.restart}"
