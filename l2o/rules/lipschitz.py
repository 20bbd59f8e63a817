"""An online estimate of the smoothness constant L, for rules whose step scales with 1/L.

A PyTorch user does not know the Lipschitz constant of their loss. :class:`LipschitzEstimate`
runs any rule with ``ctx.lipschitz`` replaced by an estimate built from what the steps
already compute (no extra gradient or loss evaluation):

* warm-up (k = 0): ``L̂_0 = ||g_0|| / (first_step · max(1, ||x_0||))``, so that a
  1/L̂-scaled first step moves x by about ``first_step`` relative to its size;
* k = 1: ``L̂_1 = s_1``, the secant ``s_k = ||g_k − g_{k−1}|| / ||x_k − x_{k−1}||`` of the
  first step (the warm-up guess is discarded);
* k >= 2: ``L̂_k = max(L̂_{k−1}, s_k)``, a running maximum.

For an L-smooth f every secant is <= L, so ``L̂_k <= L`` once the warm-up guess is gone,
and it is a lower bound that only grows toward the curvature the iterates have met. It is
not a certificate: a rule may overshoot along a direction of higher curvature before its
secant is seen. :class:`~l2o.rules.SafeguardedRule` closes that gap when a closure is
available (its fallback backtracks until the descent lemma holds), which is what
``LearnedOptimizer(..., safeguard=True)`` without ``lipschitz`` / ``lr`` runs.

Rules whose step uses the gradient at an auxiliary point (FISTA, Math-L2O) see secants
between those points, which are the points the gradients were taken at.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import Tensor

from l2o.features import instance_norm
from l2o.rules.base import RuleWrapper, State, StepContext, UpdateRule
from l2o.rules.bfgs import BFGSRule, LearnedBFGSRule



class LipschitzEstimate(RuleWrapper):
    """``rule`` run with the online estimate L̂_k of L (module docstring) as ``ctx.lipschitz``.

    Args:
        rule: the wrapped rule.
        first_step: the warm-up step's length relative to ``max(1, ||x_0||)``.
        scale: the rule sees ``scale · L̂_k``: the ratio between the constant a learned rule
            was trained with and the smoothness constant (1, except for rules trained on the
            official sparse logistic family, whose L = ||AᵀA||/m is 4× the true constant:
            :func:`l2o.zoo.lipschitz_scale`), so it steps as it learned to.

    State: the wrapped rule's under ``inner.*`` (from the first step on); ``lipschitz`` ``(B, 1)`` L̂ (0 before the
    first step), ``previous_x`` and ``previous_grad`` ``(B, n)``, ``steps`` ``(B, 1)``.
    """

    def __init__(self, rule: UpdateRule, first_step: float = 1e-3, scale: float = 1.0) -> None:
        if isinstance(rule, LipschitzEstimate):
            raise ValueError("the rule already estimates L")
        if not rule.uses_gradient:
            raise ValueError("the estimate needs gradients; a zeroth-order rule needs an explicit lr")
        if not 0.0 < first_step < float("inf"):
            raise ValueError(f"Invalid first_step: {first_step} (a finite float > 0)")
        if not 0.0 < scale < float("inf"):
            raise ValueError(f"Invalid scale: {scale} (a finite float > 0)")
        super().__init__(rule)
        self.first_step, self.scale = float(first_step), float(scale)

    def needs_lipschitz(self) -> bool:
        return False

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        """The estimator's own state; the wrapped rule's is made at the first step, when
        L̂_0 exists (BFGS's H_0 = I / L needs it)."""
        zeros = torch.zeros_like(x[:, :1])
        return {"lipschitz": zeros, "steps": zeros, "previous_x": x, "previous_grad": torch.zeros_like(x)}

    def estimate(self, x: Tensor, grad: Tensor, state: State) -> Tensor:
        """L̂_k ``(B, 1)`` from the state and the current ``x``, ``grad``."""
        tiny = torch.finfo(x.dtype).tiny
        warm_up = instance_norm(grad) / (self.first_step * instance_norm(x).clamp_min(1.0))
        warm_up = torch.where(warm_up > 0, warm_up, torch.ones_like(warm_up))  # g_0 = 0: nothing moves anyway
        moved = instance_norm(x - state["previous_x"])
        secant = instance_norm(grad - state["previous_grad"]) / moved.clamp_min(tiny)
        secant = torch.where(moved > 0, secant, torch.zeros_like(secant))
        steps, previous = state["steps"], state["lipschitz"]
        first_secant = torch.where(secant > 0, secant, previous)
        return torch.where(steps == 0, warm_up,
                           torch.where(steps == 1, first_secant, torch.maximum(previous, secant)))

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        lipschitz = self.estimate(x, grad, state)
        inner = self.inner_state(state)
        inner_ctx = dataclasses.replace(ctx, lipschitz=self.scale * lipschitz)
        if not inner:  # the first step (or a rule without state, whose init is free)
            inner = self.rule.init_state(x, inner_ctx)
        x_next, inner = self.rule.step(x, grad, inner, inner_ctx)
        return x_next, self.outer_state(inner, lipschitz=lipschitz, steps=state["steps"] + 1, previous_x=x,
                                        previous_grad=grad)

    def iterate(self, x: Tensor, state: State) -> Tensor:
        return self.rule.iterate(x, self.inner_state(state))

    def extra_repr(self) -> str:
        return f"first_step={self.first_step}, scale={self.scale}"


def without_constants(rule: UpdateRule, scale: float = 1.0) -> UpdateRule:
    """What a drop-in optimizer runs for ``rule`` when given neither ``lipschitz`` nor ``lr``:
    BFGS with the standard H_0 scaling from its first curvature pair (``initial="curvature"``,
    a shallow copy sharing the weights), any other rule that reads L on :class:`LipschitzEstimate`
    (with ``scale``), and every other rule as it is."""
    if not (rule.needs_lipschitz() and rule.uses_gradient):
        return rule
    if isinstance(rule, (BFGSRule, LearnedBFGSRule)):
        rule = copy.copy(rule)
        rule.initial = "curvature"
        return rule
    return LipschitzEstimate(rule, scale=scale)
