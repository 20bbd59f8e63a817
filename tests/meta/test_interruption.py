"""``l2o fit`` killed mid-epoch and resumed with ``--ckpt_path last`` ends with exactly the
weights of an uninterrupted run (issue 14), from the command line as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from l2o.meta.checkpointing import find_last_checkpoint

CONFIG = """\
seed_everything: 0
trainer:
  max_epochs: 2
  log_every_n_steps: 5
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  accelerator: cpu
model:
  rule: gomath
  rule_config: {hidden_size: 8, num_layers: 1}
  horizon: 20
  unroll: 10
  lr: 0.01
  val_steps: 10
data:
  family: lasso
  family_params: {m: 10, n: 20, sparsity: 3, l1: 0.1}
  batch_size: 8
  steps_per_epoch: 40
  val_batch_size: 8
"""
META_STEPS_PER_EPOCH = 40 * 2  # batches × truncated segments (horizon / unroll)


def _fit(config: Path, root: Path, *extra: str, every: str = "1") -> subprocess.Popen:
    command = [sys.executable, "-m", "l2o.cli", "fit", "--config", str(config),
               "--trainer.default_root_dir", str(root), "--checkpoint_every", every, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return {k: v for k, v in state["state_dict"].items()}, state["global_step"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The final weights of an uninterrupted run."""
    root = tmp_path_factory.mktemp("straight")
    config = root / "tiny.yaml"
    config.write_text(CONFIG)
    run = _fit(config, root)
    assert run.wait(timeout=300) == 0, run.communicate()[0]
    return _weights(root / "lightning_logs/version_0/checkpoints/last.ckpt")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_run_resumes_with_ckpt_path_last_to_identical_weights(tmp_path, sig, straight):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    interrupted_root = tmp_path / "interrupted"
    run = _fit(config, interrupted_root)
    deadline = time.monotonic() + 120
    while find_last_checkpoint(interrupted_root) is None:  # training has started
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)
    run.send_signal(sig)
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 128 + sig, output
    assert "Resume with the same command plus --ckpt_path last" in output
    _, stopped_at = _weights(find_last_checkpoint(interrupted_root))
    assert 0 < stopped_at < META_STEPS_PER_EPOCH, "stopped mid-epoch (else the test proves less)"

    resumed = _fit(config, interrupted_root, "--ckpt_path", "last")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming from" in output and "version_0" in output
    expected, steps = straight
    got, resumed_steps = _weights(find_last_checkpoint(interrupted_root))
    assert steps == resumed_steps == 2 * META_STEPS_PER_EPOCH
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)


def test_ckpt_path_last_without_a_previous_run_starts_from_scratch(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.replace("max_epochs: 2", "max_epochs: 1").replace("steps_per_epoch: 150",
                                                                               "steps_per_epoch: 3"))
    run = _fit(config, tmp_path / "fresh", "--ckpt_path", "last")
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0 and "training from the start" in output, output


def test_an_invalid_checkpoint_interval_is_refused(tmp_path):
    run = _fit(tmp_path / "missing.yaml", tmp_path, every="0")
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 2 and "Invalid checkpoint interval" in output
