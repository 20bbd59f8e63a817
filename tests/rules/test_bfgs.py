"""BFGS: the core against SciPy, the classical step sizes, the learned steps' bounds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from l2o.eval import rollout
from l2o.eval.metrics import relative_suboptimality
from l2o.features import instance_dot
from l2o.optim import LearnedOptimizer
from l2o.rules import BFGSRule, LearnedBFGSRule
from l2o.rules.base import StepContext
from l2o.rules.bfgs import bfgs_update, coordinate_step_sizes
from problems import LeastSquaresFamily, LogisticFamily


def _logistic_numpy(seed: int):
    batch = LogisticFamily(m=40, n=6, sparsity=6).sample(1, seed=seed, dtype=torch.float64)
    f = lambda x: batch.f(torch.from_numpy(x)[None]).item()  # noqa: E731
    grad = lambda x: batch.grad(torch.from_numpy(x)[None])[0].numpy()  # noqa: E731
    return f, grad, np.ones(6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bfgs_core_reproduces_scipy_iterates_and_inverse_hessian(seed):
    """Along SciPy's own iterates, our H update gives SciPy's search directions (each step
    is parallel to -H_k g_k) and, at the end, SciPy's inverse Hessian."""
    f, grad, x0 = _logistic_numpy(seed)
    iterates = [x0.copy()]
    result = scipy.optimize.minimize(f, x0, jac=grad, method="BFGS", callback=lambda xk: iterates.append(xk.copy()),
                                     options={"gtol": 1e-7})
    assert result.success, result.message
    assert len(iterates) > 5
    H = torch.eye(6, dtype=torch.float64)[None]
    before_last = H
    for x, x_next in zip(iterates, iterates[1:]):
        g = torch.from_numpy(grad(x))[None]
        direction = torch.einsum("bij,bj->bi", H, g)
        step = torch.from_numpy(x_next - x)[None]
        alpha = -instance_dot(step, direction) / instance_dot(direction, direction)
        torch.testing.assert_close(step, -alpha * direction, rtol=1e-7, atol=1e-12)
        before_last, H = H, bfgs_update(H, step, torch.from_numpy(grad(x_next) - grad(x))[None])
    # SciPy stops (gradient or step tolerance) before folding in its last (s, y) pair.
    torch.testing.assert_close(before_last[0], torch.from_numpy(result.hess_inv), rtol=1e-6, atol=1e-9)


def test_curvature_safeguard_skips_bad_pairs_and_keeps_H_positive_definite():
    H = torch.eye(3, dtype=torch.float64)[None].repeat(2, 1, 1)
    s = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[-1.0, 0.0, 0.0], [2.0, 1.0, 0.0]], dtype=torch.float64)  # yᵀs < 0, then > 0
    updated = bfgs_update(H, s, y)
    torch.testing.assert_close(updated[0], H[0])
    assert not torch.equal(updated[1], H[1])
    assert (torch.linalg.eigvalsh(updated) > 0).all()
    torch.testing.assert_close(updated[1] @ y[1], s[1])  # the secant equation H⁺ y = s


def test_exact_step_terminates_on_quadratics_and_armijo_is_monotone():
    batch = LeastSquaresFamily(m=20, n=8, condition_number=100.0).sample(4, seed=3, dtype=torch.float64)
    optimum = batch.optimum()
    exact = rollout(BFGSRule("exact"), batch, 8).objective  # n steps with exact line search
    assert relative_suboptimality(exact[-1], optimum).max() < 1e-9
    armijo = rollout(BFGSRule("armijo", lr=10.0), batch, 40).objective  # 10 is too long: it backtracks
    assert (armijo[1:] <= armijo[:-1] + 1e-12).all()
    assert relative_suboptimality(armijo[-1], optimum).max() < 1e-8


def test_hypergradient_step_adapts_a_bad_initial_step():
    batch = LogisticFamily(m=60, n=10, sparsity=10).sample(4, seed=1, dtype=torch.float64)
    optimum = batch.optimum()
    fixed = rollout(BFGSRule("constant", lr=0.05, initial="lipschitz"), batch, 40).objective
    adapted = rollout(BFGSRule("hypergradient", lr=0.05, hypergrad_lr=1.0, initial="lipschitz"), batch, 40).objective
    assert (relative_suboptimality(adapted[-1], optimum) < relative_suboptimality(fixed[-1], optimum)).all()


