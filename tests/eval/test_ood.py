"""`l2o eval-ood`: the report's numbers are the run's, reruns are identical, shifts are right."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from l2o import zoo
from l2o.cli import main
from l2o.eval.ood import describe_plan, ood_scenarios, plan_ood
from l2o.eval.tables import _format
from l2o.rules import GoMathRule, NTKGDRule, ZORule
from problems import ImageLassoFamily, LassoFamily, QuadraticFamily

TOY = {"m": 20, "n": 40, "sparsity": 5, "l1": 0.1}


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    directory = tmp_path / "zoo"
    monkeypatch.setenv("L2O_ZOO", str(directory))
    torch.manual_seed(0)
    zoo.save(GoMathRule(hidden_size=4), directory / "gomath-tiny", training={"family": "lasso", "family_params": TOY})
    zoo.save(NTKGDRule(hidden_size=8), directory / "ntk-tiny",
             training={"family": "quadratic", "family_params": {"m": 8, "n": 5}})
    zoo.save(ZORule("learned", q=2), directory / "zo-tiny",
             training={"family": "least_squares", "family_params": {"m": 8, "n": 4}})
    return directory


def _markdown_rows(report: str, entry: str) -> list[list[str]]:
    section = report.split(f"## {entry}\n", 1)[1].split("\n## ", 1)[0]
    table = section.split("| scenario | method |", 1)[1].split("\n\n", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_report_tables_match_the_json_of_the_same_run_and_reruns_are_identical(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "ood"
    args = ["eval-ood", "--out", str(out), "--batch", "3", "--steps", "15", "--no-progress", "--network-steps", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "survives" in printed and "real networks" in printed
    payload = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert payload["settings"]["command"] == "l2o " + " ".join(args)
    assert {e["name"] for e in payload["settings"]["entries"]} == {"gomath-tiny", "ntk-tiny", "zo-tiny"}
    assert any(r["method"] == "ZO-Align (q=2)" for r in payload["rows"])
    for entry in ("gomath-tiny", "ntk-tiny", "zo-tiny"):
        rows = [r for r in payload["rows"] if r["entry"] == entry]
        columns = [c for c in payload["columns"] if c != "entry"]
        markdown = _markdown_rows(report, entry)
        assert len(markdown) == len(rows) > 0
        for cells, row in zip(markdown, rows):
            expected = [_format(float(row[c])) if isinstance(row.get(c), (int, float)) or row.get(c) in ("inf", "nan")
                        else str(row.get(c, "")) for c in columns]
            assert cells == expected
    for scenario in payload["settings"]["entries"][0]["scenarios"]:
        assert (out / scenario["plot"]).stat().st_size > 1000
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(payload["rows"])
    networks = payload["networks"]  # every entry and the 6 torch baselines on both tasks, in the report too
    assert {r["method"] for r in networks} >= {"gomath-tiny", "ntk-tiny", "zo-tiny", "Adam lr=0.1", "SGD lr=1"}
    assert len(networks) == 2 * (3 + 6) == len((out / "networks.csv").read_text().strip().splitlines()) - 1
    assert "## Real networks" in report and _format(float(networks[0]["loss@4"])) in report

    assert main(args[:2] + [str(tmp_path / "again")] + args[3:]) == 0
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    def untimed(rows):  # wall times differ between runs; everything else must not
        return [{k: v for k, v in row.items() if not k.startswith("ms_to_")} for row in rows]

    assert untimed(again["rows"]) == untimed(payload["rows"])
    assert all(f"ms_to_{eps}" in payload["columns"] for eps in ("0.01", "0.0001"))
    assert [r["loss@4"] for r in again["networks"]] == [r["loss@4"] for r in networks]


def test_every_scenario_changes_only_what_its_name_says():
    family = LassoFamily.toy()
    scenarios = ood_scenarios(family, "lasso")
    assert scenarios["InD"] is family
    assert scenarios["x0: shifted +50"] == family.shifted(x0_shift=50.0)
    assert scenarios["objective: lambda x5"] == family.shifted(l1=0.5)
    assert scenarios["objective: dimensions x2"] == family.shifted(m=40, n=80, sparsity=10)
    assert isinstance(scenarios["real: image patches (LASSO)"], ImageLassoFamily)
    quadratic = ood_scenarios(QuadraticFamily(), "quadratic")  # no λ, sparsity or noise
    assert not any(name.startswith(("objective: lambda", "objective: sparsity", "objective: noise"))
                   for name in quadratic)
    assert scenarios["objective: f(x + t), t = 10"] == family.shifted(objective_shift=10.0)
    for name, shifted in scenarios.items():
        if not name.startswith("real"):
            changed = {f.name for f in dataclasses.fields(family)
                       if getattr(family, f.name) != getattr(shifted, f.name)}
            assert changed <= {"data_scale", "l1", "sparsity", "noise_std", "m", "n", "x0_shift", "x0_std",
                               "objective_shift"}


def test_eval_ood_refuses_an_unknown_entry(tiny_zoo, tmp_path, capsys):
    assert main(["eval-ood", "--zoo", "nope", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    assert "no zoo entry 'nope'" in capsys.readouterr().err


STRONGEST = {"lasso": "FISTA-restart", "logistic_l1": "FISTA-restart", "least_squares": "BFGS-Armijo",
             "quadratic": "BFGS-Armijo", "logistic": "BFGS-Armijo"}


def test_the_default_plan_covers_every_shipped_entry_quickly(monkeypatch):
    """Without running anything: every zoo entry, on InD, an objective shift, an x0 shift and
    real data, against itself safeguarded and the strongest classical baseline of its kind."""
    monkeypatch.delenv("L2O_ZOO", raising=False)
    plan = plan_ood()
    assert {p.name for p in plan} == set(zoo.list()) and len(plan) >= 12
    for p in plan:
        names = list(p.scenarios)
        assert names[0] == "InD"
        assert sum(n.startswith("objective:") for n in names) == 1, (p.name, names)
        assert sum(n.startswith("x0:") for n in names) == 1, (p.name, names)
        assert sum(n.startswith("real:") for n in names) == 1, (p.name, names)
        assert len(names) == 4
        methods = list(p.methods)
        assert methods[:2] == [p.name, f"{p.name}+safeguard"]
        if p.name.startswith("zo-"):
            assert any(m.startswith("ZO-Align") for m in methods) and any(m.startswith("ZO-Avg") for m in methods)
        else:
            assert methods[2:] == [STRONGEST[p.family_name]], (p.name, methods)
    full = plan_ood(full=True)
    assert all(len(f.scenarios) > len(q.scenarios) and len(f.methods) > len(q.methods) for f, q in zip(full, plan))
    text = describe_plan(plan, batch=64, steps=200)
    assert f"{len(plan)} entries" in text and all(p.name in text for p in plan)


def test_entries_on_the_same_family_share_instances_and_optimum(tiny_zoo, tmp_path, monkeypatch):
    """Two entries trained on the same family: each scenario's instances are drawn and F*
    solved once."""
    torch.manual_seed(1)
    zoo.save(GoMathRule(hidden_size=4), tiny_zoo / "gomath-tiny2", training={"family": "lasso", "family_params": TOY})
    solves = []
    original = LassoFamily.sample

    def counting(self, batch, *args, **kwargs):
        if batch == 3:  # the run's batch (the untimed warm-up draws 2 instances)
            solves.append(self)
        return original(self, batch, *args, **kwargs)
    monkeypatch.setattr(LassoFamily, "sample", counting)
    assert main(["eval-ood", "--zoo", "gomath-tiny", "gomath-tiny2", "--out", str(tmp_path / "o"),
                 "--batch", "3", "--steps", "10", "--no-progress", "--network-steps", "0"]) == 0
    lasso_scenarios = [p for p in plan_ood(["gomath-tiny"])[0].scenarios.values() if isinstance(p, LassoFamily)]
    assert len(solves) == len(lasso_scenarios)
