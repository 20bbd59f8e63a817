"""Parity of the classical baselines with the official GoMathL2O code: its Adam and Adam-HD
(``optimizers/adam.py``, ``adam_hd.py``) on the LASSO golden problem, replayed by l2o's
``AdamRule`` / ``AdamHDRule`` with the same settings (``scripts/make_parity_goldens.py``
writes the ``baseline_*`` goldens). The official Adam-HD shares one step size over its
batch, so its cases have a batch of one, where the two definitions agree."""

from __future__ import annotations

import pytest
import torch

from l2o.eval import classical_baselines
from l2o.rules import AdamHDRule, AdamRule, StepContext
from tests.parity.test_official_parity import assert_close, instances_of, load_case, replay


def rule_for(meta: dict, **overrides):
    options = meta["options"]
    betas = (options["momentum1"], options["momentum2"])
    if meta["model"] == "Adam":
        return AdamRule(**{"lr": meta["step_size"], "betas": betas, "eps": options["eps"], **overrides})
    return AdamHDRule(**{"lr": meta["step_size"], "hypergrad_lr": options["hyper_step"], "betas": betas,
                         "eps": options["eps"], "min_lr": 1e-8, **overrides})


CASES = ["baseline_adam", "baseline_adamhd", "baseline_adamhd_floor"]


@pytest.mark.parametrize("case", CASES)
def test_baseline_trajectory_equals_the_official_code(case):
    tensors, meta = load_case(case)
    meta = {**meta, "objective": "mean"}
    with torch.no_grad():
        points, _ = replay(rule_for(meta), tensors, meta, steps=tensors["trajectory"].shape[0] - 1)
    assert_close(points, tensors["trajectory"], case)


@pytest.mark.parametrize("case, overrides", [
    ("baseline_adamhd", {"hypergrad_lr": 0.0}),           # no hypergradient: plain Adam
    ("baseline_adamhd_floor", {"hypergrad_lr": 1e-2}),    # another β
    ("baseline_adam", {"betas": (0.9, 0.999)}),           # torch's default betas, not the official ones
])
def test_a_changed_baseline_fails_parity(case, overrides):
    tensors, meta = load_case(case)
    meta = {**meta, "objective": "mean"}
    with torch.no_grad():
        points, _ = replay(rule_for(meta, **overrides), tensors, meta, steps=tensors["trajectory"].shape[0] - 1)
    with pytest.raises(AssertionError):
        assert_close(points, tensors["trajectory"], case)


def test_the_floor_case_reaches_the_official_floor():
    """In ``baseline_adamhd_floor`` the large β drives α down to the official floor 1e-8, so
    the parity above covers the clamp (a floor of 0 would differ by only 1e-8 per step)."""
    tensors, meta = load_case("baseline_adamhd_floor")
    instances = instances_of(tensors, meta)
    rule, ctx = rule_for(meta).double(), StepContext.for_instances(instances)
    x = instances.x0()
    state = rule.init_state(x, ctx)
    floors = []
    with torch.no_grad():
        for _ in range(10):
            x, state = rule.step(x, instances.grad(x), state, ctx)
            floors.append(bool((state["alpha"] == 1e-8).all()))
    assert any(floors)


def test_the_reported_baselines_use_the_official_settings():
    baselines = classical_baselines()
    adam, adam_hd = baselines["Adam"], baselines["Adam-HD"]
    assert (adam.lr, adam.betas, adam.eps) == (1e-2, (0.1, 0.1), 1e-8)
    assert (adam_hd.lr, adam_hd.betas, adam_hd.hypergrad_lr, adam_hd.min_lr, adam_hd.hypergrad) == \
        (0.1, (0.001, 0.1), 1e-7, 1e-8, "additive")
