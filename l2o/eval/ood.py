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

Two plans (:func:`plan_ood`). The default, quick one covers every entry on InD, one
objective shift, one initial-point shift and the real-data family of its kind, against
the entry under the safeguard and the strongest classical baseline of its family
(:func:`strongest_baselines`); ``full=True`` is the whole matrix (every shift, every
baseline). Shared work is done once: a scenario's instances and F* are drawn and solved
once and reused by every method and by every entry trained on the same family.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import torch

from l2o import __version__, zoo
from l2o.eval.compare import compare
from l2o.eval.rollout import rollout
from l2o.eval.plots import method_styles, plot_convergence, plot_filename
from l2o.eval.report import classical_baselines
from l2o.eval.tables import Table
from l2o.rules import BFGSRule, FISTARule, LearnedBFGSRule, SafeguardedRule, UpdateRule, ZORule
from problems import FAMILIES, ImageLassoFamily, Instances, IrisLogisticL1Family, ProblemFamily

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
    "objective: f(x + t), t = 10": lambda f: {"objective_shift": f.objective_shift + 10.0},
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


#: the quick plan's shifts: the first of each list that applies to the family.
QUICK_SHIFTS = (("objective: A scaled x3", "objective: f(x + t), t = 10"), ("x0: shifted +5",))


def _shift(family: ProblemFamily, name: str) -> ProblemFamily | None:
    """``family`` under the named shift, or None where it does not apply."""
    fields = {field.name for field in dataclasses.fields(family)}
    try:
        params = SHIFTS[name](family)
    except AttributeError:
        return None
    return family.shifted(**params) if params and set(params) <= fields else None


def real_data_scenario(family: ProblemFamily, family_name: str) -> tuple[str, ProblemFamily] | None:
    """The real-data family of the entry's kind (:mod:`problems.real_data`), or None."""
    if family_name == "lasso":
        return "real: image patches (LASSO)", ImageLassoFamily(l1=family.l1)
    if family_name in ("least_squares", "quadratic"):
        return "real: image patches (least squares)", ImageLassoFamily(l1=0.0, n=32)
    if family_name == "logistic_l1":
        return "real: Iris (sparse logistic)", IrisLogisticL1Family(l1=family.l1)
    if family_name == "logistic":
        return "real: Iris (ridge logistic)", IrisLogisticL1Family(l1=0.0, ridge=family.ridge)
    return None


def ood_scenarios(family: ProblemFamily, family_name: str, full: bool = True) -> dict[str, ProblemFamily]:
    """InD, the shifts of ``family`` (all that apply, or with ``full=False`` the first
    applicable of each :data:`QUICK_SHIFTS` group) and the real-data family of its kind."""
    scenarios: dict[str, ProblemFamily] = {"InD": family}
    groups = [(name,) for name in SHIFTS] if full else QUICK_SHIFTS
    for group in groups:
        for name in group:
            shifted = _shift(family, name)
            if shifted is not None:
                scenarios[name] = shifted
                break
    real = real_data_scenario(family, family_name)
    if real is not None:
        scenarios[real[0]] = real[1]
    return scenarios


def strongest_baselines(rule: UpdateRule, family_name: str) -> dict[str, UpdateRule]:
    """The classical method a user would pick against ``rule`` on its family: FISTA with
    restart for LASSO / sparse logistic, BFGS with an Armijo search for smooth problems, the
    classical ZO aggregators at the same queries for a learned ZO aggregator."""
    if isinstance(rule, ZORule):
        return method_baselines(rule)
    if family_name in ("lasso", "logistic_l1"):
        return {"FISTA-restart": FISTARule(restart=True)}
    initial = rule.initial if isinstance(rule, LearnedBFGSRule) else "lipschitz"
    return {"BFGS-Armijo": BFGSRule("armijo", initial=initial)}


@dataclasses.dataclass
class PlannedEntry:
    """One zoo entry of a plan: its rule (its network as trained, float32), family, scenarios and methods."""

    name: str
    family_name: str
    family_params: dict[str, Any]
    scenarios: dict[str, ProblemFamily]
    methods: dict[str, UpdateRule]


