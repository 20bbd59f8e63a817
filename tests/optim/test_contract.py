"""The torch.optim contract, run over every optimizer in l2o.optim."""

from __future__ import annotations

import copy

import pytest
import torch

import l2o.optim
from l2o.eval import rollout
from l2o.optim import FISTA, ISTA, AdamHD, LearnedOptimizer, ProxGD, RuleOptimizer, SGDHD
from l2o.rules import AdamHDRule, AdamRule, FISTARule, ProxGDRule, SGDHDRule
from problems import LassoFamily, QuadraticFamily

# name -> (constructor taking params, a per-group override that changes the behaviour)
OPTIMIZERS = {
    "ProxGD": (lambda p, **kw: ProxGD(p, **{"lr": 0.05, "l1": 0.01, **kw}), {"lr": 0.01}),
    "FISTA": (lambda p, **kw: FISTA(p, **{"lr": 0.05, "restart": True, **kw}), {"lr": 0.01}),
    "SGDHD": (lambda p, **kw: SGDHD(p, **{"lr": 0.05, "hypergrad_lr": 1e-3, **kw}), {"lr": 0.01}),
    "AdamHD": (lambda p, **kw: AdamHD(p, **{"lr": 1e-2, "hypergrad_lr": 1e-4, **kw}), {"lr": 1e-3}),
    "Learned(Adam)": (lambda p, **kw: LearnedOptimizer(p, **{"rule": AdamRule(lr=1e-2), **kw}), {"l1": 0.5}),
    "Learned(FISTA)": (
        lambda p, **kw: LearnedOptimizer(p, **{"rule": FISTARule(lr=0.05), **kw}), {"l1": 0.5},
    ),
}


def test_every_public_optimizer_is_covered():
    public = {
        name for name in l2o.optim.__all__
        if isinstance(getattr(l2o.optim, name), type)
        and issubclass(getattr(l2o.optim, name), RuleOptimizer)
        and getattr(l2o.optim, name) is not RuleOptimizer
    }
    covered = {"ProxGD", "ISTA", "FISTA", "SGDHD", "AdamHD", "LearnedOptimizer"}
    assert public == covered and ISTA is ProxGD


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()


def _data():
    generator = torch.Generator().manual_seed(42)
    return (torch.randn(16, 4, generator=generator, dtype=torch.float64),
            torch.randn(16, 2, generator=generator, dtype=torch.float64))


def _closure(model, optimizer):
    data, target = _data()

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data), target)
        loss.backward()
        return loss
    return closure


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.fixture(params=sorted(OPTIMIZERS))
def make(request):
    return OPTIMIZERS[request.param][0]


@pytest.fixture
def override(request, make):
    return next(o for n, (m, o) in OPTIMIZERS.items() if m is make)


def test_closure_returns_loss_and_training_reduces_it(make):
    model = _model()
    optimizer = make(model.parameters())
    closure = _closure(model, optimizer)
    first = optimizer.step(closure)
    assert isinstance(first, torch.Tensor)
    for _ in range(60):
        last = optimizer.step(closure)
    assert float(last.detach()) < float(first.detach())


def test_state_dict_round_trip_continues_identically(make):
    model = _model()
    optimizer = make(model.parameters())
    closure = _closure(model, optimizer)
    for _ in range(5):
        optimizer.step(closure)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    for _ in range(5):
        optimizer.step(closure)
    expected = _flat(model)

    fresh_model = _model(seed=99)  # a new instance with other weights
    fresh_model.load_state_dict(saved_model)
    fresh_optimizer = make(fresh_model.parameters())
    fresh_optimizer.load_state_dict(saved_optimizer)
    fresh_closure = _closure(fresh_model, fresh_optimizer)
    for _ in range(5):
        fresh_optimizer.step(fresh_closure)
    torch.testing.assert_close(_flat(fresh_model), expected, rtol=0, atol=0)


def test_param_groups_with_different_settings_act_independently(make, override):
    """Two groups with different settings == two optimizers, one per group."""
    model = _model()
    first, second = model[0], model[2]
    optimizer = make([{"params": first.parameters()}, {"params": second.parameters(), **override}])
    assert all(optimizer.param_groups[1][k] == v for k, v in override.items())

    separate = _model()
    optimizers = [make(separate[0].parameters()), make(separate[2].parameters(), **override)]
    data, target = _data()
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        optimizer.step()
        for o in optimizers:
            o.zero_grad()
        torch.nn.functional.mse_loss(separate(data), target).backward()
        for o in optimizers:
            o.step()
    torch.testing.assert_close(_flat(model), _flat(separate), rtol=0, atol=0)
    assert not torch.equal(_flat(model), _flat(_model()))


