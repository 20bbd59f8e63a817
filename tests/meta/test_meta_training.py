"""Meta-training: it learns (and would not if meta-gradients were cut), resumes exactly,
streams distinct reproducible seeds, and validates its arguments."""

from __future__ import annotations

import copy
import pickle

import lightning as L
import pytest
import torch

from l2o.eval import median, relative_suboptimality, rollout
from l2o.meta import META_LOSSES, MetaTrainer, ProblemDataModule
from l2o.optim import malloc

TOY = {"m": 10, "n": 20, "sparsity": 3, "l1": 0.1}


def _data(**overrides) -> ProblemDataModule:
    return ProblemDataModule(**{"family": "lasso", "family_params": TOY, "batch_size": 16,
                                "steps_per_epoch": 6, "val_batch_size": 32, **overrides})


def _trainer(tmp_path, max_epochs: int, **kwargs) -> L.Trainer:
    return L.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False,
                     default_root_dir=tmp_path, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def _validation_median(rule, data: ProblemDataModule, step: int = 30) -> float:
    _, instances = data.validation_batches()[0]
    with torch.no_grad():
        objective = rollout(rule, instances, step).objective
    return median(relative_suboptimality(objective, instances.optimum())[step])


def test_last_meta_loss_counts_only_the_horizon():
    objective = torch.tensor([[float("inf"), 1.0], [2.0, 4.0]], requires_grad=True)  # (K=2, B=2)
    last = META_LOSSES["last"]
    at_horizon = last(objective, torch.tensor([9, 10]), None, 10)
    assert float(at_horizon) == 3.0  # mean over instances of F(x_T); the inf at k = 9 is ignored
    (gradient,) = torch.autograd.grad(at_horizon, objective)
    assert gradient.tolist() == [[0.0, 0.0], [0.5, 0.5]]
    before = last(objective, torch.tensor([4, 5]), None, 10)  # a segment that ends before T
    assert float(before) == 0.0
    assert torch.autograd.grad(before, objective)[0].abs().sum() == 0


@pytest.mark.parametrize("rule", ["gomath", "l2l", "rnnprop"])
def test_short_meta_training_beats_the_untrained_rule(tmp_path, rule):
    L.seed_everything(0, verbose=False)
    data = _data()
    model = MetaTrainer(rule=rule, horizon=30, unroll=10, lr=1e-2, val_steps=30)
    untrained = _validation_median(copy.deepcopy(model.rule), data)
    _trainer(tmp_path, max_epochs=2, enable_checkpointing=False).fit(model, data)
    trained = _validation_median(model.rule, data)
    assert trained < 0.1 * untrained, (untrained, trained)


def test_cut_meta_gradients_would_fail_the_learning_test(tmp_path):
    """The same run with the meta-gradient zeroed leaves the rule where it started."""
    L.seed_everything(0, verbose=False)
    data = _data()
    model = MetaTrainer(rule="gomath", horizon=30, unroll=10, lr=1e-2, val_steps=30)
    for p in model.rule.parameters():
        p.register_hook(torch.zeros_like)
    untrained = _validation_median(copy.deepcopy(model.rule), data)
    _trainer(tmp_path, max_epochs=2, enable_checkpointing=False).fit(model, data)
    assert _validation_median(model.rule, data) == pytest.approx(untrained, rel=1e-6)


def test_interrupted_training_resumes_to_identical_weights(tmp_path):
    def run(directory, epochs, ckpt_path=None):
        L.seed_everything(0, verbose=False)
        model = MetaTrainer(rule="gomath", horizon=20, unroll=10, val_steps=10)
        trainer = _trainer(directory, max_epochs=epochs)
        trainer.fit(model, _data(), ckpt_path=ckpt_path)
        return model, trainer

    straight, _ = run(tmp_path / "straight", 3)
    _, interrupted = run(tmp_path / "interrupted", 2)
    checkpoint = interrupted.checkpoint_callback.last_model_path or interrupted.checkpoint_callback.best_model_path
    assert checkpoint, "a checkpoint was written"
    resumed, _ = run(tmp_path / "interrupted", 3, ckpt_path=checkpoint)
    for (name, a), b in zip(straight.rule.state_dict().items(), resumed.rule.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_compiled_segments_train_to_the_eager_weights_as_one_graph(tmp_path, monkeypatch):
    """``compile=True``: every segment of every batch runs one compiled graph (no graph
    break, no recompilation for new instances of the same shape), to the same weights. The
    compiled run starts as in a fresh process, with no malloc thresholds pinned yet: pinning
    them (a ctypes call) inside the traced segment broke its graph."""
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    trained = []
    for compile in (False, True):
        monkeypatch.setattr(malloc, "_pinned", 0)
        L.seed_everything(0, verbose=False)
        model = MetaTrainer(rule="gomath", horizon=4, unroll=2, val_steps=2, compile=compile)
        initial = copy.deepcopy(model.rule.state_dict())
        _trainer(tmp_path, max_epochs=1, enable_checkpointing=False, limit_train_batches=2,
                 limit_val_batches=0).fit(model, _data(batch_size=4))
        trained.append(model.rule.state_dict())
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["aot_autograd"]["total"] == 1  # forward and backward compiled once, run 4 times
    for name, eager in trained[0].items():
        torch.testing.assert_close(trained[1][name], eager, rtol=1e-4, atol=1e-6, msg=name)
    assert any(not torch.equal(trained[1][k], v) for k, v in initial.items())  # it did train
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):  # the compiled function stays behind
        assert clone.segment() is not model.segment()


