"""``ProblemDataModule``: seeded streams of problem batches for meta-training.

Training: batch i of epoch e has instance seed ``seed + e · steps_per_epoch + i`` —
reproducible, and the same after resuming from any checkpoint: the module's ``state_dict``
(saved in Lightning checkpoints) records how many batches of the epoch were trained, and a
run resumed mid-epoch (where Lightning restarts the loader at index 0 but trains only the
remaining batches) continues the stream at the next batch. Under
DDP, Lightning's distributed sampler deals the indices i out to the ranks, so each rank
draws distinct seeds and together they cover exactly the single-device stream.
Validation: one fixed batch per scenario (InD plus each OOD shift), seeds
``val_seed + scenario index``, with F* solved once.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from problems import FAMILIES, Instances, ProblemFamily


def make_family(name: str, params: dict[str, Any] | None = None) -> ProblemFamily:
    """A registered family (``problems.FAMILIES``) with its parameters."""
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name](**(params or {}))


class SeededBatches(Dataset):
    """Map-style: item i is the batch of instances drawn with seed ``seed_of(i)``."""

    def __init__(self, family: ProblemFamily, batch_size: int, length: int,
                 seed_of: Callable[[int], int], dtype: torch.dtype) -> None:
        self.family, self.batch_size, self.length = family, batch_size, length
        self.seed_of, self.dtype = seed_of, dtype

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Instances:
        return self.family.sample(self.batch_size, seed=self.seed_of(index), dtype=self.dtype)


def _single(items: list[Any]) -> Any:
    return items[0]


class ProblemDataModule(LightningDataModule):
    """Problem batches from one family, InD and OOD.

    Args:
        family: a name in ``problems.FAMILIES`` (``lasso``, ``logistic_l1``, ...).
        family_params: the family's parameters (e.g. ``{"m": 20, "n": 40}``).
        batch_size: instances per training batch.
        steps_per_epoch: training batches per epoch.
        seed: base training seed.
        fixed_batch: every training batch is the one drawn with ``seed`` (the official
            NTK-GD protocol trains on one fixed batch).
        val_batch_size: instances per validation scenario.
        val_seed: base validation seed (keep it far from the training seeds).
        ood: OOD scenarios, name -> parameters to shift (``family.shifted(**params)``).
        dtype: ``float32`` or ``float64``.
    """

    def __init__(
        self,
        family: str = "lasso",
        family_params: dict[str, Any] | None = None,
        batch_size: int = 128,
        steps_per_epoch: int = 50,
        seed: int = 0,
        val_batch_size: int = 256,
        val_seed: int = 1_000_000_000,
        ood: dict[str, dict[str, Any]] | None = None,
        dtype: str = "float32",
        fixed_batch: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1 or steps_per_epoch < 1 or val_batch_size < 1:
            raise ValueError("batch_size, steps_per_epoch and val_batch_size must be >= 1")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"Invalid dtype: {dtype!r} (float32 or float64)")
        self.save_hyperparameters()
        self.family = make_family(family, family_params)
        self.scenarios = {"ind": self.family}
        self.scenarios.update({name: self.family.shifted(**p) for name, p in (ood or {}).items()})
        self.dtype = getattr(torch, dtype)
        self._validation: list[tuple[str, Instances]] | None = None
        self._resumed_at: tuple[int, int] | None = None  # (epoch, batches trained) of a restored checkpoint

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the epoch (saved in every Lightning checkpoint)."""
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": int(self.trainer.current_epoch), "trained_batches": int(progress.processed)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self._resumed_at = (int(state["epoch"]), int(state["trained_batches"]))

    def _train_seed(self, index: int) -> int:
        if self.hparams.fixed_batch:
            return self.hparams.seed
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if self._resumed_at is not None and self._resumed_at[0] == epoch:
            # resumed mid-epoch: the loader restarted at 0 (each rank at its own first index)
            index += self._resumed_at[1] * self.trainer.world_size
        return self.hparams.seed + epoch * self.hparams.steps_per_epoch + index

    def train_dataloader(self) -> DataLoader:
        dataset = SeededBatches(self.family, self.hparams.batch_size, self.hparams.steps_per_epoch,
                                self._train_seed, self.dtype)
        return DataLoader(dataset, batch_size=1, shuffle=False, collate_fn=_single)

    def validation_batches(self) -> list[tuple[str, Instances]]:
        """The fixed validation scenarios with F* solved (cached)."""
        if self._validation is None:
            self._validation = []
            for index, (name, family) in enumerate(self.scenarios.items()):
                instances = family.sample(self.hparams.val_batch_size,
                                          seed=self.hparams.val_seed + index, dtype=self.dtype)
                instances.optimum()
                self._validation.append((name, instances))
        return self._validation

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, Instances):
            return batch.to(device=device)
        name, instances = batch
        return name, instances.to(device=device)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.validation_batches(), batch_size=1, shuffle=False, collate_fn=_single)
