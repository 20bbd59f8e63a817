"""A safeguard that keeps any update rule convergent: sufficient decrease or fallback.

With ``T(x) = prox_{λ/L ||.||_1}(x - ∇f(x) / L)`` the proximal-gradient step and
``G(x) = L (x - T(x))`` its gradient map, the descent lemma gives, for convex
``F = f + λ||.||_1`` with L-Lipschitz ∇f,

    F(T(x)) <= F(x) - ||G(x)||² / (2L)                                     (★)

Each step the wrapped rule proposes ``c``; with ``σ ∈ (0, 1]`` (``sufficient_decrease``)
the safeguard **accepts c iff** ``F(c) <= F(x_k) - σ ||G(x_k)||² / (2L)`` (and ``F(c)``
is finite), **else it takes ``T(x_k)``**, which satisfies the inequality by (★) since
σ <= 1. So every iterate obeys

    F(x_{k+1}) <= F(x_k) - σ ||G(x_k)||² / (2L):

the objective is monotone non-increasing, ``Σ_k ||G(x_k)||² <= 2L (F(x_0) - F*) / σ`` so
``min_{j<=k} ||G(x_j)|| = O(1/sqrt(k))`` and ``G(x_k) -> 0``; on convex problems with
bounded level sets every limit point is a minimizer and ``F(x_k) -> F*``. Whenever the
learned step is accepted it is at least as good (in this bound) as the classical one; when
it is rejected the step *is* the classical one: the safeguarded optimizer is never worse
per step than the proximal-gradient guarantee.

Cost per step: one objective evaluation at the candidate (F(x_k), ∇f(x_k) are already
known) and one prox-gradient step. The wrapped rule keeps its own state (LSTM memory)
advanced by its proposal even when it is rejected.

Rules with an auxiliary point (FISTA, Math-L2O: the gradient is taken at an extrapolated
``y_k`` and the rule reports another iterate) are safeguarded on the **point sequence**:
``x_k`` above is the point the gradient is taken at, and the safeguarded rule reports that
point (its own :meth:`iterate` is the identity), so the guarantee holds for what it reports.

Needs ``ctx.objective`` and ``ctx.lipschitz`` (a ``problems.Instances`` batch provides both;
``LearnedOptimizer(..., safeguard=True)`` builds them from the closure and ``lipschitz``/``lr``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.features import instance_dot
from l2o.rules.base import State, StepContext, UpdateRule, step_size

INNER = "inner."


class SafeguardedRule(UpdateRule):
    """``rule`` under the sufficient-decrease safeguard (module docstring).

    Args:
        rule: the rule to safeguard.
        sufficient_decrease: σ ∈ (0, 1]; smaller accepts more learned steps (the guaranteed
            decrease per step is σ times the prox-gradient bound's).

    State: the wrapped rule's state under ``inner.*`` keys, and ``fallbacks`` ``(B, 1)``,
    the number of rejected proposals per instance.
    """

    def __init__(self, rule: UpdateRule, sufficient_decrease: float = 0.1) -> None:
        super().__init__()
        if isinstance(rule, SafeguardedRule):
            raise ValueError("the rule is already safeguarded")
        if not 0.0 < sufficient_decrease <= 1.0:
            raise ValueError(f"sufficient_decrease must be in (0, 1], got {sufficient_decrease}")
        self.rule = rule
        self.sufficient_decrease = float(sufficient_decrease)

    def compile_kernels(self, enabled: bool = True) -> "SafeguardedRule":
        self.rule.compile_kernels(enabled)
        return self

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        inner = self.rule.init_state(x, ctx)
        return {**{INNER + k: v for k, v in inner.items()}, "fallbacks": torch.zeros_like(x[:, :1])}

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        if ctx.objective is None:
            raise ValueError("the safeguard needs the objective (a closure, or problem instances)")
        inner = {k[len(INNER):]: v for k, v in state.items() if k.startswith(INNER)}
        candidate, inner = self.rule.step(x, grad if self.rule.uses_gradient else None, inner, ctx)
        alpha = step_size(None, ctx, "the safeguard")
        fallback = ctx.prox(x - alpha * grad, alpha)
        decrease = self.sufficient_decrease * instance_dot(x - fallback, x - fallback) / (2 * alpha)  # σ||G||²/(2L)
        threshold = ctx.objective(x)[:, None] - decrease
        proposed = ctx.objective(candidate)[:, None]
        accept = torch.isfinite(proposed) & (proposed <= threshold)
        x_next = torch.where(accept, candidate, fallback)
        return x_next, {**{INNER + k: v for k, v in inner.items()},
                        "fallbacks": state["fallbacks"] + (~accept).to(x.dtype)}
