"""Evaluation harness: metrics edge cases, tables agree across formats, plots, compare."""

from __future__ import annotations

import csv
import importlib
import io
import json
import math

import pytest
import torch

from l2o.eval import (
    Table, compare, iterations_to, median, plot_convergence, relative_suboptimality, rollout, speedup,
)
from l2o.rules import FISTARule, ProxGDRule
from problems import LassoFamily, QuadraticFamily


def test_relative_suboptimality_and_iterations_to():
    objective = torch.tensor([[3.0, 10.0], [2.2, 5.0], [2.0, 4.0], [2.0, 4.0]])
    rel = relative_suboptimality(objective, torch.tensor([2.0, -1.0]))
    torch.testing.assert_close(rel[:, 0], torch.tensor([0.5, 0.1, 0.0, 0.0]))
    torch.testing.assert_close(rel[:, 1], torch.tensor([11.0, 6.0, 5.0, 5.0]))
    its = iterations_to(rel, 0.15)
    assert its[0] == 1 and math.isinf(its[1])


def test_relative_suboptimality_with_zero_optimum_is_finite_and_huge():
    rel = relative_suboptimality(torch.tensor([[1e-3]]), torch.tensor([0.0]))
    assert torch.isfinite(rel).all() and rel.item() > 1e30


def test_median_and_speedup_edge_cases():
    assert median(torch.tensor([3.0, 1.0, 2.0])) == 2.0
    assert median(torch.tensor([1.0, 2.0, 3.0, float("inf")])) == 2.5
    assert median(torch.tensor([1.0, float("inf"), float("inf")])) == float("inf")
    assert speedup(torch.tensor([100.0]), torch.tensor([25.0])) == 4.0
    assert speedup(torch.tensor([float("inf")]), torch.tensor([25.0])) == float("inf")
    assert speedup(torch.tensor([25.0]), torch.tensor([float("inf")])) == 0.0
    assert math.isnan(speedup(torch.tensor([float("inf")]), torch.tensor([float("inf")])))


def test_table_formats_hold_the_same_numbers(tmp_path):
    table = Table(["method", "value", "iters"])
    table.add(method="a", value=0.000123456, iters=float("inf"))
    table.add(method="b", value=2.5, iters=12.0)
    md, csv_path, json_path = table.save(tmp_path, "t")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    data = json.loads(json_path.read_text())
    assert [float(r["value"]) for r in rows] == [r["value"] for r in data["rows"]] == [0.000123456, 2.5]
    assert data["rows"][0]["iters"] == "inf"
    assert "| a | 1.23e-04 | inf |" in md.read_text()
    with pytest.raises(KeyError, match="unknown column"):
        table.add(nope=1)


def test_table_concat_keeps_every_row_and_the_union_of_columns():
    first, second = Table(["method", "value"]), Table(["method", "value", "extra"])
    first.add(method="a", value=1.0)
    second.add(method="b", value=2.0, extra=3)
    merged = Table.concat([first, second])
    assert merged.columns == ["method", "value", "extra"]
    assert merged.rows == [{"method": "a", "value": 1.0}, {"method": "b", "value": 2.0, "extra": 3}]
    with pytest.raises(ValueError, match="no tables"):
        Table.concat([])


def test_plot_writes_png(tmp_path):
    curves = {"x": torch.rand(11, 4), "y": torch.rand(11, 4) * 1e-3}
    path = plot_convergence(curves, tmp_path / "sub" / "plot.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_table_matches_rollouts():
    batch = LassoFamily.toy().sample(5, seed=2, dtype=torch.float64)
    methods = {"ISTA": ProxGDRule(), "FISTA": FISTARule()}
    table, curves = compare(methods, batch, 300, checkpoints=(10, 300), tolerances=(1e-2, 1e-4), baseline="ISTA")
    by_method = {r["method"]: r for r in table.rows}
    expected = relative_suboptimality(rollout(FISTARule(), batch, 300).objective, batch.optimum())
    assert by_method["FISTA"]["rel@300"] == median(expected[300])
    torch.testing.assert_close(curves["FISTA"], expected)
    assert by_method["ISTA"]["speedup_vs_ISTA"] == 1.0
    ista = iterations_to(curves["ISTA"], 1e-4)
    fista = iterations_to(expected, 1e-4)
    assert by_method["FISTA"]["speedup_vs_ISTA"] == median(ista) / median(fista) > 1.5
    with pytest.raises(KeyError, match="baseline"):
        compare(methods, batch, 5, baseline="Adam")


def test_time_to_tolerance_is_the_measured_time_of_the_step_that_reaches_it(monkeypatch):
    """``ms_to_eps`` reads the rollout's clock at each instance's first step within eps: with
    a clock that advances exactly 1 s per reading, it is the median of those steps (× 1000),
    it is inf where the tolerance is never reached, and ``Trajectory.seconds`` has one mark
    per iterate."""
    rollout_module = importlib.import_module("l2o.eval.rollout")  # the package exports a function of that name
    ticks = iter(range(10_000))
    monkeypatch.setattr(rollout_module.time, "perf_counter", lambda: float(next(ticks)))
    batch = LassoFamily.toy().sample(5, seed=2, dtype=torch.float64)
    trajectory = rollout(ProxGDRule(), batch, 40)
    torch.testing.assert_close(trajectory.seconds, torch.arange(41, dtype=torch.float64))
    table, curves = compare({"ISTA": ProxGDRule()}, batch, 40, checkpoints=(40,), tolerances=(1e-1, 1e-30))
    row = table.rows[0]
    assert row["ms_to_0.1"] == 1e3 * median(iterations_to(curves["ISTA"], 1e-1)) == 1e3 * row["iters<=0.1"] > 0
    assert row["iters<=1e-30"] == row["ms_to_1e-30"] == math.inf


def test_rollout_validates_arguments():
    batch = QuadraticFamily().sample(2, seed=0)
    with pytest.raises(ValueError, match="steps"):
        rollout(ProxGDRule(), batch, -1)
    with pytest.raises(ValueError, match="differentiable"):
        rollout(lambda g: torch.optim.SGD(g, lr=0.1), batch, 2, differentiable=True)
    zero = rollout(ProxGDRule(), batch, 0)
    assert zero.objective.shape == (1, 2)
    torch.testing.assert_close(zero.final, batch.x0())
