"""Meta-training runs that survive interruption.

* :func:`checkpoint_callbacks`: the best checkpoint by ``val/loss`` plus ``last.ckpt``
  rewritten every ``every_n_steps`` meta-steps (optimizer steps of the rule's weights);
* :class:`CheckpointOnSignal`: on SIGINT (Ctrl-C) or SIGTERM (a scheduler's kill), the
  current batch finishes, ``last.ckpt`` is written and training stops; a second signal
  stops at once without a checkpoint;
* :func:`find_last_checkpoint`: what ``l2o fit ... --ckpt_path last`` resumes from — the
  newest ``last.ckpt`` under ``<root>/lightning_logs/version_*/checkpoints`` (Lightning's
  own ``"last"`` only looks in the *new* run's empty version directory).

A resumed run continues exactly: the data stream position is in the data module's state
(:class:`l2o.meta.ProblemDataModule`), the rules' random states are seeded by the step.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

LAST = "last.ckpt"
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def checkpoint_callbacks(every_n_steps: int) -> list[L.Callback]:
    """``[best by val/loss, last every n meta-steps, last on SIGINT/SIGTERM]``."""
    if not isinstance(every_n_steps, int) or every_n_steps < 1:
        raise ValueError(f"Invalid checkpoint interval: {every_n_steps!r} (a positive number of meta-steps)")
    periodic = ModelCheckpoint(every_n_train_steps=every_n_steps, save_top_k=0, save_last=True)
    return [ModelCheckpoint(monitor="val/loss", filename="best-{step}"), periodic, CheckpointOnSignal(periodic)]


class CheckpointOnSignal(L.Callback):
    """Write ``last.ckpt`` (in ``periodic``'s directory) at the end of the batch during
    which SIGINT or SIGTERM arrived, then stop training.

    Attributes:
        received: the signal number that stopped training, or None.
    """

    def __init__(self, periodic: ModelCheckpoint) -> None:
        self.periodic = periodic
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.received = None
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.received is not None and not trainer.should_stop:
            path = Path(self.periodic.dirpath) / LAST
            trainer.save_checkpoint(path)
            trainer.should_stop = True
            print(f"\nstopped by signal {signal.Signals(self.received).name} at meta-step "
                  f"{trainer.global_step}; wrote {path}. Resume with the same command plus --ckpt_path last",
                  flush=True)

    def teardown(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def find_last_checkpoint(root: str | Path) -> Path | None:
    """The newest ``last.ckpt`` of the runs under ``root/lightning_logs``, or None."""
    candidates = list(Path(root).glob(f"lightning_logs/version_*/checkpoints/{LAST}"))
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def run_version(checkpoint: Path) -> int | None:
    """The logger version of ``.../version_N/checkpoints/last.ckpt`` (N), or None."""
    name = checkpoint.parent.parent.name
    return int(name.split("_", 1)[1]) if name.startswith("version_") and name[8:].isdigit() else None
