"""Run an optimizer on a batch of problem instances and record its trajectory."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.optim import Optimizer

from l2o.optim.base import RuleOptimizer
from l2o.optim.malloc import pin_malloc_thresholds
from l2o.rules.base import State, StepContext, UpdateRule
from problems.base import Instances

OptimizerFactory = Callable[[list[dict]], Optimizer]
Method = UpdateRule | OptimizerFactory


@dataclasses.dataclass
class Trajectory:
    """Objective values along a run.

    Attributes:
        objective: ``(T + 1, B)`` F at the reported iterate, k = 0 … T.
        final: ``(B, n)`` the last reported iterate.
        state: the rule's final state (rules only; e.g. a safeguard's ``fallbacks``).
        seconds: ``(T + 1,)`` wall-clock seconds from the start of the run to each reported
            iterate (0 at k = 0), the objective evaluations that record the curve included.
    """

    objective: Tensor
    final: Tensor
    state: State | None = None
    seconds: Tensor | None = None


class StepClock:
    """Cumulative wall seconds at each recorded iterate (synchronizing CUDA first, so that
    queued kernels count where they run)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.start = self._now()
        self.marks = [0.0]

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def tick(self) -> None:
        self.marks.append(self._now() - self.start)

    def seconds(self) -> Tensor:
        return torch.tensor(self.marks, dtype=torch.float64)


def pin_malloc_above_state(x: Tensor, state: State) -> None:
    """On the CPU, pins glibc's malloc thresholds above the largest of ``x`` and the state's
    tensors (:func:`~l2o.optim.malloc.pin_malloc_thresholds`): every step returns a new state,
    and above the thresholds each would be page-faulted in afresh (a GoMathL2O network step on
    1000 paper LASSO instances took 119 ms unpinned and 47 ms pinned, scratch timing)."""
    if x.device.type == "cpu":
        pin_malloc_thresholds(max([x.nbytes] + [v.nbytes for v in state.values() if torch.is_tensor(v)]))


def unroll(
    rule: UpdateRule, instances: Instances, steps: int, x: Tensor | None = None,
    state: State | None = None, ctx: StepContext | None = None,
) -> Iterator[tuple[Tensor, State]]:
    """Yield ``(x_k, state_k)`` for k = 1 … ``steps`` of ``rule`` on ``instances``.

    Differentiable when run with grad enabled (meta-training); ``x``, ``state`` and
    ``ctx`` default to the instances' start, the rule's initial state and
    ``StepContext.for_instances(instances)`` (pass it to avoid recomputing L). Pins glibc's
    malloc thresholds above the state (:func:`pin_malloc_above_state`), which does nothing
    inside a ``torch.compile`` trace: :class:`~l2o.meta.MetaTrainer` pins them in
    ``training_step``, before its compiled segments.
    """
    for x, state, _ in _unrolled(rule, instances, steps, x, state, ctx, objectives=False):
        yield x, state


def unroll_objectives(
    rule: UpdateRule, instances: Instances, steps: int, x: Tensor | None = None,
    state: State | None = None, ctx: StepContext | None = None,
) -> Iterator[tuple[Tensor, State, Tensor]]:
    """:func:`unroll` that also yields ``F`` ``(B,)`` at the reported iterate
    (:meth:`~l2o.rules.UpdateRule.iterate`) of each step.

    Where that iterate is ``x_k`` itself (every rule but FISTA's), one
    ``instances.objective_and_grad(x_k)`` gives ``F(x_k)`` and the gradient that the next step
    takes: for least squares one pass over ``A`` forward and one backward
    (:func:`problems.linalg.normal_product`), where an objective and a gradient took two each.
    """
    yield from _unrolled(rule, instances, steps, x, state, ctx, objectives=True)


