"""Hypergradient descent (Baydin et al. 2018): SGD-HD and Adam-HD.

The step size α (one per instance, ``(B, 1)``) is itself adapted from the alignment of
consecutive update directions. With ``u_{k-1}`` the previous direction,
``∂f(x_k)/∂α_{k-1} = -<g_k, u_{k-1}>``; the two rules of the paper are

* ``"additive"`` (its Eq. 2, the reference baseline of the GoMathL2O code):
  ``α_k = max(α_{k-1} + β <g_k, u_{k-1}>, α_min)``;
* ``"multiplicative"`` (its Section 5 variant): ``α_k = α_{k-1} (1 + β cos(g_k, u_{k-1}))``:
  scale-free, so β means the same on every problem and α never leaves ``[α_0 (1-β)^k,
  α_0 (1+β)^k]`` — the drop-in optimizers' default;

then ``x_{k+1} = x_k - α_k u_k``, where ``u = g`` for SGD-HD and ``u = m̂ / (sqrt(v̂) + ε)``
for Adam-HD, and ``g = ∇f(x) + λ sign(x)`` on composite problems.

**A schedulable lr.** The state remembers the ``lr`` that α was adapted under; when the
rule is rebuilt with another ``lr`` (an LR scheduler changed the param group's), α is
rescaled by ``lr_new / lr_old`` before the step. A rule with ``lr = 0`` does not move and
keeps its α, as ``torch.optim.SGD`` at ``lr = 0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.features import composite_gradient, instance_dot, instance_norm
from l2o.rules.adam import adam_direction, adam_init, validate_adam
from l2o.rules.base import State, StepContext, UpdateRule, validate_lr

HYPERGRADIENT_RULES = ("additive", "multiplicative")


def validate_hypergradient(hypergrad_lr: float, hypergrad: str, min_lr: float) -> None:
    """Shared checks of the hypergradient options (raise ``ValueError``)."""
    if hypergrad not in HYPERGRADIENT_RULES:
        raise ValueError(f"Invalid hypergrad: {hypergrad!r} (choose from {HYPERGRADIENT_RULES})")
    if not (isinstance(hypergrad_lr, (int, float)) and 0.0 <= hypergrad_lr < float("inf")):
        raise ValueError(f"Invalid hypergradient learning rate: {hypergrad_lr}")
    if hypergrad == "multiplicative" and hypergrad_lr >= 1.0:
        raise ValueError(f"Invalid hypergradient learning rate: {hypergrad_lr} (the multiplicative rule needs < 1)")
    if not (isinstance(min_lr, (int, float)) and 0.0 <= min_lr < float("inf")):
        raise ValueError(f"Invalid min_lr: {min_lr} (a finite float >= 0)")


class HypergradientRule(UpdateRule):
    """Shared core of SGD-HD and Adam-HD; subclasses define the direction ``u``.

    Args:
        lr: initial step size α_0 (the param group's ``lr``; see the module docstring).
        hypergrad_lr: β.
        hypergrad: ``"additive"`` or ``"multiplicative"`` (module docstring).
        min_lr: the additive rule's floor α_min on α (the official code's 1e-8; default 0).

    State: ``alpha`` ``(B, 1)``, ``lr`` ``(B, 1)`` the lr it was adapted under,
    ``previous_direction`` ``(B, n)``, plus the direction's own.
    """

    def __init__(self, lr: float, hypergrad_lr: float, hypergrad: str = "additive", min_lr: float = 0.0) -> None:
        super().__init__()
        validate_lr(lr, allow_none=False)
        validate_hypergradient(hypergrad_lr, hypergrad, min_lr)
        self.lr, self.hypergrad_lr, self.hypergrad, self.min_lr = float(lr), hypergrad_lr, hypergrad, min_lr

    def direction(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def direction_state(self, x: Tensor) -> State:
        return {}

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        return {
            "alpha": torch.full_like(x[:, :1], self.lr),
            "lr": torch.full_like(x[:, :1], self.lr),
            "previous_direction": torch.zeros_like(x),
            **self.direction_state(x),
        }

    def adapted_step(self, g: Tensor, state: State) -> Tensor:
        """α_k from α_{k-1} (rescaled to the current lr) and the hypergradient."""
        previous_lr = state["lr"]
        rescaled = torch.where(previous_lr > 0, state["alpha"] * (self.lr / previous_lr.clamp_min(1e-300)),
                               torch.full_like(previous_lr, self.lr))
        alignment = instance_dot(g, state["previous_direction"])
        if self.hypergrad == "additive":
            return (rescaled + self.hypergrad_lr * alignment).clamp_min(self.min_lr)
        tiny = torch.finfo(g.dtype).tiny
        cosine = alignment / (instance_norm(g) * instance_norm(state["previous_direction"])).clamp_min(tiny)
        return rescaled * (1.0 + self.hypergrad_lr * cosine)

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        if self.lr == 0.0:
            return x, state
        g = composite_gradient(ctx.nonsmooth_point(x), grad, ctx.l1)
        alpha = self.adapted_step(g, state)
        u, direction_state = self.direction(g, state)
        return x - alpha * u, {"alpha": alpha, "lr": torch.full_like(alpha, self.lr),
                               "previous_direction": u, **direction_state}

    def extra_repr(self) -> str:
        return (f"lr={self.lr}, hypergrad_lr={self.hypergrad_lr}, hypergrad={self.hypergrad!r}, "
                f"min_lr={self.min_lr}")


class SGDHDRule(HypergradientRule):
    """SGD with hypergradient descent on its step size (``u = g``)."""

    def direction(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        return grad, {}


class AdamHDRule(HypergradientRule):
    """Adam with hypergradient descent on its step size."""

    def __init__(
        self,
        lr: float = 1e-3,
        hypergrad_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        hypergrad: str = "additive",
        min_lr: float = 0.0,
    ) -> None:
        super().__init__(lr, hypergrad_lr, hypergrad, min_lr)
        validate_adam(betas, eps)
        self.betas, self.eps = tuple(betas), eps

    def direction_state(self, x: Tensor) -> State:
        return adam_init(x)

    def direction(self, grad: Tensor, state: State) -> tuple[Tensor, State]:
        return adam_direction(grad, state, self.betas, self.eps)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, betas={self.betas}, eps={self.eps}"
