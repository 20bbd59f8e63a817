"""GPU paths: run only where CUDA is present (skipped on CPU-only machines)."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from l2o.eval import rollout
from l2o.eval.rollout import unroll
from l2o.meta import MetaTrainer, ProblemDataModule
from l2o.optim import LearnedOptimizer
from l2o.rules import FISTARule, GoMathRule, NTKGDRule, StepContext, build_rule
from problems import LassoFamily

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_instances_and_rules_match_the_cpu_on_cuda():
    torch.manual_seed(0)
    rule = GoMathRule().double()
    cpu = LassoFamily.toy().sample(8, seed=1, dtype=torch.float64)
    gpu = LassoFamily.toy().sample(8, seed=1, device="cuda", dtype=torch.float64)
    torch.testing.assert_close(gpu.A.cpu(), cpu.A, rtol=0, atol=0)
    torch.testing.assert_close(gpu.optimum().cpu(), cpu.optimum(), rtol=1e-9, atol=1e-12)
    for method in (FISTARule(), rule, copy.deepcopy(rule).compile_kernels(), NTKGDRule(init="random").double()):
        expected = rollout(method.to("cpu"), cpu, 30).objective
        got = rollout(method.to("cuda"), gpu, 30).objective.cpu()
        torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-10)


def test_learned_optimizer_steps_cuda_parameters():
    model = torch.nn.Linear(16, 4).cuda()
    optimizer = LearnedOptimizer(model.parameters(), rule=GoMathRule().cuda(), lr=1e-2)
    data = torch.randn(32, 16, device="cuda")
    first = None
    for _ in range(20):
        optimizer.zero_grad()
        loss = model(data).pow(2).mean()
        loss.backward()
        optimizer.step()
        first = float(loss) if first is None else first
    assert float(loss) < first


def test_meta_training_on_gpu(tmp_path):
    data = ProblemDataModule(family="lasso", family_params={"m": 10, "n": 20, "sparsity": 2},
                             batch_size=8, steps_per_epoch=2, val_batch_size=8)
    model = MetaTrainer(rule="gomath", horizon=10, unroll=5, val_steps=10)
    L.Trainer(max_epochs=1, accelerator="gpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, default_root_dir=tmp_path).fit(model, data)
    assert next(model.rule.parameters()).is_cuda


@pytest.mark.parametrize("name", ["gomath", "mathl2o", "ntk_gd"])
def test_unroll_makes_no_host_device_sync(name):
    torch.manual_seed(0)
    rule = build_rule(name).cuda()
    instances = LassoFamily.toy().sample(8, seed=0, device="cuda")
    ctx = StepContext.for_instances(instances)  # the eigensolver for L syncs; it runs once, before
    x = instances.x0()
    state = rule.init_state(x, ctx)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, state in unroll(rule, instances, 5, x=x, state=state, ctx=ctx):
            instances.objective(rule.iterate(x, state))
    finally:
        torch.cuda.set_sync_debug_mode(0)