def test_training_seeds_are_reproducible_and_distinct():
    data = _data(steps_per_epoch=4)
    first = [b.A for b in data.train_dataloader()]
    again = [b.A for b in data.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert len({float(a.sum()) for a in first}) == 4
    validation = data.validation_batches()
    assert not any(torch.equal(validation[0][1].A, a) for a in first)


def test_validation_covers_ind_and_ood_scenarios():
    data = _data(ood={"scaled": {"data_scale": 4.0}})
    (ind_name, ind), (ood_name, ood) = data.validation_batches()
    assert (ind_name, ood_name) == ("ind", "scaled")
    # LASSO columns have norm data_scale: 1 InD, 4 in the shifted scenario
    torch.testing.assert_close(ind.A.norm(dim=1), torch.ones_like(ind.A[:, 0]))
    torch.testing.assert_close(ood.A.norm(dim=1), torch.full_like(ood.A[:, 0], 4.0))


@pytest.mark.parametrize("loss", sorted(META_LOSSES))
def test_every_meta_loss_trains_a_step(tmp_path, loss):
    model = MetaTrainer(rule="gomath", horizon=20, unroll=10, meta_loss=loss, val_steps=10)
    before = copy.deepcopy(model.rule.state_dict())
    _trainer(tmp_path, max_epochs=1, enable_checkpointing=False, limit_train_batches=1,
             limit_val_batches=0).fit(model, _data())
    assert any(not torch.equal(before[k], v) for k, v in model.rule.state_dict().items())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"horizon": 30, "unroll": 20}, "multiple of unroll"),
        ({"meta_loss": "median"}, "Invalid meta_loss"),
        ({"lr": 0.0}, "Invalid lr"),
        ({"rule": "nope"}, "unknown rule"),
    ],
)
def test_invalid_meta_trainer_arguments(kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):
        MetaTrainer(**kwargs)


def test_invalid_data_module_arguments():
    with pytest.raises(KeyError, match="unknown family"):
        ProblemDataModule(family="nope")
    with pytest.raises(ValueError, match="Invalid dtype"):
        ProblemDataModule(dtype="float16")
    with pytest.raises(ValueError, match="Invalid sparsity"):
        ProblemDataModule(family_params={"m": 5, "n": 10, "sparsity": 20})


def test_short_meta_training_of_bfgs_step_sizes_beats_armijo_line_search(tmp_path):
    """Learned coordinate-wise BFGS steps vs BFGS + Armijo backtracking, both from H_0 = I/L,
    at a 10-iteration budget on held-out least-squares instances."""
    from l2o.eval import in_double
    from l2o.rules import BFGSRule

    L.seed_everything(0, verbose=False)
    data = ProblemDataModule(family="least_squares", family_params={"m": 20, "n": 10, "condition_number": 100.0},
                             batch_size=16, steps_per_epoch=6, val_batch_size=16)
    model = MetaTrainer(rule="bfgs", horizon=10, unroll=10, lr=1e-2, val_steps=10, meta_loss="log_relative")
    _trainer(tmp_path, max_epochs=2, enable_checkpointing=False).fit(model, data)
    held_out = data.family.sample(64, seed=999, dtype=torch.float64)
    optimum = held_out.optimum()

    def final(rule) -> float:
        with torch.no_grad():
            return median(relative_suboptimality(rollout(rule, held_out, 10).objective, optimum)[10])

    learned, armijo = final(in_double(model.rule)), final(BFGSRule("armijo", initial="lipschitz"))
    assert learned < 0.85 * armijo, (learned, armijo)


