"""``scripts/benchmark.py`` runs every section end to end at tiny sizes and writes what it prints."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import torch

from l2o.rules import build_rule, native_network

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_section_runs_and_reports_finite_ratios(tmp_path):
    command = [
        sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--no-compile", "--out", str(tmp_path),
        "--sections", "throughput", "step", "fresh_step", "amortized", "zo_memory",
        "--rules", "gomath", "ntk_gd", "--m", "10", "--n", "20", "--batch", "4", "--per-instance", "2",
        "--unroll", "3", "--sizes", "300000", "--zoo", "gomath-lasso-toy", "ntk-gd-qp",
        "--amortized-zoo", "gomath-lasso-toy", "--amortized-designs", "paper:0", "40:0.5", "--instances", "8", "2000",
        "--max-data-gb", "0.01", "--data-dtypes", "float32", "--cvxpy-instances", "2",
        "--tolerance", "1e-3", "--max-steps", "400", "--repeats", "1", "--amortized-repeats", "1", "--memory-batch", "8",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ratio_column = {"throughput": "ratio", "step": "vs Adam", "fresh_step": "unpinned / pinned",
                    "amortized": "speedup vs cvxpy", "zo_memory": "ZO / backprop"}
    for section, column in ratio_column.items():
        rows = json.loads((tmp_path / f"{section}.json").read_text())["rows"]
        assert rows, section
        for row in rows:
            assert math.isfinite(row[column]) and row[column] > 0, (section, row)
        assert (tmp_path / f"{section}.md").read_text().strip() in result.stdout  # printed = written
    throughput = json.loads((tmp_path / "throughput.json").read_text())["rows"]
    assert [row["rule"] for row in throughput] == ["gomath", "ntk_gd"]
    step = json.loads((tmp_path / "step.json").read_text())["rows"]
    with torch.no_grad():  # where the native kernel runs the step, its other builds and the torch path run too
        native = build_rule("gomath")._native_kernel(torch.zeros(1, 3)) is not None
    narrower = {f"gomath-lasso-toy ({isa.name} kernel)" for isa in native_network.available()
                if isa != native_network.instruction_set()}
    assert {row["optimizer"] for row in step} == {
        "torch.optim.Adam", "l2o.optim.AdamHD", "l2o.optim.ProxGD", "gomath-lasso-toy", "ntk-gd-qp"} | (
        {"gomath-lasso-toy (torch path)", *narrower} if native else set())
    for lstm in [row for row in step if row["optimizer"].startswith("gomath-lasso-toy")]:
        for column in ("step / roofline", "step / floor", "products at shapes ms", "step / (products + σ)"):
            assert math.isfinite(lstm[column]) and lstm[column] > 0, column
    fresh = json.loads((tmp_path / "fresh_step.json").read_text())["rows"]
    assert {(row["optimizer"], row["malloc thresholds"]) for row in fresh} == {
        (name, label) for name in ("gomath-lasso-toy", "l2o.optim.ProxGD") for label in ("pinned", "glibc's own")}
    assert all(row["faults per process"] > 0 for row in fresh)
    amortized = json.loads((tmp_path / "amortized.json").read_text())["rows"]
    assert all(row["reached"] == 1.0 for row in amortized if not row["method"].startswith("cvxpy"))
    assert {(row["A"], row["instances"]) for row in amortized if not row["method"].startswith("cvxpy")} == {
        ("20×40, ρ 0", 8), ("40×40, ρ 0.5", 8)}  # 2000 instances exceed --max-data-gb
    assert "skipped: 2000 instances of 40×40, ρ 0.5 need 0.0256 GB" in result.stdout