def plan_ood(names: Iterable[str] | None = None, full: bool = False) -> list[PlannedEntry]:
    """What :func:`evaluate_ood` runs, without running it (module docstring)."""
    names = list(zoo.list() if names is None else names)
    if not names:
        raise ValueError(f"no zoo entries to evaluate (the zoo at {zoo.zoo_directory()} is empty)")
    plan = []
    for name in names:
        entry = zoo.load(name)
        training = entry.card.get("training", {})
        family_name, params = training.get("family"), training.get("family_params") or {}
        if family_name not in FAMILIES:
            raise ValueError(f"zoo entry {name!r} has no known training family ({family_name!r})")
        rule = entry.rule.eval()
        baselines = {**method_baselines(rule), **classical_baselines()} if full \
            else strongest_baselines(rule, family_name)
        methods = {name: rule, f"{name}+safeguard": SafeguardedRule(rule), **baselines}
        scenarios = ood_scenarios(FAMILIES[family_name](**params), family_name, full=full)
        plan.append(PlannedEntry(name, family_name, params, scenarios, methods))
    return plan


def describe_plan(plan: list[PlannedEntry], batch: int, steps: int) -> str:
    """``entries × scenarios × methods`` of a plan, one line per entry."""
    runs = sum(len(p.scenarios) * len(p.methods) for p in plan)
    lines = [f"l2o eval-ood: {len(plan)} entries, {sum(len(p.scenarios) for p in plan)} scenarios, "
             f"{runs} method runs of {batch} instances x {steps} steps"]
    lines += [f"  {p.name} ({p.family_name}): {len(p.scenarios)} scenarios x {len(p.methods)} methods "
              f"[{', '.join(p.scenarios)}] x [{', '.join(p.methods)}]" for p in plan]
    return "\n".join(lines)


#: seconds ≈ s + a·M·T + b·M·T·B·size + c·B·size for M methods of T steps on B instances
#: of ``size = m·n``: a per-scenario constant (sampling, the plot), per-step overhead, the
#: arithmetic and the F* solve; least-squares fitted to the 172 scenarios of a ``--full``
#: and a default run on a 2-core CPU (torch 2.13, float64). Another machine scales them by
#: one factor, measured on the first scenario.
COST_PER_SCENARIO, COST_PER_STEP, COST_PER_ELEMENT_STEP, COST_PER_ELEMENT_SOLVE = 1.21, 5.21e-4, 1.59e-9, 2.18e-6


def _cost(family: ProblemFamily, batch: int, steps: int, methods: int) -> float:
    """Predicted seconds of one scenario on the reference machine (see the constants)."""
    params = family.parameters()
    size = params.get("m", params.get("size", 8) ** 2) * params.get("n", 4)
    work = methods * steps
    return (COST_PER_SCENARIO + COST_PER_STEP * work + COST_PER_ELEMENT_STEP * work * batch * size
            + COST_PER_ELEMENT_SOLVE * batch * size)