def test_zero_grad_and_params_without_grad_are_left_alone(make):
    model = _model()
    optimizer = make(model.parameters())
    frozen = model[0].weight
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    optimizer.step(_closure(model, optimizer))
    torch.testing.assert_close(frozen, before, rtol=0, atol=0)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    untouched = _flat(model)
    optimizer.step()  # no gradients at all: nothing changes
    torch.testing.assert_close(_flat(model), untouched, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_raises_and_changes_nothing(make, bad):
    model = _model()
    optimizer = make(model.parameters())
    closure = _closure(model, optimizer)
    optimizer.step(closure)
    weights, state = _flat(model), copy.deepcopy(optimizer.state_dict())
    closure()
    model[2].bias.grad[0] = bad
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        optimizer.step()
    torch.testing.assert_close(_flat(model), weights, rtol=0, atol=0)
    assert str(optimizer.state_dict()) == str(state)


def test_sparse_gradient_rejected(make):
    embedding = torch.nn.Embedding(5, 3, sparse=True)
    optimizer = make(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        optimizer.step()


def test_complex_and_mixed_parameters_rejected(make):
    with pytest.raises(ValueError, match="complex parameters"):
        make([torch.zeros(3, dtype=torch.complex64, requires_grad=True)])
    with pytest.raises(ValueError, match="share dtype and device"):
        make([torch.zeros(3, requires_grad=True), torch.zeros(3, dtype=torch.float64, requires_grad=True)])


@pytest.mark.parametrize(
    "make_bad, match",
    [
        (lambda p: ProxGD(p, lr=-0.1), "Invalid learning rate: -0.1"),
        (lambda p: ProxGD(p, lr=0.1, l1=-1.0), "Invalid l1"),
        (lambda p: FISTA(p, lipschitz=0.0), "Invalid lipschitz"),
        (lambda p: SGDHD(p, hypergrad_lr=-1.0), "Invalid hypergradient learning rate"),
        (lambda p: AdamHD(p, betas=(1.5, 0.9)), "Invalid betas"),
        (lambda p: AdamHD(p, eps=-1.0), "Invalid epsilon"),
        (lambda p: LearnedOptimizer(p, rule=3), "must be an l2o.rules.UpdateRule"),
        (lambda p: LearnedOptimizer(p, rule="no-such-entry"), "no zoo entry"),
        (lambda p: LearnedOptimizer(p, rule=AdamRule(), lr=0.1, lipschitz=2.0), "not both"),
    ],
)
def test_invalid_hyperparameters_rejected_clearly(make_bad, match):
    with pytest.raises((ValueError, TypeError, KeyError), match=match):
        make_bad([torch.zeros(2, requires_grad=True)])


def test_invalid_added_param_group_rejected_and_not_kept():
    optimizer = ProxGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optimizer.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -1.0})
    assert len(optimizer.param_groups) == 1


# ------------------------------------------------------- rule == torch.optim wrapper
WRAPPED = [
    ("ProxGD", ProxGDRule(), lambda g: ProxGD(g)),
    ("FISTA", FISTARule(), lambda g: FISTA(g)),
    ("FISTA-restart", FISTARule(restart=True), lambda g: FISTA(g, restart=True)),
    ("SGDHD", SGDHDRule(lr=0.05, hypergrad_lr=1e-3), lambda g: SGDHD(g, lr=0.05, hypergrad_lr=1e-3, hypergrad="additive")),
    ("AdamHD", AdamHDRule(lr=0.01, hypergrad_lr=1e-4), lambda g: AdamHD(g, lr=0.01, hypergrad_lr=1e-4, hypergrad="additive")),
    ("Learned(Adam)", AdamRule(lr=0.01), lambda g: LearnedOptimizer(g, rule=AdamRule(lr=0.01), safeguard=False)),
]


@pytest.mark.parametrize("family", [LassoFamily.toy(), QuadraticFamily(m=20, n=10, x0_std=1.0)], ids=["lasso", "qp"])
@pytest.mark.parametrize("name, rule, factory", WRAPPED, ids=[w[0] for w in WRAPPED])
def test_rule_and_its_optimizer_give_the_same_trajectory(family, name, rule, factory):
    batch = family.sample(3, seed=8, dtype=torch.float64)
    batched = rollout(rule, batch, 30)
    wrapped = rollout(factory, batch, 30)
    torch.testing.assert_close(wrapped.objective, batched.objective, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(wrapped.final, batched.final, rtol=1e-10, atol=1e-12)


def test_rollout_refuses_optimizer_without_l1_on_composite_problems():
    batch = LassoFamily.toy().sample(2, seed=0, dtype=torch.float64)
    with pytest.raises(ValueError, match="no 'l1' option"):
        rollout(lambda g: torch.optim.SGD(g, lr=0.01), batch, 3)
    smooth = QuadraticFamily().sample(2, seed=0, dtype=torch.float64)
    assert rollout(lambda g: torch.optim.SGD(g, lr=0.01), smooth, 3).objective.shape == (4, 2)
