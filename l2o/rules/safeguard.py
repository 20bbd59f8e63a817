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

**When L is only an estimate** (:class:`~l2o.rules.LipschitzEstimate`, or an ``lr`` larger
than 1/L), (★) may fail for ``T``. So whenever the fallback is taken, the descent lemma

    f(T(x)) <= f(x) + <∇f(x), T(x) − x> + ||T(x) − x||² / (2α)      (α = 1/L, f = F − r)

is checked at ``T(x)`` (one objective evaluation), and where it fails α is halved and ``T``
recomputed (backtracking, at most ``MAX_HALVINGS`` times). The accepted α satisfies the
lemma, and the lemma is all (★) needs, so the guarantee above holds with it; the smallest α
found is kept in the state and caps later steps (a found curvature is not forgotten). With a
true L the check always passes and nothing changes.

Needs ``ctx.objective`` and ``ctx.lipschitz`` (a ``problems.Instances`` batch provides both;
``LearnedOptimizer(..., safeguard=True)`` builds them from the closure and ``lipschitz``/``lr``,
or from the online estimate when neither is given).
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.features import instance_dot
from l2o.rules.base import RuleWrapper, State, StepContext, UpdateRule, step_size

MAX_HALVINGS = 60


class SafeguardedRule(RuleWrapper):
    """``rule`` under the sufficient-decrease safeguard (module docstring).

    Args:
        rule: the rule to safeguard.
        sufficient_decrease: σ ∈ (0, 1]; smaller accepts more learned steps (the guaranteed
            decrease per step is σ times the prox-gradient bound's).
        optional: without ``ctx.objective`` (a drop-in ``step()`` with no closure), take the
            proposal unverified instead of raising; every step that has the objective is
            still verified. The state is the same either way.

    State: the wrapped rule's state under ``inner.*`` keys, ``fallbacks`` ``(B, 1)`` the
    number of rejected proposals per instance, ``max_step`` ``(B, 1)`` the smallest
    backtracked α so far (inf until a backtrack).
    """

    def __init__(self, rule: UpdateRule, sufficient_decrease: float = 0.1, optional: bool = False) -> None:
        if isinstance(rule, SafeguardedRule):
            raise ValueError("the rule is already safeguarded")
        if not 0.0 < sufficient_decrease <= 1.0:
            raise ValueError(f"sufficient_decrease must be in (0, 1], got {sufficient_decrease}")
        super().__init__(rule)
        self.sufficient_decrease = float(sufficient_decrease)
        self.optional = bool(optional)

    def needs_lipschitz(self) -> bool:
        return True

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        return self.outer_state(self.rule.init_state(x, ctx), fallbacks=torch.zeros_like(x[:, :1]),
                                max_step=torch.full_like(x[:, :1], float("inf")))

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        if ctx.objective is None and not self.optional:
            raise ValueError("the safeguard needs the objective (a closure, or problem instances)")
        candidate, inner = self.rule.step(x, grad if self.rule.uses_gradient else None, self.inner_state(state), ctx)
        if ctx.objective is None:  # optional: nothing to verify with
            return candidate, self.outer_state(inner, fallbacks=state["fallbacks"], max_step=state["max_step"])
        alpha = torch.minimum(torch.as_tensor(step_size(None, ctx, "the safeguard"), dtype=x.dtype,
                                              device=x.device).expand_as(x[:, :1]), state["max_step"])
        fallback = ctx.prox(x - alpha * grad, alpha)
        decrease = self.sufficient_decrease * instance_dot(x - fallback, x - fallback) / (2 * alpha)  # σ||G||²/(2L)
        current = ctx.objective(x)[:, None]
        proposed = ctx.objective(candidate)[:, None]
        accept = torch.isfinite(proposed) & (proposed <= current - decrease)
        max_step = state["max_step"]
        if not bool(accept.all()):
            fallback, backtracked = self._verified_fallback(x, grad, current, alpha, fallback, ~accept, ctx)
            max_step = torch.where(backtracked < alpha, backtracked, max_step)
        x_next = torch.where(accept, candidate, fallback)
        return x_next, self.outer_state(inner, fallbacks=state["fallbacks"] + (~accept).to(x.dtype), max_step=max_step)

    @staticmethod
    def _verified_fallback(x: Tensor, grad: Tensor, current: Tensor, alpha: Tensor, fallback: Tensor,
                           rows: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """``(T(x), α)`` with α halved where the descent lemma fails at T (module docstring),
        checked on the instances ``rows`` ``(B, 1)`` that take the fallback; ``fallback`` is
        T(x) at the given α, already computed by the step."""

        def nonsmooth(z: Tensor) -> Tensor:
            return (ctx.l1 * ctx.nonsmooth_point(z).abs()).sum(-1, keepdim=True)

        smooth = current - nonsmooth(x)
        for attempt in range(MAX_HALVINGS):
            if attempt:
                fallback = ctx.prox(x - alpha * grad, alpha)
            d = fallback - x
            bound = smooth + instance_dot(grad, d) + instance_dot(d, d) / (2 * alpha)
            value = ctx.objective(fallback)[:, None] - nonsmooth(fallback)
            failed = rows & ~(value <= bound + 1e-12 * (bound.abs() + 1.0))
            if not bool(failed.any()):
                break
            alpha = torch.where(failed, alpha / 2, alpha)
        return fallback, alpha
