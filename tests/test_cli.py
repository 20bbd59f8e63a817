"""The ``l2o`` command line, run in-process on tiny settings."""

from __future__ import annotations

import json

import pytest

from l2o.cli import main


def test_demo_writes_consistent_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--m", "10", "--n", "20", "--batch", "3", "--steps", "60", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "demo.json").read_text())
    assert {r["scenario"] for r in data["rows"]} == {"InD", "OOD: A scaled x3", "OOD: x0 shifted +5"}
    assert (out / "demo.md").read_text().strip() in printed
    assert len(list(out.glob("convergence_*.png"))) == 3


def test_help_and_unknown_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
