"""``unroll_objectives`` gives what ``unroll`` and an objective per step give, sharing the
gradient with the objective where the reported iterate is ``x_k``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from l2o.eval import unroll, unroll_objectives
from l2o.rules import FISTARule, GoMathRule
from l2o.rules.base import StepContext
from problems import LassoFamily


def seeded(instances) -> StepContext:
    """The context with a generator seeded alike for each run (the LSTM's random initial state)."""
    return dataclasses.replace(StepContext.for_instances(instances), generator=torch.Generator().manual_seed(0))


def counted(instances, name, calls):
    method = getattr(instances, name)

    def wrapper(x):
        calls[name] = calls.get(name, 0) + 1
        return method(x)

    setattr(instances, name, wrapper)


@pytest.mark.parametrize("rule_name", ["gomath", "fista"])
def test_unroll_objectives_equals_unroll_and_one_objective_per_step(rule_name):
    torch.manual_seed(0)
    rule = GoMathRule().double() if rule_name == "gomath" else FISTARule()
    instances = LassoFamily(m=150, n=120, sparsity=10).sample(4, seed=0, dtype=torch.float64)
    expected = [(x, instances.objective(rule.iterate(x, state))) for x, state in unroll(rule, instances, 6, ctx=seeded(instances))]
    calls = {}
    for name in ("grad", "objective", "objective_and_grad"):
        counted(instances, name, calls)
    got = [(x, value) for x, _, value in unroll_objectives(rule, instances, 6, ctx=seeded(instances))]
    assert len(got) == len(expected) == 6
    for (x, value), (x_expected, value_expected) in zip(got, expected):
        torch.testing.assert_close(x, x_expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(value, value_expected, rtol=1e-12, atol=1e-12)
    if rule_name == "gomath":  # the iterate is x_k: its gradient comes with its objective
        assert calls == {"grad": 1, "objective_and_grad": 6}
    else:  # FISTA reports x_k and steps from the extrapolated y_k
        assert calls == {"grad": 6, "objective": 6}


def test_unroll_objectives_is_differentiable_like_unroll():
    torch.manual_seed(0)
    rule = GoMathRule().double()
    instances = LassoFamily(m=150, n=120, sparsity=10).sample(2, seed=0, dtype=torch.float64)
    expected = torch.autograd.grad(
        sum(instances.objective(x).sum() for x, _ in unroll(rule, instances, 4, ctx=seeded(instances))), list(rule.parameters()))
    got = torch.autograd.grad(
        sum(value.sum() for _, _, value in unroll_objectives(rule, instances, 4, ctx=seeded(instances))), list(rule.parameters()))
    for grad, want in zip(got, expected):
        torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def test_a_compiled_unroll_reads_a_least_squares_batch_once_per_step():
    """Traced at a size that keeps the products opaque, ``unroll_objectives`` of a rule whose
    iterate is ``x_k`` holds one ``l2o::normal_product`` per step and the first gradient's, and
    no other product; values and meta-gradients equal eager."""
    from l2o.rules import ProxGDRule
    from problems import linalg

    instances = LassoFamily(m=128, n=128, sparsity=10).sample(2, seed=0, dtype=torch.float64)
    assert 128 * 128 >= linalg.OPAQUE_PRODUCT_ELEMENTS
    ctx = StepContext.for_instances(instances)
    rule = ProxGDRule()

    def objectives(x):
        return torch.stack([value for _, _, value in unroll_objectives(rule, instances, 5, x=x, ctx=ctx)])

    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    x = instances.x0().requires_grad_(True)
    eager = objectives(x)
    (eager_grad,) = torch.autograd.grad(eager.sum(), x)
    value = torch.compile(objectives, backend=backend, fullgraph=True)(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    torch.testing.assert_close(value, eager, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-12, atol=1e-12)
    targets = [str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"]
    assert sum("normal_product" in t for t in targets) == 6, targets
    assert not any("matvec" in t or "bmm" in t for t in targets), targets
