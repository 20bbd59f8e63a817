"""What a real training loop does to an optimizer: copies, schedulers, lr edge cases,
precision, AMP, atomic steps (issue 14). Each test failed before the fix it names."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, StepLR

from l2o.optim import FISTA, SGDHD, AdamHD, LearnedOptimizer, ProxGD, ZOOptimizer
from l2o.rules import AdamRule, FISTARule

# name -> a constructor over params for the most-used configuration of each optimizer
MAKERS = {
    "ProxGD(lipschitz)": lambda p: ProxGD(p, lipschitz=20.0, l1=1e-3),
    "FISTA(lipschitz)": lambda p: FISTA(p, lipschitz=20.0, restart=True),
    "SGDHD": lambda p: SGDHD(p, lr=0.05),
    "AdamHD": lambda p: AdamHD(p, lr=1e-2),
    "Learned(gomath, lipschitz)": lambda p: LearnedOptimizer(p, rule="gomath-lasso-toy", lipschitz=20.0),
    "Learned(safeguard)": lambda p: LearnedOptimizer(p, rule="gomath-lasso-toy", lr=0.05, safeguard=True),
    "ZO(align)": lambda p: ZOOptimizer(p, lr=1e-2, q=2, aggregator="align", seed=3),
    "Learned(bfgs)": lambda p: LearnedOptimizer(p, rule="bfgs-least-squares", lr=0.05),
}


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()


def _closure(model, optimizer, backward: bool = True):
    generator = torch.Generator().manual_seed(42)
    data = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    target = torch.randn(16, 2, generator=generator, dtype=torch.float64)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data), target)
        if backward and not isinstance(optimizer, ZOOptimizer):
            loss.backward()
        return loss
    return closure


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _train(make, steps: int = 5, scheduler=None, model=None):
    model = model or _model()
    optimizer = make(model.parameters())
    schedule = scheduler(optimizer) if scheduler else None
    for _ in range(steps):
        optimizer.step(_closure(model, optimizer))
        if schedule:
            schedule.step()
    return model, optimizer


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_optimizer_steps_exactly_like_the_original(name, how):
    model, optimizer = _train(MAKERS[name], steps=3)
    pair = (model, optimizer)  # copied together, so the copy's params are its model's
    twin_model, twin = copy.deepcopy(pair) if how == "deepcopy" else pickle.loads(pickle.dumps(pair))
    optimizer.step(_closure(model, optimizer))
    twin.step(_closure(twin_model, twin))
    torch.testing.assert_close(_flat(twin_model), _flat(model), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["ProxGD(lipschitz)", "FISTA(lipschitz)", "Learned(gomath, lipschitz)", "SGDHD",
                                  "AdamHD", "Learned(safeguard)", "Learned(bfgs)"])
@pytest.mark.parametrize("schedule", [lambda o: StepLR(o, step_size=2, gamma=0.1),
                                      lambda o: CosineAnnealingLR(o, T_max=4)], ids=["StepLR", "Cosine"])
def test_schedulers_drive_the_step(name, schedule):
    """The scheduled lr is a number (also when only lipschitz was given) and it changes
    the run: a schedule that shrinks lr moves the weights less than no schedule."""
    start = _flat(_model())
    scheduled, optimizer = _train(MAKERS[name], steps=6, scheduler=schedule)
    assert all(isinstance(g["lr"], float) for g in optimizer.param_groups)
    constant, _ = _train(MAKERS[name], steps=6)
    assert not torch.equal(_flat(scheduled), _flat(constant))
    assert (_flat(scheduled) - start).norm() < (_flat(constant) - start).norm()


@pytest.mark.parametrize("name", ["ProxGD(lipschitz)", "FISTA(lipschitz)", "Learned(gomath, lipschitz)", "SGDHD",
                                  "AdamHD", "Learned(safeguard)"])
def test_a_group_at_lr_zero_takes_a_no_op_step(name):
    model, optimizer = _train(MAKERS[name], steps=2)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    before = _flat(model)
    state = copy.deepcopy(optimizer.state_dict())
    optimizer.step(_closure(model, optimizer))
    assert torch.equal(_flat(model), before)
    after = optimizer.state_dict()["state"]
    assert all(torch.equal(after[k]["step"], v["step"]) for k, v in state["state"].items() if "step" in v)


@pytest.mark.parametrize("make", [lambda p, lr: ProxGD(p, lr=lr), lambda p, lr: SGDHD(p, lr=lr),
                                  lambda p, lr: LearnedOptimizer(p, rule="gomath-lasso-toy", lr=lr)],
                         ids=["ProxGD", "SGDHD", "Learned"])
def test_a_0_dim_tensor_lr_is_its_value(make):
    as_tensor, _ = _train(lambda p: make(p, torch.tensor(0.05, dtype=torch.float64)))
    as_float, _ = _train(lambda p: make(p, 0.05))
    torch.testing.assert_close(_flat(as_tensor), _flat(as_float), rtol=0, atol=0)


def test_a_tensor_lr_with_several_values_is_refused():
    with pytest.raises(ValueError, match="one real number"):
        ProxGD(_model().parameters(), lr=torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("make", [SGDHD, AdamHD], ids=["SGDHD", "AdamHD"])
def test_hypergradient_defaults_converge_on_rosenbrock(make):
    """PyTorch's generic optimizer tests minimize Rosenbrock from (1.5, 1.5); the old
    additive SGDHD default diverged there to a FloatingPointError."""
    xy = torch.nn.Parameter(torch.tensor([1.5, 1.5], dtype=torch.float64))
    optimizer = make([xy], lr=1e-3)

    def closure():
        optimizer.zero_grad()
        loss = (1 - xy[0]) ** 2 + 100 * (xy[1] - xy[0] ** 2) ** 2
        loss.backward()
        return loss
    first = float(closure())
    for _ in range(500):
        loss = optimizer.step(closure)
    assert torch.isfinite(xy).all() and float(loss) < 0.5 * first


@pytest.mark.parametrize("make", [SGDHD, AdamHD], ids=["SGDHD", "AdamHD"])
def test_a_tiny_lr_barely_moves_the_parameters(make):
    model = _model()
    start = _flat(model)
    _train(lambda p: make(p, lr=1e-28), steps=20, model=model)
    assert float((_flat(model) - start).abs().max()) < 1e-20


def test_integer_parameters_are_refused():
    with pytest.raises(ValueError, match="floating-point"):
        FISTA([torch.zeros(3, dtype=torch.int64)], lr=0.1)


@pytest.mark.parametrize("rule", ["gomath-lasso-toy", "mathl2o-lasso-toy", "bfgs-least-squares"])
def test_float64_parameters_get_float64_state(rule):
    model, optimizer = _train(lambda p: LearnedOptimizer(p, rule=rule, lr=0.05), steps=2)
    for slot in optimizer.state.values():
        assert {v.dtype for v in slot["rule_state"].values()} == {torch.float64}


def test_a_safeguarded_step_whose_closure_raises_restores_everything():
    """Two groups; the closure fails on the trial evaluation of the second group, after
    the first group has already moved: both groups and all state come back exactly."""
    model = _model()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    optimizer = LearnedOptimizer([{"params": first}, {"params": second}], rule="gomath-lasso-toy",
                                 lr=0.05, safeguard=True)
    closure = _closure(model, optimizer)
    optimizer.step(closure)
    before, state = _flat(model), copy.deepcopy(optimizer.state_dict())
    first_before, second_before = [p.detach().clone() for p in first], [p.detach().clone() for p in second]
    moved = lambda params, values: not all(torch.equal(p, v) for p, v in zip(params, values))  # noqa: E731

    def failing():  # fails on the second group's first trial point
        if moved(second, second_before):
            assert moved(first, first_before), "the first group has already moved"
            raise RuntimeError("data loader died")
        return closure()
    with pytest.raises(RuntimeError, match="data loader died"):
        optimizer.step(failing)
    assert torch.equal(_flat(model), before)
    restored = optimizer.state_dict()
    for key, slot in state["state"].items():
        for name, value in slot.items():
            if isinstance(value, dict):
                assert all(torch.equal(value[k], restored["state"][key][name][k]) for k in value)
    # and the optimizer goes on as if the failed step never happened
    optimizer.step(closure)


def _zo_loss(model):
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(8, 4, generator=generator, dtype=torch.float64)
    return lambda: model(data).pow(2).mean()


def test_zo_accepts_non_contiguous_parameters_and_restores_them_bit_for_bit():
    layer = torch.nn.Linear(4, 3).double()
    transposed = torch.nn.Parameter(layer.weight.detach().t())  # (4, 3), non-contiguous
    assert not transposed.is_contiguous()
    data = torch.randn(8, 3, dtype=torch.float64)
    before = transposed.detach().clone()
    optimizer = ZOOptimizer([transposed], lr=1e-2, q=3, aggregator="align", seed=0)
    seen = []

    def closure():
        seen.append(transposed.detach().clone())
        return (data @ transposed.T).pow(2).mean()
    optimizer.step(closure)
    assert any(not torch.equal(s, before) for s in seen)  # it was perturbed
    assert not torch.equal(transposed.detach(), before)  # and it moved
    # the same step on a contiguous copy of the same values takes a finite, different-layout step
    assert torch.isfinite(transposed).all()


@pytest.mark.parametrize("aggregator", ["avg", "align", "zo-least-squares"])
def test_zo_with_every_parameter_frozen_only_evaluates_the_closure(aggregator):
    model = _model()
    for p in model.parameters():
        p.requires_grad_(False)
    optimizer = ZOOptimizer(model.parameters(), lr=1e-2, aggregator=aggregator, seed=0)
    before = _flat(model)
    loss = optimizer.step(_zo_loss(model))
    assert torch.equal(_flat(model), before) and loss == pytest.approx(float(_zo_loss(model)()))


def test_zo_explains_that_it_needs_no_grad_scaler_and_changes_nothing():
    model = _model()
    optimizer = ZOOptimizer(model.parameters(), lr=1e-2, q=2, seed=5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    loss = _zo_loss(model)
    scaler.scale(loss())
    before = _flat(model)
    with pytest.raises(RuntimeError, match="needs no GradScaler"):
        scaler.step(optimizer, lambda: scaler.scale(loss()))
    assert torch.equal(_flat(model), before)


def test_zo_steps_under_autocast():
    model = _model().float()
    optimizer = ZOOptimizer(model.parameters(), lr=1e-2, q=2, seed=5)
    data = torch.randn(8, 4)

    def closure():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(data).pow(2).mean()
    before = _flat(model)
    assert torch.isfinite(torch.tensor(optimizer.step(closure)))
    assert not torch.equal(_flat(model), before)


def test_learned_rule_with_its_own_lr_keeps_working_with_a_scheduler():
    """A rule with its own step (Adam) under a scheduler: lr stays None, nothing breaks."""
    model = _model()
    optimizer = LearnedOptimizer(model.parameters(), rule=AdamRule(lr=1e-2))
    assert optimizer.param_groups[0]["lr"] is None
    optimizer.step(_closure(model, optimizer))


def test_fista_given_lipschitz_has_lr_one_over_l():
    optimizer = LearnedOptimizer(_model().parameters(), rule=FISTARule(), lipschitz=4.0)
    assert optimizer.param_groups[0]["lr"] == 0.25
