"""The GoMathL2O paper's objective shift F(x) = F₀(x + t): the shifted problem, and the
rules that must (ProxGD, FISTA, GoMathL2O: gradient features only) or must not (Math-L2O,
which feeds the iterate itself) be equivariant to it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from l2o.eval.rollout import rollout
from l2o.optim import FISTA
from l2o.rules import FISTARule, GoMathRule, MathL2ORule, ProxGDRule
from l2o.rules.base import StepContext
from problems import FAMILIES, LassoFamily, ShiftedInstances

SHIFT = 10.0


@pytest.fixture
def pair():
    """The same LASSO batch unshifted and shifted by t = SHIFT."""
    family = LassoFamily.toy()
    return (family.sample(4, seed=3, dtype=torch.float64),
            family.shifted(objective_shift=SHIFT).sample(4, seed=3, dtype=torch.float64))


def test_shifted_problem_is_the_base_problem_moved_by_t(pair):
    base, shifted = pair
    assert isinstance(shifted, ShiftedInstances)
    x = torch.randn(base.batch_size, base.dim, dtype=torch.float64)
    torch.testing.assert_close(shifted.objective(x - SHIFT), base.objective(x))
    torch.testing.assert_close(shifted.grad(x - SHIFT), base.grad(x))
    torch.testing.assert_close(shifted.prox(x - SHIFT, 0.3), base.prox(x, 0.3) - SHIFT)
    torch.testing.assert_close(shifted.optimum(), base.optimum())
    torch.testing.assert_close(shifted.solution(), base.solution() - SHIFT)
    torch.testing.assert_close(shifted.x0(), base.x0())  # the start does not move
    torch.testing.assert_close(shifted.lipschitz(), base.lipschitz())


def test_shift_survives_dtype_and_device_moves(pair):
    moved = pair[1].to(dtype=torch.float32)
    assert isinstance(moved, ShiftedInstances) and moved.objective_shift.dtype == torch.float32
    torch.testing.assert_close(moved.objective(moved.solution()), moved.optimum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_takes_an_objective_shift(name):
    from tests.conftest import SMALL_FAMILIES

    base = SMALL_FAMILIES[name].sample(3, seed=1, dtype=torch.float64)
    shifted = SMALL_FAMILIES[name].shifted(objective_shift=-2.0).sample(3, seed=1, dtype=torch.float64)
    torch.testing.assert_close(shifted.solution(), base.solution() + 2.0)
    torch.testing.assert_close(shifted.optimum(), base.optimum())


def _start_moved_by(instances, t):
    return dataclasses.replace(instances, start=instances.start + t)


@pytest.mark.parametrize("make", [ProxGDRule, lambda: FISTARule(restart=True),
                                  lambda: GoMathRule(hidden_size=8)], ids=["ProxGD", "FISTA", "GoMathL2O"])
def test_gradient_only_rules_are_equivariant_to_the_objective_shift(pair, make):
    """On F₀(x + t) from x0, a rule that sees only gradients and the prox follows the
    trajectory of F₀ from x0 + t, moved by −t: the same objective values at every step."""
    base, shifted = pair
    rule = make()
    on_shifted = rollout(rule, shifted, 30)
    on_base = rollout(rule, _start_moved_by(base, SHIFT), 30)
    torch.testing.assert_close(on_shifted.objective, on_base.objective, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(on_shifted.final, on_base.final - SHIFT, rtol=1e-9, atol=1e-9)


def test_math_l2o_is_not_equivariant_to_the_objective_shift(pair):
    """Math-L2O feeds y_k itself to its LSTM, so the shift is an OOD input for it: this is
    what the paper's objective-shift experiment probes (and what makes the test above fail-able)."""
    base, shifted = pair
    rule = MathL2ORule(hidden_size=8)
    on_shifted = rollout(rule, shifted, 10).objective
    on_base = rollout(rule, _start_moved_by(base, SHIFT), 10).objective
    assert not torch.allclose(on_shifted, on_base, rtol=1e-6, atol=1e-6)


def test_fista_reaches_the_shifted_minimizer(pair):
    _, shifted = pair
    final = rollout(FISTARule(restart=True), shifted, 400).final
    torch.testing.assert_close(final, shifted.solution(), rtol=1e-6, atol=1e-6)


def test_context_prox_is_the_prox_of_the_shifted_l1(pair):
    _, shifted = pair
    ctx = StepContext.for_instances(shifted)
    z = torch.randn(shifted.batch_size, shifted.dim, dtype=torch.float64)
    torch.testing.assert_close(ctx.prox(z, 0.25), shifted.prox(z, 0.25))


def test_optimizer_rollout_refuses_a_shifted_composite_problem(pair):
    with pytest.raises(ValueError, match="objective shift"):
        rollout(lambda groups: FISTA(groups), pair[1], 3)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "10"])
def test_invalid_objective_shift_raises(value):
    with pytest.raises(ValueError, match="Invalid objective_shift"):
        LassoFamily.toy(objective_shift=value)