def _unrolled(rule: UpdateRule, instances: Instances, steps: int, x: Tensor | None, state: State | None,
              ctx: StepContext | None, objectives: bool) -> Iterator[tuple[Tensor, State, Tensor | None]]:
    ctx = StepContext.for_instances(instances) if ctx is None else ctx
    x = instances.x0() if x is None else x
    instances.check_point(x)
    state = rule.init_state(x, ctx) if state is None else state
    pin_malloc_above_state(x, state)
    grad = None  # ∇f(x), when the last objective's evaluation gave it
    for _ in range(steps):
        if rule.uses_gradient and grad is None:
            grad = instances.grad(x)
        x, state = rule.step(x, grad, state, ctx)
        value = grad = None
        if objectives:
            point = rule.iterate(x, state)
            if point is x and rule.uses_gradient:
                value, grad = instances.objective_and_grad(x)
            else:
                value = instances.objective(point)
        yield x, state, value


def rollout(method: Method, instances: Instances, steps: int, differentiable: bool = False,
            seed: int = 0) -> Trajectory:
    """Run ``method`` for ``steps`` iterations from ``instances.x0()``.

    Args:
        method: an :class:`~l2o.rules.UpdateRule` (batched, fast), or a factory
            ``make_optimizer(param_groups) -> torch.optim.Optimizer``. The factory gets one
            group per instance, ``{"params": [x_b], "l1": λ_b, "lipschitz": L_b}``, and
            the closure returns the summed smooth losses; so its optimizer must honour
            ``l1`` on composite problems (every ``l2o.optim`` optimizer does).
        instances: the batch.
        steps: number of iterations T >= 0.
        differentiable: keep the autograd graph (rules only).
        seed: seeds the rule's random initial state (``StepContext.generator``), so a
            rollout gives the same numbers whatever torch's global random state.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if isinstance(method, UpdateRule):
        grad_mode = contextlib.nullcontext() if differentiable else torch.no_grad()
        with grad_mode:
            return _rollout_rule(method, instances, steps, seed)
    if differentiable:
        raise ValueError("differentiable rollouts need an UpdateRule, not an optimizer")
    return _rollout_optimizer(method, instances, steps)


def _rollout_rule(rule: UpdateRule, instances: Instances, steps: int, seed: int) -> Trajectory:
    x = instances.x0()
    ctx = dataclasses.replace(StepContext.for_instances(instances), generator=torch.Generator().manual_seed(seed))
    clock = StepClock(x.device)
    values = [instances.objective(x)]
    final, state = x, None
    for x, state, value in unroll_objectives(rule, instances, steps, x=x, ctx=ctx):
        final = rule.iterate(x, state)
        values.append(value)
        clock.tick()
    return Trajectory(torch.stack(values), final, state, clock.seconds())


def _rollout_optimizer(factory: OptimizerFactory, instances: Instances, steps: int) -> Trajectory:
    if instances.is_composite and instances.objective_shift is not None:
        raise ValueError(
            "an optimizer's param groups carry λ but not an objective shift t, so it cannot "
            "take the proximal step of λ||x + t||_1: roll out the UpdateRule instead"
        )
    start = instances.x0()
    params = [start[b].clone().requires_grad_(True) for b in range(instances.batch_size)]
    lipschitz = instances.lipschitz().tolist()
    l1 = instances.l1.tolist()
    groups = [
        {"params": [p], "l1": l1[b], "lipschitz": lipschitz[b]} for b, p in enumerate(params)
    ]
    optimizer = factory(groups)
    if instances.is_composite and "l1" not in optimizer.defaults:
        raise ValueError(
            f"{type(optimizer).__name__} has no 'l1' option, so it cannot handle the "
            "nonsmooth part of these composite instances"
        )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = instances.f(torch.stack(params)).sum()
        loss.backward()
        return loss

    def reported() -> Tensor:
        points = optimizer.iterates() if isinstance(optimizer, RuleOptimizer) else params
        return torch.stack([p.detach() for p in points])

    clock = StepClock(start.device)
    with torch.no_grad():
        values = [instances.objective(reported())]
    for _ in range(steps):
        optimizer.step(closure)
        with torch.no_grad():
            values.append(instances.objective(reported()))
        clock.tick()
    return Trajectory(torch.stack(values), reported(), seconds=clock.seconds())
