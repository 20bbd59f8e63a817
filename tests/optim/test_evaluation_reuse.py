"""Evaluation reuse (``RuleOptimizer``): a trial evaluation at the point a step ends on is
the next ``step(closure)``'s, so an accepted safeguard check or line-search trial costs no
second closure call; results are the same as without reuse, bit for bit."""

from __future__ import annotations

import torch

from l2o.optim import LearnedOptimizer


def _problem(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    A = torch.randn(40, 10, generator=generator, dtype=torch.float64)
    b = torch.randn(40, generator=generator, dtype=torch.float64)
    return A, b


def _run(make, steps: int, reuse: bool, edit_at: int | None = None) -> tuple[list[float], int]:
    A, b = _problem()
    torch.manual_seed(0)  # the LSTM rules' initial state
    w = torch.nn.Parameter(torch.zeros(10, dtype=torch.float64))
    optimizer = make([w])
    optimizer.reuse_evaluations = reuse
    calls = 0

    def closure():
        nonlocal calls
        calls += 1
        optimizer.zero_grad()
        loss = 0.5 * (A @ w - b).pow(2).sum()
        loss.backward()
        return loss
    losses = []
    for k in range(steps):
        if k == edit_at:
            with torch.no_grad():
                w.mul_(0.5)  # the user moves the parameters: nothing recorded may be reused
        losses.append(float(optimizer.step(closure)))
    return losses, calls


def test_a_safeguarded_drop_in_costs_one_closure_call_per_accepted_step_and_the_same_trajectory():
    make = lambda p: LearnedOptimizer(p, rule="gomath-lasso-toy")  # noqa: E731 - safeguarded by default
    reused, calls = _run(make, 30, reuse=True)
    plain, plain_calls = _run(make, 30, reuse=False)
    assert reused == plain
    assert plain_calls >= 60 and calls <= plain_calls - 25, (calls, plain_calls)


def test_the_learned_lbfgs_reuses_its_accepted_line_search_trials():
    make = lambda p: LearnedOptimizer(p, rule="lbfgs-least-squares")  # noqa: E731
    losses, calls = _run(make, 30, reuse=True)
    plain, plain_calls = _run(make, 30, reuse=False)
    assert losses == plain and all(b <= a for a, b in zip(losses, losses[1:]))
    assert calls == plain_calls - 29, (calls, plain_calls)  # every step after the first reused its trial


def test_parameters_changed_between_steps_are_evaluated_afresh():
    make = lambda p: LearnedOptimizer(p, rule="gomath-lasso-toy")  # noqa: E731
    edited, _ = _run(make, 12, reuse=True, edit_at=6)
    reference, _ = _run(make, 12, reuse=False, edit_at=6)
    assert edited == reference  # a stale reuse would report the loss before the edit
