"""The evaluations run a rule's network as trained (float32) on float64 instances: it must reach
the tolerance when the float64 copy (``in_double``) does, with float64 iterates."""

from __future__ import annotations

import pytest
import torch

from l2o import zoo
from l2o.eval import in_double, rollout
from l2o.eval.metrics import iterations_to, relative_suboptimality
from l2o.eval.ood import plan_ood
from l2o.meta.data import make_family
from l2o.rules import SafeguardedRule

ENTRIES = ["gomath-lasso-toy", "mathl2o-lasso-toy", "bfgs-least-squares", "gomath-logistic-estimated-l"]


def iterations(rule, instances, steps: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """Iterations to 1e-4 per instance ``(B,)`` and the final iterate ``(B, n)``."""
    trajectory = rollout(rule, instances, steps)
    curve = relative_suboptimality(trajectory.objective, instances.optimum())
    return iterations_to(curve, 1e-4), trajectory.final


@pytest.mark.parametrize("safeguarded", [False, True], ids=["plain", "safeguarded"])
@pytest.mark.parametrize("name", ENTRIES)
def test_a_float32_network_on_float64_instances_reaches_the_tolerance_as_its_float64_copy(name, safeguarded):
    entry = zoo.load(name)
    training = entry.card["training"]
    instances = make_family(training["family"], training["family_params"]).sample(16, seed=10_000, dtype=torch.float64)
    wrap = SafeguardedRule if safeguarded else (lambda rule: rule)
    as_trained, as_trained_final = iterations(wrap(entry.rule.eval()), instances)
    double, _ = iterations(wrap(in_double(entry.rule).eval()), instances)
    assert next(entry.rule.parameters()).dtype == torch.float32
    assert as_trained_final.dtype == torch.float64
    assert torch.isfinite(double).all(), "the float64 copy must reach 1e-4 for the comparison to mean anything"
    assert torch.equal(torch.isfinite(as_trained), torch.isfinite(double))
    assert (as_trained - double).abs().max() <= 2, (as_trained, double)  # rounding moves a crossing by a step


def test_eval_ood_runs_the_networks_as_trained():
    (planned,) = plan_ood(["gomath-lasso-toy"])
    rule = planned.methods["gomath-lasso-toy"]
    assert next(rule.parameters()).dtype == torch.float32