def test_untrained_learned_rule_is_bfgs_with_unit_step():
    batch = LogisticFamily(m=60, n=10, sparsity=10).sample(3, seed=4, dtype=torch.float64)
    learned = rollout(LearnedBFGSRule().double(), batch, 15).objective
    classical = rollout(BFGSRule("constant", lr=1.0, initial="lipschitz"), batch, 15).objective
    torch.testing.assert_close(learned, classical)


@pytest.mark.parametrize("magnitude", [1e-30, 1.0, 1e30])
def test_every_learned_step_lies_within_the_derived_bounds(magnitude):
    generator = torch.Generator().manual_seed(int(np.log10(magnitude)) + 40)
    batch, n, c, p_max = 64, 12, 0.5, 2.0
    root = torch.randn(batch, n, n, generator=generator, dtype=torch.float64)
    H = root @ root.transpose(1, 2) + 1e-3 * torch.eye(n, dtype=torch.float64)  # SPD, badly conditioned
    grad = magnitude * torch.randn(batch, n, generator=generator, dtype=torch.float64)
    direction = torch.einsum("bij,bj->bi", H, grad)
    logits = 1e6 * torch.randn(batch, n, generator=generator, dtype=torch.float64)  # saturated outputs
    scale = 30 * torch.randn(batch, 1, generator=generator, dtype=torch.float64)
    p = coordinate_step_sizes(logits, scale, grad, direction, p_max, c)
    unit = lambda v: v / v.norm(dim=-1, keepdim=True)  # noqa: E731
    tau = instance_dot(unit(grad), unit(direction))
    center = p_max * torch.sigmoid(scale)
    assert torch.isfinite(p).all() and (p > 0).all()
    assert (p >= center * (1 - c * tau) * (1 - 1e-12)).all() and (p <= center * (1 + c * tau) * (1 + 1e-12)).all()
    descent = instance_dot(unit(grad), p * unit(direction))
    assert (descent >= (1 - c) * center * tau * (1 - 1e-9)).all()  # gᵀPHg >= (1 - c) p̄ gᵀHg > 0


@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e20])
def test_learned_rule_steps_stay_in_bounds_on_extreme_gradients(scale):
    torch.manual_seed(0)
    rule = LearnedBFGSRule(hidden_size=8).double()
    for parameter in rule.parameters():  # a "trained" (random, large) network
        torch.nn.init.normal_(parameter, std=3.0)
    batch = LeastSquaresFamily(m=12, n=7, condition_number=1e3).sample(4, seed=2, dtype=torch.float64)
    x = torch.randn(4, 7, dtype=torch.float64)
    ctx = StepContext.constant(x, lipschitz=scale * batch.lipschitz().max().item())
    state = rule.init_state(x, ctx)
    for _ in range(10):  # f = scale · (½||Ax - b||²): gradients of magnitude ~scale
        grad = scale * batch.grad(x)
        x_next, state = rule.step(x, grad, state, ctx)
        p, direction = state["p"], state["direction"]
        tau = instance_dot(grad / grad.norm(dim=-1, keepdim=True), direction / direction.norm(dim=-1, keepdim=True))
        center = p.mean(-1, keepdim=True).detach()  # p̄ lies between min p and max p
        assert torch.isfinite(x_next).all() and (p > 0).all() and (p < rule.p_max * (1 + rule.c)).all()
        assert (p.amax(-1, keepdim=True) / p.amin(-1, keepdim=True) <= (1 + rule.c * tau) / (1 - rule.c * tau) + 1e-9).all()
        assert (instance_dot(grad, p * direction) > 0).all() and center.gt(0).all()
        x = x_next


def test_learned_bfgs_is_a_drop_in_optimizer():
    torch.manual_seed(0)
    A, b = torch.randn(40, 6, dtype=torch.float64), torch.randn(40, dtype=torch.float64)
    model = torch.nn.Linear(6, 1, bias=False).double()
    lipschitz = torch.linalg.matrix_norm(A, ord=2).item() ** 2 / 40
    opt = LearnedOptimizer(model.parameters(), rule=LearnedBFGSRule(), lipschitz=lipschitz)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (model(A).squeeze(-1) - b).square().mean()
        loss.backward()
        return loss

    for _ in range(30):
        opt.step(closure)
    best = 0.5 * (A @ torch.linalg.lstsq(A, b).solution - b).square().mean()
    assert closure().item() - best.item() < 1e-8
    assert opt.state_dict()["state"][0]["rule_state"]["H"].shape == (1, 6, 6)


