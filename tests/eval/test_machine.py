"""Saved tables name the machine that measured them, and REPRODUCTION.md says it per section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from l2o.eval import Table
from l2o.eval.machine import describe, summary

ROOT = Path(__file__).resolve().parents[2]


def test_a_saved_table_records_the_machine_beside_its_rows(tmp_path):
    table = Table(["q", "value"])
    table.add(q=1, value=float("inf"))
    table.save(tmp_path, "report")
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["rows"] == [{"q": 1, "value": "inf"}]
    assert payload["machine"] == describe()
    assert payload["machine"]["torch"] == torch.__version__ and payload["machine"]["threads"] == torch.get_num_threads()
    assert payload["machine"]["cpu"]


def test_the_summary_names_the_machine_or_says_it_was_not_recorded():
    machine = {"cpu": "Some CPU (family 1, model 2)", "logical_cpus": 4, "torch": "9.9", "threads": 3}
    assert summary(machine) == "Measured on Some CPU (family 1, model 2), 3 torch threads of 4 logical CPUs, torch 9.9."
    assert "GPU H" in summary({**machine, "gpu": "H"})
    assert summary(None).startswith("Machine not recorded")


def test_reproduction_md_names_each_sections_machine(tmp_path):
    out, written = tmp_path / "out", tmp_path / "REPRODUCTION.md"
    table = Table(["family", "aggregator", "q", "log10 rel mean"])
    for aggregator, q, value in (("avg", 1, -3.0), ("align", 8, -5.0), ("avg", 8, -2.0)):
        table.add(family="least_squares", aggregator=aggregator, q=q, **{"log10 rel mean": value})
    table.save(out / "zo_query_budget", "report")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "write_reproduction.py"), "--out", str(out),
                    "--to", str(written)], check=True, capture_output=True, cwd=ROOT)
    text = written.read_text()
    zo = text[text.index("The multi-query paradox"):]
    assert summary(describe()) in zo and "| least_squares | 1 | 8 | - |" in zo
    assert text.count("Measured on") == 1  # the other sections were not run: no machine to name
    assert "| not run |" in text[:text.index("The multi-query paradox")]
