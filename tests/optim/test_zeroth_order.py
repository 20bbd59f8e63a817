"""ZOOptimizer: closure-only, exact in-place restore, trains without backward, contract."""

from __future__ import annotations

import copy

import pytest
import torch

from l2o.optim import ZOOptimizer
from problems.real_data import iris


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))


def _bits(model) -> list[torch.Tensor]:
    return [p.detach().view(torch.int32).clone() for p in model.parameters()]


def _loss_closure(model):
    features, labels = iris()
    features, labels = features.float(), (labels > 0).float()

    def closure():
        return torch.nn.functional.binary_cross_entropy_with_logits(model(features).squeeze(-1), labels)
    return closure


@pytest.mark.parametrize("aggregator", ["avg", "align"])
def test_constant_closure_changes_no_parameter(aggregator):
    model = _model()
    before = _bits(model)
    optimizer = ZOOptimizer(model.parameters(), lr=0.1, q=3, aggregator=aggregator, seed=0)
    for _ in range(3):
        assert optimizer.step(lambda: 1.5) == 1.5
    assert all(torch.equal(a, b) for a, b in zip(before, _bits(model)))


@pytest.mark.parametrize("scheme", ["central", "forward"])
def test_perturbations_are_restored_bit_for_bit(scheme):
    """Inside the closure the parameters are perturbed; after every evaluation they are
    exactly the originals again (checked at each call), although (p + a) - a != p for some
    elements in float32 (tiny weights are included on purpose)."""
    model = _model()
    with torch.no_grad():
        model[0].weight[0, :2] = torch.tensor([1e-7, -3e-9])
        model[0].bias.zero_()
    original = _bits(model)
    seen = []

    def closure():  # a constant loss: the step itself changes nothing, only the probes do
        seen.append(not all(torch.equal(a, b) for a, b in zip(original, _bits(model))))
        return 0.25

    optimizer = ZOOptimizer(model.parameters(), lr=0.1, q=4, mu=1e-2, seed=1, scheme=scheme)
    optimizer.step(closure)
    assert seen.count(True) == (8 if scheme == "central" else 4)  # every probe saw perturbed parameters
    assert optimizer.last_restore_log > 0  # naive add/sub would not have restored some elements
    assert all(torch.equal(a, b) for a, b in zip(original, _bits(model)))


@pytest.mark.parametrize("aggregator", ["avg", "align"])
@pytest.mark.parametrize("lr", [0.05, None], ids=["lr", "no-lr"])
def test_trains_a_small_model_without_ever_calling_backward(aggregator, lr):
    """One lr for both aggregators (their estimates have the same scale), or none at all."""
    model = _model()
    closure = _loss_closure(model)
    start = closure().item()
    optimizer = ZOOptimizer(model.parameters(), lr=lr, q=8, aggregator=aggregator, seed=0)
    for _ in range(300):
        optimizer.step(closure)
    final = closure().item()
    assert final < 0.5 * start and final < 0.35, (start, final)
    assert all(p.grad is None for p in model.parameters())


def test_closure_that_calls_backward_is_refused():
    model = _model()
    features, _ = iris()

    def closure():
        loss = model(features.float()).sum()
        loss.backward()
        return loss

    with pytest.raises(RuntimeError):
        ZOOptimizer(model.parameters(), lr=0.1, seed=0).step(closure)


def test_state_dict_round_trip_continues_identically():
    model = _model()
    optimizer = ZOOptimizer(model.parameters(), lr=0.05, q=2, aggregator="align", seed=3)
    closure = _loss_closure(model)
    for _ in range(4):
        optimizer.step(closure)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    for _ in range(4):
        optimizer.step(closure)
    expected = _bits(model)
    fresh = _model(seed=9)
    fresh.load_state_dict(saved_model)
    restored = ZOOptimizer(fresh.parameters(), lr=0.05, q=2, aggregator="align", seed=123)
    restored.load_state_dict(saved_optimizer)  # the seed and step come back with the state
    fresh_closure = _loss_closure(fresh)
    for _ in range(4):
        restored.step(fresh_closure)
    assert all(torch.equal(a, b) for a, b in zip(expected, _bits(fresh)))


def test_param_groups_lr_and_frozen_parameters():
    model = _model()
    model[0].bias.requires_grad_(False)
    frozen = model[0].bias.detach().clone()
    head = model[2].weight.detach().clone()
    optimizer = ZOOptimizer([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.0 + 1e-12}],
                            lr=0.1, q=2, seed=0)
    optimizer.step(_loss_closure(model))
    assert torch.equal(model[0].bias, frozen)
    assert (model[2].weight - head).abs().max() < 1e-9 and optimizer.param_groups[1]["lr"] == 1e-12


@pytest.mark.parametrize("kwargs", [{"lr": 0.0}, {"lr": float("nan")}, {"lr": "0.1"}, {"lr": 0.1, "q": 0},
                                    {"lr": 0.1, "mu": -1.0}, {"lr": 0.1, "aggregator": "median"},
                                    {"lr": 0.1, "scheme": "backward"}, {"scheme": "forward"}])
def test_invalid_hyperparameters_are_refused(kwargs):
    with pytest.raises((ValueError, KeyError)):
        ZOOptimizer(_model().parameters(), **kwargs)