def test_the_logged_grad_norm_is_the_last_segments(tmp_path, monkeypatch):
    """``train/grad_norm`` is logged once per batch: the last segment's pre-clip norm."""
    norms = []

    def recording_clip(parameters, max_norm):
        norms.append(float(clip_grad_norm(parameters, max_norm)))
        return torch.tensor(norms[-1])

    clip_grad_norm = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    logged = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            logged.append(float(trainer.callback_metrics["train/grad_norm"]))

    L.seed_everything(0, verbose=False)
    model = MetaTrainer(rule="gomath", horizon=30, unroll=10, val_steps=10)
    _trainer(tmp_path, max_epochs=1, enable_checkpointing=False, limit_train_batches=2,
             limit_val_batches=0, callbacks=[Record()]).fit(model, _data())
    assert len(norms) == 6 and len(set(norms)) == 6
    assert logged == [norms[2], norms[5]]


def test_official_ntk_protocol_options(tmp_path):
    """A fixed batch, a summed loss and SGD (the official NTK-GD protocol) train, and the
    summed loss's meta-gradient is B × the mean's."""
    data = _data(fixed_batch=True)
    data.trainer = None
    assert {data._train_seed(i) for i in range(5)} == {data.hparams.seed}
    gradients = {}
    for reduction in ("mean", "sum"):
        L.seed_everything(0, verbose=False)
        model = MetaTrainer(rule="gomath", horizon=10, unroll=10, batch_reduction=reduction,
                            meta_optimizer="sgd", lr=1e-3, grad_clip=0.0, val_steps=10)
        recorder = []

        class Record(L.Callback):
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                recorder.append(float(trainer.callback_metrics["train/grad_norm"]))

        _trainer(tmp_path, max_epochs=1, enable_checkpointing=False, limit_train_batches=1,
                 limit_val_batches=0, callbacks=[Record()]).fit(model, _data(fixed_batch=True))
        assert isinstance(model.optimizers().optimizer, torch.optim.SGD)
        gradients[reduction] = recorder[0]
    assert gradients["sum"] == pytest.approx(16 * gradients["mean"], rel=1e-4)


@pytest.mark.parametrize("options, match", [({"batch_reduction": "max"}, "batch_reduction"),
                                            ({"meta_optimizer": "lbfgs"}, "meta_optimizer")])
def test_invalid_protocol_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        MetaTrainer(rule="gomath", **options)


def test_meta_training_on_the_estimated_l_learns_and_exports_an_entry_that_needs_no_constant(tmp_path, monkeypatch):
    """``lipschitz="estimate"``: the unrolls run on the online estimate, it learns, and the
    exported entry loads wrapped in the estimate and steps a model with no constant."""
    from l2o import zoo
    from l2o.cli import main
    from l2o.optim import LearnedOptimizer
    from l2o.rules import LipschitzEstimate

    L.seed_everything(0, verbose=False)
    data = _data()
    model = MetaTrainer(rule="gomath", horizon=30, unroll=10, lr=1e-2, val_steps=30, lipschitz="estimate")
    assert isinstance(model.stepping_rule, LipschitzEstimate) and model.stepping_rule.rule is model.rule
    untrained = _validation_median(LipschitzEstimate(copy.deepcopy(model.rule)), data)
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(model, data)
    trained = _validation_median(LipschitzEstimate(model.rule), data)
    assert trained < 0.1 * untrained, (untrained, trained)
    assert all(not k.startswith("stepping_rule") for k in model.state_dict())

    monkeypatch.setenv("L2O_ZOO", str(tmp_path / "zoo"))
    checkpoint = trainer.checkpoint_callback.best_model_path
    assert main(["export", checkpoint, "gomath-estimated", "--eval-batch", "2", "--eval-steps", "5"]) == 0
    entry = zoo.load("gomath-estimated")
    assert entry.card["training"]["lipschitz"] == "estimate" and isinstance(entry.rule, LipschitzEstimate)
    w = torch.nn.Parameter(torch.ones(3))
    optimizer = LearnedOptimizer([w], rule="gomath-estimated", safeguard=False)
    for _ in range(30):
        optimizer.zero_grad()
        (0.5 * (w - 2.0).pow(2).sum()).backward()
        optimizer.step()
    assert float((w - 2.0).abs().max()) < 1e-3


def test_an_unknown_lipschitz_mode_is_refused():
    with pytest.raises(ValueError, match="lipschitz"):
        MetaTrainer(lipschitz="oracle")