@dataclasses.dataclass
class OODReport:
    """The matrix as one table (``results``) plus the run's settings."""

    results: Table
    settings: dict[str, Any]
    #: the entries as drop-ins on real networks (:mod:`l2o.eval.networks`), if run
    networks: Table | None = None

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
            f"Command: `{s['command']}` ({'the full matrix' if s.get('full') else 'the quick plan; --full for every shift and baseline'}, "
            f"{s.get('seconds', float('nan')):.0f} s)  ",
            f"l2o {s['version']}; {s['batch']} float64 instances per scenario, {s['steps']} steps; "
            f"scenario i of an entry is drawn with seed {s['seed']} + i (listed below).  ",
            "rel@k: median (F(x_k) - F*)/|F*|; iters<=eps: median iterations to reach eps "
            "(inf: not within the horizon); diverged: fraction of instances ending non-finite or worse than "
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
        if self.networks is not None:
            lines += ["", "## Real networks: every entry as a drop-in", "", NETWORKS_INTRO.format(
                steps=s["network_steps"]), "", self.networks.to_markdown()]
        return "\n".join(lines) + "\n"

    def save(self, out: str | Path) -> list[Path]:
        """Write ``report.md``, ``results.csv`` and ``results.json`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"settings": self.settings, **json.loads(self.results.to_json())}
        files = {"report.md": self.to_markdown(), "results.csv": self.results.to_csv()}
        if self.networks is not None:
            payload["networks"] = json.loads(self.networks.to_json())["rows"]
            files["networks.csv"] = self.networks.to_csv()
        files["results.json"] = json.dumps(payload, indent=2) + "\n"
        for name, text in files.items():
            (out / name).write_text(text)
        return [out / name for name in files]


NETWORKS_INTRO = (
    "Each entry as `LearnedOptimizer(params, rule=NAME)` (no lr, no lipschitz; safeguarded by "
    "`step(closure)`), the ZO entry as `ZOOptimizer(aggregator=NAME)`, against `torch.optim.Adam` "
    "and `SGD` on a learning-rate grid, {steps} full-batch steps on scikit-learn's digits "
    "(64-16-10 tanh MLP) and breast cancer (30-8-1 tanh MLP) data; loss and wall seconds are "
    "medians over 2 initializations, measured one after the other in this run "
    "(`l2o.eval.networks`).")


def _warm_up(entry: PlannedEntry) -> None:
    """Two steps of every method of ``entry`` on two instances of its first scenario."""
    instances = next(iter(entry.scenarios.values())).sample(2, seed=0, dtype=torch.float64)
    for method in entry.methods.values():
        rollout(method, instances, 2)


def evaluate_ood(
    names: Iterable[str] | None = None, *, out: str | Path, batch: int = 64, steps: int = 200,
    seed: int = 20_000, full: bool = False, progress: bool = True, command: str | None = None,
    network_steps: int = 200,
) -> OODReport:
    """Evaluate the zoo entries ``names`` (default: all) on their :func:`plan_ood` (quick,
    or the whole matrix with ``full``) and, for ``network_steps > 0``, as drop-ins on the
    real networks of :mod:`l2o.eval.networks`; print the plan and, after the first scenario,
    an estimate of the time of the matrix; write the report, CSV, JSON and
    ``{entry}-<scenario>.png`` plots into ``out``."""
    from l2o.eval.networks import evaluate_networks

    from tqdm.auto import tqdm

    plan = plan_ood(names, full=full)
    # entries of the same training family next to each other, so their shared instances are freed after them
    plan.sort(key=lambda p: (p.family_name, json.dumps(p.family_params, sort_keys=True)))
    out = Path(out)
    if progress:
        print(describe_plan(plan, batch, steps), file=sys.stderr, flush=True)
    costs = [[_cost(family, batch, steps, len(p.methods)) for family in p.scenarios.values()] for p in plan]
    total = sum(map(sum, costs))
    shared: dict[tuple[ProblemFamily, int], Instances] = {}  # (family, seed) -> instances with F* solved
    tables, entries = [], []
    styles: dict[str, dict[str, str]] = {}  # one style per method across the whole report
    _warm_up(plan[0])  # one-off costs (first kernels, allocations) stay out of the timed first scenario
    started = time.perf_counter()
    with tqdm(total=round(total, 1), desc="l2o eval-ood", disable=not progress, file=sys.stderr,
              bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]") as bar:
        for p, entry_costs in zip(plan, costs):
            record = {"name": p.name, "family": p.family_name, "family_params": p.family_params, "scenarios": []}
            if shared and not any(key[0] in p.scenarios.values() for key in shared):
                shared.clear()  # another family: free the previous one's instances
            for index, ((scenario, family), cost) in enumerate(zip(p.scenarios.items(), entry_costs)):
                bar.set_postfix_str(f"{p.name}: {scenario}")
                scenario_start = time.perf_counter()
                key = (family, seed + index)
                if key not in shared:
                    shared[key] = family.sample(batch, seed=seed + index, dtype=torch.float64)
                table, curves = compare(p.methods, shared[key], steps, checkpoints=(10, 50, steps),
                                        tolerances=(1e-2, 1e-4), baseline=None, scenario=scenario)
                plot = plot_filename(scenario, prefix=p.name)
                styles.update({m: v for m, v in method_styles([*styles, *p.methods]).items() if m not in styles})
                plot_convergence(curves, out / plot, title=f"{p.name}: {scenario}", styles=styles)
                tables.append(Table(["entry", *table.columns], [{"entry": p.name, **row} for row in table.rows]))
                record["scenarios"].append({"name": scenario, "seed": seed + index, "plot": plot,
                                            "family_params": family.parameters(),
                                            "seconds": round(time.perf_counter() - scenario_start, 2)})
                if progress and not tables[1:]:
                    first = time.perf_counter() - started
                    bar.write(f"estimated total: {first / cost * total / 60:.1f} min (a cost model of every "
                              f"scenario, scaled by the first one's {first:.1f} s against its predicted "
                              f"{cost:.1f} s)", file=sys.stderr)
                bar.update(round(cost, 1))
            entries.append(record)
    networks = None
    if network_steps > 0:
        if progress:
            print(f"real networks: {len(plan)} entries and 6 torch baselines as drop-ins, {network_steps} steps",
                  file=sys.stderr, flush=True)
        networks = evaluate_networks({p.name: p.methods[p.name] for p in plan}, steps=network_steps)
    settings = {"command": command or "l2o eval-ood", "version": __version__, "batch": batch,
                "steps": steps, "seed": seed, "full": full, "network_steps": network_steps,
                "seconds": round(time.perf_counter() - started, 1), "entries": entries}
    report = OODReport(Table.concat(tables), settings, networks)
    report.save(out)
    return report
