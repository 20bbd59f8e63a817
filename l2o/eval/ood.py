"""The OOD robustness matrix: zoo optimizers × their families × shifts × baselines.

For every zoo entry, the family it was trained on (its card) is evaluated InD and under
the shifts the GoMathL2O paper frames (objective OOD: scaled data, larger λ, denser
solutions, noise, twice the dimensions; initial-point OOD: x0 shifted or spread far from
the training starts) and, for LASSO and sparse logistic entries, on real data
(:mod:`problems.real_data`). Each scenario is one float64 batch drawn from a recorded seed;
the entry runs plain and under the safeguard (:class:`~l2o.rules.SafeguardedRule`) next to
the classical baselines. Everything is deterministic: a rerun gives identical numbers.

A method **survives** a scenario when no instance diverged (ended non-finite or worse than
it started) and its median relative suboptimality at the horizon is at most ``SURVIVAL``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Iterable

import torch

from l2o import __version__, zoo
from l2o.eval.compare import compare
from l2o.eval.plots import method_styles, plot_convergence, plot_filename
from l2o.eval.report import classical_baselines, in_double
from l2o.eval.tables import Table
from l2o.rules import BFGSRule, LearnedBFGSRule, SafeguardedRule, UpdateRule, ZORule
from problems import FAMILIES, ImageLassoFamily, IrisLogisticL1Family, ProblemFamily

SURVIVAL = 1e-2

# name -> (parameter changes as a function of the InD family); a shift is used when the
# family has its parameters and the change is not empty.
SHIFTS: dict[str, Any] = {
    "objective: A scaled x3": lambda f: {"data_scale": 3.0 * f.data_scale},
    "objective: lambda x5": lambda f: {"l1": 5.0 * f.l1} if f.l1 > 0 else {},
    "objective: sparsity x2": lambda f: {"sparsity": min(f.n, 2 * f.sparsity)},
    "objective: noise 0.1": lambda f: {"noise_std": 0.1},
    "objective: label noise 0.3": lambda f: {"label_noise": 0.3},
    "objective: dimensions x2": lambda f: {"m": 2 * f.m, "n": 2 * f.n}
    | ({"sparsity": 2 * f.sparsity} if hasattr(f, "sparsity") else {}),
    "x0: shifted +5": lambda f: {"x0_shift": f.x0_shift + 5.0},
    "x0: shifted +50": lambda f: {"x0_shift": f.x0_shift + 50.0},
    "x0: spread x10": lambda f: {"x0_std": 10.0 * max(f.x0_std, 1.0)},
}


def method_baselines(rule: UpdateRule) -> dict[str, UpdateRule]:
    """The classical counterparts of a learned rule's own method, next to the common
    baselines: BFGS with Armijo / hypergradient steps for learned BFGS, ZO-Avg and ZO-Align
    at the same queries per step for a learned ZO aggregator."""
    if isinstance(rule, LearnedBFGSRule):
        return {"BFGS-Armijo": BFGSRule("armijo", initial=rule.initial),
                "BFGS-HD": BFGSRule("hypergradient", hypergrad_lr=1e-2, initial=rule.initial)}
    if isinstance(rule, ZORule):
        config = {k: v for k, v in rule.config().items() if k not in ("aggregator", "lr", "hidden_size")}
        return {f"ZO-Avg (q={rule.q})": ZORule("avg", **config), f"ZO-Align (q={rule.q})": ZORule("align", **config)}
    return {}


def ood_scenarios(family: ProblemFamily, family_name: str) -> dict[str, ProblemFamily]:
    """InD, every applicable shift of ``family``, and the real-data family of its kind."""
    fields = {field.name for field in dataclasses.fields(family)}
    scenarios: dict[str, ProblemFamily] = {"InD": family}
    for name, change in SHIFTS.items():
        try:
            params = change(family)
        except AttributeError:
            continue
        if params and set(params) <= fields:
            scenarios[name] = family.shifted(**params)
    if family_name == "lasso":
        scenarios["real: image patches (LASSO)"] = ImageLassoFamily(l1=family.l1)
    elif family_name == "logistic_l1":
        scenarios["real: Iris (sparse logistic)"] = IrisLogisticL1Family(l1=family.l1)
    return scenarios


@dataclasses.dataclass
class OODReport:
    """The matrix as one table (``results``) plus the run's settings."""

    results: Table
    settings: dict[str, Any]

    def survival(self) -> dict[tuple[str, str], dict[str, bool]]:
        """``(entry, method) -> {scenario: survived}``."""
        table: dict[tuple[str, str], dict[str, bool]] = {}
        rel_final = f"rel@{self.settings['steps']}"
        for row in self.results.rows:
            survived = row["diverged"] == 0 and row[rel_final] <= SURVIVAL
            table.setdefault((row["entry"], row["method"]), {})[row["scenario"]] = survived
        return table

    def to_markdown(self) -> str:
        s = self.settings
        lines = [
            "# l2o OOD robustness report", "",
            f"Command: `{s['command']}`  ",
            f"l2o {s['version']}; {s['batch']} float64 instances per scenario, {s['steps']} steps; "
            f"scenario i of an entry is drawn with seed {s['seed']} + i (listed below).  ",
            "rel@k: median (F(x_k) - F*)/|F*|; iters<=eps: median iterations to reach eps "
            "(inf: not within the horizon); speedup: FISTA's median iterations to the tightest eps "
            "over the method's; diverged: fraction of instances ending non-finite or worse than "
            "they started; fallback_rate: fraction of safeguarded steps that fell back to "
            f"prox-gradient. Survives: diverged = 0 and median rel@{s['steps']} <= {SURVIVAL:g}.",
        ]
        survival = self.survival()
        for entry in s["entries"]:
            rows = [r for r in self.results.rows if r["entry"] == entry["name"]]
            columns = [c for c in self.results.columns if c != "entry"]
            if not any("fallback_rate" in r for r in rows):
                columns = [c for c in columns if c != "fallback_rate"]
            lines += ["", f"## {entry['name']}", "",
                      f"Trained on `{entry['family']}` {json.dumps(entry['family_params'])}.", "",
                      "| scenario | seed | plot |", "|---|---|---|"]
            lines += [f"| {sc['name']} | {sc['seed']} | {sc['plot']} |" for sc in entry["scenarios"]]
            lines += ["", Table(columns, rows).to_markdown(), "", "Survives:", ""]
            scenario_names = [sc["name"] for sc in entry["scenarios"]]
            lines += ["| method | " + " | ".join(scenario_names) + " |",
                      "|---|" + "---|" * len(scenario_names)]
            for (name, method), survived in survival.items():
                if name == entry["name"]:
                    marks = ["yes" if survived[sc] else "**no**" for sc in scenario_names]
                    lines.append(f"| {method} | " + " | ".join(marks) + " |")
        return "\n".join(lines) + "\n"

    def save(self, out: str | Path) -> list[Path]:
        """Write ``report.md``, ``results.csv`` and ``results.json`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"settings": self.settings, **json.loads(self.results.to_json())}
        files = {"report.md": self.to_markdown(), "results.csv": self.results.to_csv(),
                 "results.json": json.dumps(payload, indent=2) + "\n"}
        for name, text in files.items():
            (out / name).write_text(text)
        return [out / name for name in files]


def evaluate_ood(
    names: Iterable[str] | None = None, *, out: str | Path, batch: int = 64, steps: int = 200,
    seed: int = 20_000, progress: bool = True, command: str | None = None,
) -> OODReport:
    """Evaluate the zoo entries ``names`` (default: all) on :func:`ood_scenarios` of their
    training family; write the report, CSV, JSON and ``{entry}-<scenario>.png`` plots into ``out``."""
    from tqdm.auto import tqdm

    names = list(zoo.list() if names is None else names)
    if not names:
        raise ValueError(f"no zoo entries to evaluate (the zoo at {zoo.zoo_directory()} is empty)")
    out = Path(out)
    plan = []
    for name in names:
        entry = zoo.load(name)
        training = entry.card.get("training", {})
        family_name, params = training.get("family"), training.get("family_params") or {}
        if family_name not in FAMILIES:
            raise ValueError(f"zoo entry {name!r} has no known training family ({family_name!r})")
        scenarios = ood_scenarios(FAMILIES[family_name](**params), family_name)
        plan.append((name, entry.rule, family_name, params, scenarios))
    total = sum(len(p[4]) for p in plan)
    tables = []
    entries = []
    styles: dict[str, dict[str, str]] = {}  # one style per method across the whole report
    with tqdm(total=total, desc="l2o eval-ood", disable=not progress, file=sys.stderr) as bar:
        for name, rule, family_name, params, scenarios in plan:
            rule = in_double(rule).eval()
            methods = {name: rule, f"{name}+safeguard": SafeguardedRule(rule), **method_baselines(rule),
                       **classical_baselines()}
            record = {"name": name, "family": family_name, "family_params": params, "scenarios": []}
            for index, (scenario, family) in enumerate(scenarios.items()):
                bar.set_postfix_str(f"{name}: {scenario}")
                instances = family.sample(batch, seed=seed + index, dtype=torch.float64)
                table, curves = compare(methods, instances, steps, checkpoints=(10, 50, steps),
                                        tolerances=(1e-2, 1e-4), baseline="FISTA", scenario=scenario)
                plot = plot_filename(scenario, prefix=name)
                styles.update({m: v for m, v in method_styles([*styles, *methods]).items() if m not in styles})
                plot_convergence(curves, out / plot, title=f"{name}: {scenario}", styles=styles)
                tables.append(Table(["entry", *table.columns], [{"entry": name, **row} for row in table.rows]))
                record["scenarios"].append({"name": scenario, "seed": seed + index, "plot": plot,
                                            "family_params": family.parameters()})
                bar.update()
            entries.append(record)
    settings = {"command": command or "l2o eval-ood", "version": __version__, "batch": batch,
                "steps": steps, "seed": seed, "entries": entries}
    report = OODReport(Table.concat(tables), settings)
    report.save(out)
    return report
