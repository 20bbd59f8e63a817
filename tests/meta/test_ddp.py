"""Data-parallel meta-training with Lightning's own DDP (2 CPU processes, gloo)."""

from __future__ import annotations

import lightning as L
import torch

from l2o.meta import MetaTrainer, ProblemDataModule

FAMILY = {"m": 6, "n": 10, "sparsity": 2}


class Record(L.Callback):
    """Each rank writes the fingerprints of the batches it drew and its final weights."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.fingerprints: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.fingerprints.append(round(float(batch.A.double().sum()), 9))

    def on_train_end(self, trainer, module) -> None:
        torch.save({"fingerprints": self.fingerprints, "weights": module.rule.state_dict()},
                   self.directory / f"rank{trainer.global_rank}.pt")

    def teardown(self, trainer, module, stage) -> None:
        """Close the gloo group before the spawned rank exits: left to interpreter shutdown,
        its threads were at times destroyed while joinable ("terminate called without an
        active exception", SIGABRT) after training had finished."""
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _fit(directory, **trainer_kwargs) -> None:
    L.seed_everything(0, verbose=False)
    data = ProblemDataModule(family="lasso", family_params=FAMILY, batch_size=4, steps_per_epoch=4,
                             val_batch_size=4)
    model = MetaTrainer(rule="gomath", rule_config={"hidden_size": 4, "num_layers": 1},
                        horizon=4, unroll=2, val_steps=4)
    L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
              callbacks=[Record(directory)], default_root_dir=directory, **trainer_kwargs).fit(model, data)


def test_two_process_ddp_draws_disjoint_seeds_and_ends_with_identical_weights(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    _fit(single, devices=1)
    _fit(ddp, devices=2, strategy="ddp_spawn")
    stream = torch.load(single / "rank0.pt")["fingerprints"]
    rank0, rank1 = (torch.load(ddp / f"rank{r}.pt") for r in (0, 1))
    assert len(rank0["fingerprints"]) == len(rank1["fingerprints"]) == 2
    assert not set(rank0["fingerprints"]) & set(rank1["fingerprints"]), "ranks drew distinct seeds"
    assert sorted(rank0["fingerprints"] + rank1["fingerprints"]) == sorted(stream), \
        "together the ranks cover exactly the single-device stream"
    for name, weight in rank0["weights"].items():
        torch.testing.assert_close(rank1["weights"][name], weight, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(weight, torch.load(single / "rank0.pt")["weights"][name])
               for name, weight in rank0["weights"].items()), "DDP trained (on other batches)"
