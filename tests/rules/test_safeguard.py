"""The sufficient-decrease safeguard: monotone, convergent where the raw rule diverges."""

from __future__ import annotations

import pytest
import torch

from l2o import zoo
from l2o.eval import rollout
from l2o.eval.metrics import relative_suboptimality
from l2o.optim import LearnedOptimizer
from l2o.rules import FISTARule, ProxGDRule, SafeguardedRule
from problems import LassoFamily, LeastSquaresFamily

# x0 fifty units away from the InD starts: an adversarial initial-point shift.
ADVERSARIAL = LassoFamily.toy(x0_shift=50.0)


def _is_monotone(objective: torch.Tensor) -> bool:
    """``objective: (T + 1, B)`` non-increasing along T, up to float64 round-off."""
    increase = objective[1:] - objective[:-1]
    return bool((increase <= 1e-9 * objective[:-1].abs().clamp_min(1.0)).all())


def _lasso_zoo_entries() -> list[str]:
    return [name for name in zoo.list() if zoo.load(name).card["training"]["family"] == "lasso"]


def test_safeguard_fixes_a_divergent_step_and_keeps_the_objective_monotone():
    batch = LeastSquaresFamily(m=12, n=8, condition_number=50.0).sample(6, seed=2, dtype=torch.float64)
    too_long = 3.0 / batch.lipschitz().min().item()  # >= 3 / L_b: plain GD diverges
    raw = rollout(ProxGDRule(lr=too_long), batch, 200).objective
    guarded = rollout(SafeguardedRule(ProxGDRule(lr=too_long)), batch, 200).objective
    optimum = batch.optimum()
    assert relative_suboptimality(raw[-1], optimum).min() > 1.0
    assert _is_monotone(guarded)
    assert relative_suboptimality(guarded[-1], optimum).max() < 1e-4


def test_safeguard_accepts_good_steps_unchanged():
    batch = LassoFamily.toy().sample(4, seed=5, dtype=torch.float64)
    plain = rollout(ProxGDRule(), batch, 50).objective  # 1/L steps satisfy the test by (★)
    guarded = rollout(SafeguardedRule(ProxGDRule()), batch, 50).objective
    torch.testing.assert_close(guarded, plain)


@pytest.mark.parametrize("name", _lasso_zoo_entries())
def test_every_lasso_zoo_rule_is_monotone_and_convergent_when_safeguarded(name):
    rule = zoo.load(name).rule.double()
    batch = ADVERSARIAL.sample(8, seed=11, dtype=torch.float64)
    optimum = batch.optimum()
    guarded = rollout(SafeguardedRule(rule), batch, 300).objective
    fallback = rollout(ProxGDRule(), batch, 300).objective  # what the guarantee is about
    assert _is_monotone(guarded)
    final = relative_suboptimality(guarded[-1], optimum)
    assert (final < 1e-2 * relative_suboptimality(guarded[0], optimum)).all()
    assert (final <= 1.01 * relative_suboptimality(fallback[-1], optimum)).all(), f"{name}: {final.tolist()}"


def test_safeguard_wraps_extrapolating_rules_on_their_point_sequence():
    batch = LassoFamily.toy().sample(4, seed=6, dtype=torch.float64)
    guarded = rollout(SafeguardedRule(FISTARule()), batch, 300).objective
    assert _is_monotone(guarded)
    assert relative_suboptimality(guarded[-1], batch.optimum()).max() < 1e-6


def test_safeguarded_drop_in_optimizer_is_monotone_and_converges():
    torch.manual_seed(0)
    A, b = torch.randn(30, 10, dtype=torch.float64), torch.randn(30, dtype=torch.float64)
    lipschitz = torch.linalg.matrix_norm(A, ord=2).item() ** 2
    x = torch.nn.Parameter(torch.full((10,), 40.0, dtype=torch.float64))
    opt = LearnedOptimizer([x], rule=ProxGDRule(lr=4.0 / lipschitz), lipschitz=lipschitz, safeguard=True)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (A @ x - b).square().sum()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(300)]
    optimum = 0.5 * (A @ torch.linalg.lstsq(A, b).solution - b).square().sum().item()
    assert all(later <= earlier + 1e-9 for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] - optimum < 1e-6 * optimum
    assert opt.state[x]["rule_state"]["fallbacks"].item() > 0  # the 4/L proposals were rejected


def test_safeguard_needs_a_closure_but_no_step_size():
    x = torch.nn.Parameter(torch.ones(3))
    auto = LearnedOptimizer([x], rule=ProxGDRule(), safeguard=True)  # the online L estimate
    x.grad = torch.ones(3)
    with pytest.raises(ValueError, match="closure"):
        auto.step()
    opt = LearnedOptimizer([x], rule=ProxGDRule(), lr=0.1, safeguard=True)
    x.grad = torch.ones(3)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="already safeguarded"):
        SafeguardedRule(SafeguardedRule(ProxGDRule()))
