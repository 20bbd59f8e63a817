"""NTK-initialized learned GD: the untrained model is GD; training improves on GD."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from l2o.eval import rollout
from l2o.meta import MetaTrainer, ProblemDataModule
from l2o.rules import NTKGDRule
from problems import QuadraticFamily


def _gradient_descent(batch, steps: int) -> torch.Tensor:
    """Reference: x_{k+1} = x_k - (0.9999 / L) ∇f(x_k), written independently of l2o."""
    x = batch.x0()
    step = 0.9999 / batch.lipschitz()[:, None]
    values = [batch.objective(x)]
    for _ in range(steps):
        x = x - step * batch.grad(x)
        values.append(batch.objective(x))
    return torch.stack(values)


@pytest.mark.parametrize("steps", [1, 10, 100])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_untrained_ntk_rule_is_gradient_descent(steps, batch_size):
    batch = QuadraticFamily(m=32, n=20, x0_std=1.0).sample(batch_size, seed=steps, dtype=torch.float64)
    rule = NTKGDRule(hidden_size=64).double()
    torch.testing.assert_close(rollout(rule, batch, steps).objective, _gradient_descent(batch, steps),
                               rtol=1e-12, atol=1e-12)


def test_ntk_init_is_deterministic_and_full_rank():
    a, b = NTKGDRule(hidden_size=32, seed=3), NTKGDRule(hidden_size=32, seed=3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    for layer in (a.layer1, a.layer2):
        singular = torch.linalg.svdvals(layer.weight)
        torch.testing.assert_close(singular, torch.full_like(singular, 100.0))
    assert not torch.equal(NTKGDRule(hidden_size=32, seed=4).layer2.weight, a.layer2.weight)


def test_random_init_is_not_gradient_descent():
    batch = QuadraticFamily(x0_std=1.0).sample(3, seed=0, dtype=torch.float64)
    torch.manual_seed(0)
    rule = NTKGDRule(hidden_size=64, init="random").double()
    assert not torch.allclose(rollout(rule, batch, 5).objective, _gradient_descent(batch, 5))


def test_short_meta_training_beats_gradient_descent_on_held_out_seeds(tmp_path):
    L.seed_everything(0, verbose=False)
    family = {"m": 32, "n": 20, "x0_std": 1.0}
    data = ProblemDataModule(family="quadratic", family_params=family, batch_size=16,
                             steps_per_epoch=20, val_batch_size=16)
    model = MetaTrainer(rule="ntk_gd", rule_config={"hidden_size": 64}, horizon=20, unroll=20,
                        meta_loss="last", lr=1e-6, val_steps=20)
    start = copy.deepcopy(model.rule.state_dict())
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              default_root_dir=tmp_path).fit(model, data)
    assert any(not torch.equal(start[k], v) for k, v in model.rule.state_dict().items())
    held_out = QuadraticFamily(**family).sample(64, seed=123_456, dtype=torch.float32)
    learned = rollout(model.rule, held_out, 20).objective[-1] - held_out.optimum()
    gd = _gradient_descent(held_out, 20)[-1] - held_out.optimum()
    assert float(learned.mean()) < float(gd.mean())
    assert float((learned < gd).float().mean()) > 0.9


def test_long_horizon_training_stays_finite(tmp_path):
    """T = 100 without truncation: with the NTK init the meta-gradients stay finite."""
    L.seed_everything(0, verbose=False)
    data = ProblemDataModule(family="quadratic", family_params={"m": 32, "n": 20, "x0_std": 1.0},
                             batch_size=8, steps_per_epoch=5, val_batch_size=8)
    model = MetaTrainer(rule="ntk_gd", rule_config={"hidden_size": 64}, horizon=100, unroll=100,
                        meta_loss="last", lr=1e-3, val_steps=100)
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              default_root_dir=tmp_path).fit(model, data)
    assert all(bool(torch.isfinite(p).all()) for p in model.rule.parameters())
    batch = QuadraticFamily(x0_std=1.0).sample(8, seed=99)
    assert bool(torch.isfinite(rollout(model.rule, batch, 100).objective).all())


def test_invalid_ntk_arguments():
    with pytest.raises(ValueError, match="Invalid init"):
        NTKGDRule(init="xavier")
    with pytest.raises(ValueError, match="Invalid hidden_size"):
        NTKGDRule(hidden_size=1)


def test_ntk_zoo_entry_is_a_drop_in_optimizer_for_least_squares(monkeypatch):
    """The shipped ntk entry fits a least-squares nn.Linear in a plain torch loop at least
    as well as GD with the same 0.9999/L step (it starts from GD and was trained to beat it)."""
    from l2o import zoo
    from l2o.optim import LearnedOptimizer

    monkeypatch.delenv("L2O_ZOO", raising=False)
    name = next(n for n in zoo.list() if "ntk" in n)
    generator = torch.Generator().manual_seed(5)
    A = torch.randn(32, 20, generator=generator) / 32**0.5
    b = torch.randn(32, generator=generator)
    lipschitz = float(torch.linalg.matrix_norm(A, ord=2) ** 2)
    optimum = 0.5 * float((A @ torch.linalg.lstsq(A, b).solution - b).pow(2).sum())

    def train(make_optimizer) -> float:
        model = torch.nn.Linear(20, 1, bias=False)
        torch.nn.init.zeros_(model.weight)
        optimizer = make_optimizer(model.parameters())
        for _ in range(100):
            optimizer.zero_grad()
            (0.5 * (model(A).squeeze(-1) - b).pow(2).sum()).backward()
            optimizer.step()
        return 0.5 * float((model(A).squeeze(-1) - b).pow(2).sum()) - optimum

    learned = train(lambda p: LearnedOptimizer(p, rule=name, lipschitz=lipschitz))
    gd = train(lambda p: torch.optim.SGD(p, lr=0.9999 / lipschitz))
    assert learned <= gd * 1.0001, (learned, gd)