def test_invalid_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="step"):
        BFGSRule("wolfe-ish")
    with pytest.raises(ValueError, match="bounds"):
        LearnedBFGSRule(c=1.0)
    with pytest.raises(ValueError, match="initial"):
        LearnedBFGSRule(initial="random")


def test_dense_bfgs_refuses_a_network_sized_problem_before_allocating():
    huge = torch.nn.Parameter(torch.zeros(1_000_000))  # H would be 8 TB
    optimizer = LearnedOptimizer([huge], rule="bfgs-logistic", lr=0.1)
    huge.grad = torch.ones_like(huge)
    with pytest.raises(ValueError, match="dense BFGS keeps an n x n matrix"):
        optimizer.step()
    assert torch.equal(huge.detach(), torch.zeros(1_000_000))


def _least_squares_drop_in(A, b, start: float, steps: int, **optimizer_kwargs) -> tuple[list[float], float]:
    """The losses of ``steps`` ``LearnedOptimizer(**optimizer_kwargs)`` steps on ½||A w − b||²
    from w = start (the first value is at the start), and the least-squares optimum."""
    w = torch.nn.Parameter(torch.full((A.shape[1],), start, dtype=torch.float64))
    optimizer = LearnedOptimizer([w], **optimizer_kwargs)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * (A @ w - b).pow(2).sum()
        loss.backward()
        return loss
    values = [float(closure())] + [float(optimizer.step(closure)) for _ in range(steps)]
    return values, 0.5 * float((A @ torch.linalg.lstsq(A, b).solution - b).pow(2).sum())


@pytest.mark.parametrize("name", ["bfgs-least-squares", "bfgs-logistic"])
def test_learned_bfgs_as_a_drop_in_decreases_every_step_on_least_squares(name):
    """The zoo's learned BFGS on small least-squares problems with the exact L: without the
    line search its loss goes up on some steps (bfgs-logistic: 559 -> 4.5e3 on seed 1);
    as a drop-in (line search on by default) every step decreases it, to the same optimum."""
    increases = {}
    for line_search in (False, None):
        for seed in range(3):
            g = torch.Generator().manual_seed(seed)
            A = torch.randn(10, 5, generator=g, dtype=torch.float64)
            b = torch.randn(10, generator=g, dtype=torch.float64)
            values, optimum = _least_squares_drop_in(
                A, b, 3.0, 200, rule=name, lipschitz=float(torch.linalg.eigvalsh(A.T @ A)[-1]),
                line_search=line_search, safeguard=False)  # the line search alone
            increases[(line_search, seed)] = sum(after > before * (1 + 1e-12) for before, after in zip(values, values[1:]))
            if line_search is None:
                assert values[-1] - optimum < 1e-8 * values[0]
    assert all(increases[(None, seed)] == 0 for seed in range(3))
    if name == "bfgs-logistic":
        assert any(increases[(False, seed)] > 0 for seed in range(3)), "the test can fail without it"


def test_learned_bfgs_line_search_needs_a_closure():
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    optimizer = LearnedOptimizer([w], rule="bfgs-least-squares", lr=0.1)
    w.grad = torch.ones_like(w)
    with pytest.raises(ValueError, match="needs the objective: call step\\(closure\\)"):
        optimizer.step()
    assert torch.equal(w.detach(), torch.ones(4, dtype=torch.float64))


def test_curvature_initial_scaling_needs_no_constant():
    """H_0 = I rescaled by the first pair to (sᵀy / yᵀy) I (Nocedal & Wright 6.20): on
    f = c/2 ||x||² the rescaled H is exactly I / c, so the second step lands on the minimizer."""
    c = 37.0
    x = torch.ones(1, 4, dtype=torch.float64)
    rule = BFGSRule("constant", lr=0.01, initial="curvature")
    ctx = StepContext.constant(x)
    state = rule.init_state(x, ctx)
    x, state = rule.step(x, c * x, state, ctx)      # the first step: H_0 = I, a small constant step
    x, state = rule.step(x, c * x, state, ctx)      # the pair rescales H to I / c, then updates it
    torch.testing.assert_close(state["H"][0], torch.eye(4, dtype=torch.float64) / c)


