"""The ``l2o`` command line, run in-process on tiny settings: fit -> export -> zoo -> eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l2o.cli import main

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "gomath_lasso_toy.yaml"
TINY_FIT = [
    "--config", str(CONFIG), "--trainer.max_epochs=1", "--data.steps_per_epoch=2",
    "--data.batch_size=4", "--data.val_batch_size=4", "--model.horizon=20", "--model.unroll=10",
    "--model.val_steps=10", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
]


def test_fit_export_zoo_eval(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("L2O_ZOO", str(tmp_path / "zoo"))
    with_csv_log = [arg for arg in TINY_FIT if arg != "--trainer.logger=false"]
    assert main(["fit", *with_csv_log, f"--trainer.default_root_dir={tmp_path}"]) == 0
    checkpoint = next(tmp_path.rglob("last.ckpt"))

    fit_output = capsys.readouterr()
    assert "💡 Tip" not in fit_output.out + fit_output.err  # Lightning's advertising is quieted
    assert "not recommended to provide both args and command line" not in fit_output.out + fit_output.err
    assert main(["export", str(checkpoint), "gomath-cli", "--eval-batch", "3", "--eval-steps", "20"]) == 0
    card_path = tmp_path / "zoo" / "gomath-cli.json"
    card = json.loads(card_path.read_text())
    # an existing entry is never replaced silently
    capsys.readouterr()
    assert main(["export", str(checkpoint), "gomath-cli", "--eval-batch", "3", "--eval-steps", "5"]) == 2
    assert "exists" in capsys.readouterr().err and json.loads(card_path.read_text()) == card
    assert main(["export", str(checkpoint), "gomath-cli", "--eval-batch", "3", "--eval-steps", "20",
                 "--force"]) == 0
    assert main(["export", str(tmp_path / "missing.ckpt"), "gomath-x"]) == 2
    assert "no checkpoint file" in capsys.readouterr().err
    assert card["rule"] == "gomath" and card["training"]["family"] == "lasso"
    assert {r["method"] for r in card["evaluation"]["rows"]} >= {"gomath-cli", "FISTA"}
    curve = card["training"]["validation_curve"]  # from the run's metrics.csv
    assert curve and all("val/loss" in point and "step" in point for point in curve)

    capsys.readouterr()
    assert main(["zoo"]) == 0
    assert "gomath-cli: rule=gomath" in capsys.readouterr().out

    out = tmp_path / "eval"
    assert main(["eval", "gomath-cli", "--batch", "3", "--steps", "20", "--out", str(out), "--network-steps", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    printed = capsys.readouterr().out
    assert (out / "report.md").read_text().strip() in printed
    assert (out / "networks.md").read_text().strip() in printed and "gomath-cli" in (out / "networks.csv").read_text()
    assert {r["scenario"] for r in report["rows"]} == {"InD", "OOD: A scaled x3", "OOD: x0 shifted +5"}
    assert len(list(out.glob("convergence-*.png"))) == 3
    # the checkpoint itself evaluates too
    assert main(["eval", str(checkpoint), "--batch", "2", "--steps", "10", "--out", str(out), "--network-steps", "0"]) == 0


def test_help_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    printed = capsys.readouterr().out
    assert exit_info.value.code == 0 and all(c in printed for c in ("fit", "export", "zoo", "eval", "demo"))
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


def test_empty_zoo_is_reported(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("L2O_ZOO", str(tmp_path / "none"))
    assert main(["zoo"]) == 0
    assert "is empty" in capsys.readouterr().out


def test_demo_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "report.md").read_text().strip() in printed
    assert "GoMathL2O (demo)" in printed and (out / "gomath-demo.safetensors").is_file()


def test_every_option_has_help_and_its_default(capsys):
    for command, option in (("eval", "--batch"), ("eval", "--seed"), ("eval", "--out"), ("export", "--eval-batch")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        line = text[text.index(option):].split("\n--")[0]
        assert "default" in line, (command, option)
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    assert "log_relative" in text and "T, optimizer steps per training batch" in text
