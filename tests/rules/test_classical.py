"""Classical rules: known convergence rates, and equality with reference implementations."""

from __future__ import annotations

import pytest
import torch

from l2o.eval import rollout
from l2o.optim import LearnedOptimizer
from l2o.rules import AdamHDRule, AdamRule, FISTARule, ProxGDRule, SGDHDRule, StepContext
from problems import LassoFamily, LeastSquaresFamily, QuadraticFamily

STEPS = 200


def _distance_to_solution(batch):
    return (batch.x0() - batch.solution()).pow(2).sum(-1)


@pytest.mark.parametrize("family", [QuadraticFamily(m=40, n=30, x0_std=1.0), LassoFamily.toy()])
def test_prox_gd_sublinear_rate(family):
    """ISTA/GD with step 1/L: F(x_k) - F* <= L ||x0 - x*||² / (2k)."""
    batch = family.sample(8, seed=1, dtype=torch.float64)
    gap = rollout(ProxGDRule(), batch, STEPS).objective - batch.optimum()
    k = torch.arange(1, STEPS + 1, dtype=torch.float64)[:, None]
    bound = batch.lipschitz() * _distance_to_solution(batch) / (2 * k)
    assert bool((gap[1:] <= bound + 1e-10).all())
    assert bool((gap[1:] <= gap[:-1] + 1e-12).all()), "ISTA is monotone"


@pytest.mark.parametrize("family", [QuadraticFamily(m=40, n=30, x0_std=1.0), LassoFamily.toy()])
def test_fista_accelerated_rate(family):
    """FISTA: F(x_k) - F* <= 2 L ||x0 - x*||² / (k + 1)²."""
    batch = family.sample(8, seed=2, dtype=torch.float64)
    gap = rollout(FISTARule(), batch, STEPS).objective - batch.optimum()
    k = torch.arange(1, STEPS + 1, dtype=torch.float64)[:, None]
    bound = 2 * batch.lipschitz() * _distance_to_solution(batch) / (k + 1) ** 2
    assert bool((gap[1:] <= bound + 1e-10).all())


def test_gd_linear_rate_on_strongly_convex_least_squares():
    """f(x_k) - f* <= (1 - μ/L)^k (f(x_0) - f*) for GD with step 1/L."""
    family = LeastSquaresFamily(m=30, n=20, condition_number=20.0, x0_std=1.0)
    batch = family.sample(4, seed=3, dtype=torch.float64)
    gap = rollout(ProxGDRule(), batch, 100).objective - batch.optimum()
    eigenvalues = torch.linalg.eigvalsh(batch.A.transpose(1, 2) @ batch.A)
    contraction = 1 - eigenvalues[:, 0] / eigenvalues[:, -1]
    k = torch.arange(101, dtype=torch.float64)[:, None]
    assert bool((gap <= contraction**k * gap[0] * (1 + 1e-9) + 1e-12).all())


def test_fista_restart_beats_plain_fista_on_strongly_convex():
    batch = LeastSquaresFamily(m=60, n=40, condition_number=1e3, x0_std=1.0).sample(4, seed=4, dtype=torch.float64)
    plain = rollout(FISTARule(), batch, 300).objective[-1] - batch.optimum()
    restarted = rollout(FISTARule(restart=True), batch, 300).objective[-1] - batch.optimum()
    assert bool((restarted < plain).all())


def _train_model(optimizer_factory, steps=25):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)).double()
    data = torch.randn(32, 5, dtype=torch.float64)
    target = torch.randn(32, 1, dtype=torch.float64)
    optimizer = optimizer_factory(model.parameters())
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(data), target).backward()
        optimizer.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_adam_rule_equals_torch_adam():
    ours = _train_model(lambda p: LearnedOptimizer(p, rule=AdamRule(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)))
    reference = _train_model(lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99), eps=1e-6))
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)


def test_hypergradient_rules_without_hypergradient_are_their_base_method():
    sgd_hd = _train_model(lambda p: LearnedOptimizer(p, rule=SGDHDRule(lr=0.05, hypergrad_lr=0.0)))
    sgd = _train_model(lambda p: torch.optim.SGD(p, lr=0.05))
    torch.testing.assert_close(sgd_hd, sgd, rtol=1e-10, atol=1e-12)
    adam_hd = _train_model(lambda p: LearnedOptimizer(p, rule=AdamHDRule(lr=1e-2, hypergrad_lr=0.0)))
    adam = _train_model(lambda p: torch.optim.Adam(p, lr=1e-2))
    torch.testing.assert_close(adam_hd, adam, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule_class", [SGDHDRule, AdamHDRule])
def test_hypergradient_is_the_derivative_of_the_loss_in_the_step_size(rule_class):
    """α_k - α_{k-1} = -β ∂f(x_k)/∂α_{k-1}, checked against autograd."""
    batch = QuadraticFamily(m=10, n=6, x0_std=1.0).sample(3, seed=5, dtype=torch.float64)
    beta = 1e-3
    rule = rule_class(lr=0.05, hypergrad_lr=beta)
    ctx = StepContext.for_instances(batch)
    x = batch.x0()
    state = rule.init_state(x, ctx)
    x, state = rule.step(x, batch.grad(x), state, ctx)  # k = 1: α_1 = α_0
    alpha = state["alpha"].clone().requires_grad_(True)
    previous = state["previous_direction"]
    x_prev = x + state["alpha"] * previous  # x_{k-1}, since x_k = x_{k-1} - α u_{k-1}
    loss = batch.f(x_prev - alpha * previous).sum()
    (derivative,) = torch.autograd.grad(loss, alpha)
    _, next_state = rule.step(x, batch.grad(x), state, ctx)
    torch.testing.assert_close(next_state["alpha"] - state["alpha"], -beta * derivative)


def test_rules_are_differentiable_through_the_unroll():
    """Meta-training needs d F(x_T) / d (anything upstream): here the start point."""
    batch = LassoFamily.toy().sample(2, seed=6, dtype=torch.float64)
    start = batch.x0().requires_grad_(True)
    batch.start = start
    for rule in (ProxGDRule(), FISTARule(restart=True), AdamRule(lr=1e-2), AdamHDRule(lr=1e-2)):
        final = rollout(rule, batch, 10, differentiable=True).objective[-1].sum()
        (grad,) = torch.autograd.grad(final, start)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ProxGDRule(lr=-1.0), "Invalid learning rate: -1.0"),
        (lambda: FISTARule(lr=float("inf")), "Invalid learning rate"),
        (lambda: AdamRule(lr=None), "Invalid learning rate: None"),
        (lambda: AdamRule(betas=(0.9, 1.0)), "Invalid betas"),
        (lambda: AdamRule(eps=-1.0), "Invalid epsilon"),
        (lambda: SGDHDRule(lr=0.1, hypergrad_lr=-1.0), "Invalid hypergradient learning rate"),
    ],
)
def test_invalid_rule_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_step_size_needs_lr_or_lipschitz():
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="needs a step size"):
        ProxGDRule().step(x, x, {}, StepContext.constant(x))