def test_learned_bfgs_drop_in_without_constants_uses_the_curvature_scaling():
    g = torch.Generator().manual_seed(5)
    A = torch.randn(12, 6, generator=g, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    optimizer = LearnedOptimizer([torch.zeros(6, requires_grad=True)], rule="bfgs-least-squares")
    assert optimizer.rule_for(optimizer.param_groups[0]).initial == "curvature"
    values, optimum = _least_squares_drop_in(A, b, 0.0, 60, rule="bfgs-least-squares")  # neither lipschitz nor lr
    assert all(after <= before * (1 + 1e-12) for before, after in zip(values, values[1:]))
    assert values[-1] - optimum < 1e-8 * values[0]


def test_the_two_loop_recursion_is_dense_bfgs_while_no_pair_is_dropped():
    from l2o.rules.bfgs import bfgs_direction, bfgs_state, lbfgs_direction, lbfgs_state

    g = torch.Generator().manual_seed(0)
    A = torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    hessian = A @ A.mT + 6 * torch.eye(6, dtype=torch.float64)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64)
    limited, dense = lbfgs_state(x, memory=8), bfgs_state(x, StepContext.constant(x), "identity")
    for _ in range(6):
        grad = torch.einsum("bij,bj->bi", hessian, x)
        d_limited, limited = lbfgs_direction(x, grad, limited, 1e-8, scaling=False)
        d_dense, dense = bfgs_direction(x, grad, dense, 1e-8)
        torch.testing.assert_close(d_limited, d_dense, rtol=1e-10, atol=1e-12)
        x = x - 0.05 * d_dense


def test_learned_lbfgs_trains_a_network_with_linear_memory():
    """The learned L-BFGS (memory = 5) as a drop-in on a 20k-parameter MLP: its state is
    O(m·n) (dense BFGS would hold a 20k × 20k matrix) and every step lowers the loss."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(100, 190), torch.nn.Tanh(), torch.nn.Linear(190, 4)).double()
    n = sum(p.numel() for p in model.parameters())
    data = torch.randn(64, 100, dtype=torch.float64)
    target = torch.randn(64, 4, dtype=torch.float64)
    optimizer = LearnedOptimizer(model.parameters(), rule=LearnedBFGSRule(hidden_size=8, memory=5), lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data), target)
        loss.backward()
        return loss
    values = [float(closure())] + [float(optimizer.step(closure)) for _ in range(15)]
    assert all(after <= before * (1 + 1e-12) for before, after in zip(values, values[1:]))
    assert values[-1] < 0.9 * values[0]
    state = optimizer.state[next(iter(model.parameters()))]["rule_state"]
    assert "H" not in state and state["S"].shape == (1, 5, n)
    assert sum(v.numel() for v in state.values()) < 100 * n  # S, Y and the LSTM state: O(n), not n²


def test_invalid_lbfgs_memory_is_refused():
    with pytest.raises(ValueError, match="Invalid memory"):
        LearnedBFGSRule(memory=-1)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
@pytest.mark.parametrize("problem", ["least-squares", "logistic"])
@pytest.mark.parametrize("name", ["bfgs-least-squares", "bfgs-logistic", "lbfgs-least-squares"])
def test_learned_quasi_newton_drop_ins_never_increase_a_convex_objective_at_extreme_scales(name, problem, scale):
    """As users get them (no constant, line search on): F scaled by 1e-6 … 1e6 on an
    ill-conditioned least-squares problem (condition 1e4) and a ridge logistic regression on
    real data; every accepted step keeps F(x_{k+1}) <= F(x_k), and the run makes progress."""
    from problems import LeastSquaresFamily
    from problems.real_data import breast_cancer_logistic

    instances = (LeastSquaresFamily(m=30, n=15, condition_number=1e4).sample(1, seed=3, dtype=torch.float64)
                 if problem == "least-squares" else breast_cancer_logistic(1, m=200, seed=3))
    w = torch.nn.Parameter(instances.x0()[0] + 1.0)
    optimizer = LearnedOptimizer([w], rule=name)

    def closure():
        optimizer.zero_grad()
        loss = scale * instances.f(w[None])[0]
        loss.backward()
        return loss
    values = [float(closure())] + [float(optimizer.step(closure)) for _ in range(60)]
    assert all(b <= a for a, b in zip(values, values[1:])), "monotone"
    optimum = scale * float(instances.optimum()[0])
    assert values[-1] - optimum < 1e-2 * (values[0] - optimum)