def test_bad_closures_are_refused_and_lose_nothing():
    model = _model()
    before = _bits(model)
    optimizer = ZOOptimizer(model.parameters(), lr=0.1, q=2, seed=0)
    with pytest.raises(ValueError, match="closure"):
        optimizer.step()
    with pytest.raises(ValueError, match="non-finite"):
        optimizer.step(lambda: float("nan"))
    assert all(torch.equal(a, b) for a, b in zip(before, _bits(model)))
    with pytest.raises(ValueError, match="real floating-point"):
        ZOOptimizer([torch.zeros(2, dtype=torch.complex64, requires_grad=True)], lr=0.1)


def test_learned_aggregator_from_the_zoo_drives_the_optimizer():
    from l2o import zoo

    name = next(n for n in zoo.list() if n.startswith("zo"))
    model = _model()
    closure = _loss_closure(model)
    start = closure().item()
    optimizer = ZOOptimizer(model.parameters(), lr=0.2, q=8, aggregator=name, seed=0)
    for _ in range(100):
        optimizer.step(closure)
    assert closure().item() < 0.8 * start
    with pytest.raises(ValueError, match="not a learned ZO aggregator"):
        ZOOptimizer(model.parameters(), lr=0.1, aggregator="gomath-lasso-toy")


def _quadratic(dim: int = 30, seed: int = 0):
    """``f(w) = ½ wᵀ H w − bᵀ w`` as a closure over a parameter, with its H's eigenvalues."""
    generator = torch.Generator().manual_seed(seed)
    Q = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64)).Q
    eigenvalues = torch.logspace(-1, 1, dim, dtype=torch.float64)
    H, b = Q @ torch.diag(eigenvalues) @ Q.T, torch.randn(dim, generator=generator, dtype=torch.float64)
    w = torch.nn.Parameter(torch.zeros(dim, dtype=torch.float64))
    optimum = float(-0.5 * b @ torch.linalg.solve(H, b))
    return w, (lambda: (0.5 * w @ H @ w - b @ w).detach()), eigenvalues, optimum


@pytest.mark.parametrize("aggregator", ["avg", "align"])
def test_without_lr_the_measured_curvature_is_a_lower_bound_of_l_and_it_converges(aggregator):
    w, closure, eigenvalues, optimum = _quadratic()
    optimizer = ZOOptimizer([w], q=6, aggregator=aggregator, seed=0)
    start = float(closure())
    estimates = []
    for _ in range(500):
        optimizer.step(closure)
        estimates.append(optimizer.curvature)
    assert all(0 < a <= b for a, b in zip(estimates, estimates[1:])), "a running maximum"
    assert estimates[-1] <= float(eigenvalues.max()) * (1 + 1e-6), "Rayleigh quotients never exceed L"
    assert estimates[-1] >= float(eigenvalues.mean()), "and it finds more than the mean curvature"
    assert float(closure()) - optimum < 1e-2 * (start - optimum)


def test_without_lr_the_step_measures_f_and_verifies_the_step_and_returns_f():
    w, closure, _, _ = _quadratic(dim=5)
    calls = []

    def counted():
        calls.append(1)
        return closure()
    optimizer = ZOOptimizer([w], q=3, seed=0)
    loss = optimizer.step(counted)
    assert len(calls) == 2 * 3 + 2 and loss == 0.0  # f(0) = 0 exactly, not the O(μ²) mean
    with_lr = ZOOptimizer([w], lr=0.1, q=3, seed=0)
    calls.clear()
    with_lr.step(counted)
    assert len(calls) == 2 * 3


def test_the_measured_curvature_survives_a_state_dict_round_trip():
    w, closure, _, _ = _quadratic(dim=8)
    optimizer = ZOOptimizer([w], q=2, seed=0)
    for _ in range(3):
        optimizer.step(closure)
    restored = ZOOptimizer([w], q=2, seed=1)
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    assert restored.curvature == optimizer.curvature > 0


def test_a_group_with_its_own_lr_keeps_it_while_the_others_use_the_curvature():
    model = _model()
    head_before = model[2].weight.detach().clone()
    optimizer = ZOOptimizer([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 1e-12}],
                            q=2, seed=0)
    first_before = model[0].weight.detach().clone()
    for _ in range(5):  # a first trial may be undone (verified steps)
        optimizer.step(_loss_closure(model))
    assert (model[2].weight - head_before).abs().max() < 1e-9
    assert (model[0].weight - first_before).abs().max() > 1e-6


def test_without_lr_a_step_that_does_not_decrease_f_is_undone_bit_for_bit_and_the_next_is_halved():
    """A loss that is linear along every direction measures (almost) no curvature, so the
    first curvature step is far too long: the verified step undoes it exactly."""
    w = torch.nn.Parameter(torch.zeros(50, dtype=torch.float64))
    slope = torch.linspace(-1, 1, 50, dtype=torch.float64)

    def closure():  # linear near 0, a steep wall beyond |w| = 0.5
        return (slope @ w + 1e3 * torch.relu(w.abs() - 0.5).pow(2).sum()).detach()
    optimizer = ZOOptimizer([w], q=2, seed=0)
    before = w.detach().clone()
    optimizer._meta["curvature"] = 1e-9  # as if the first steps had measured only noise
    optimizer.step(closure)
    assert torch.equal(w.detach(), before) and optimizer.curvature == 2e-9
    values = [float(closure())]
    for _ in range(60):
        optimizer.step(closure)
        values.append(float(closure()))
    assert all(b <= a for a, b in zip(values, values[1:])) and values[-1] < values[0] - 1.0
