"""InD + OOD evaluation of several methods on one family: a merged table and plots."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from l2o.eval.compare import compare
from l2o.eval.plots import method_styles, plot_convergence, plot_filename
from l2o.eval.rollout import Method
from l2o.eval.tables import Table
from l2o.rules import AdamHDRule, AdamRule, FISTARule, ProxGDRule, UpdateRule
from problems import ProblemFamily


def classical_baselines() -> dict[str, UpdateRule]:
    """The classical baselines every comparison includes.

    Adam and Adam-HD take the settings of the official GoMathL2O baselines
    (``scripts/final/2_lasso_ind_baseline.sh`` of NetX-lab/GoMathL2O-Official): Adam with
    lr 1e-2 and betas (0.1, 0.1); Adam-HD with α_0 = 0.1, betas (0.001, 0.1), the additive
    hypergradient with β = 1e-7 and the floor α >= 1e-8. One difference is kept on purpose:
    the official Adam-HD adapts one α for the whole batch (its inner product runs over
    every instance), l2o's one α per instance, so an instance's run does not depend on the
    others in its batch.
    """
    return {
        "ISTA": ProxGDRule(),
        "FISTA": FISTARule(),
        "FISTA-restart": FISTARule(restart=True),
        "Adam": AdamRule(lr=1e-2, betas=(0.1, 0.1)),
        "Adam-HD": AdamHDRule(lr=0.1, hypergrad_lr=1e-7, betas=(0.001, 0.1), min_lr=1e-8),
    }


def default_scenarios(family: ProblemFamily) -> dict[str, ProblemFamily]:
    """InD, objective OOD (data scaled ×3) and initial-point OOD (x0 shifted by +5)."""
    return {
        "InD": family,
        "OOD: A scaled x3": family.shifted(data_scale=3.0),
        "OOD: x0 shifted +5": family.shifted(x0_shift=5.0),
    }


def in_double(rule: UpdateRule) -> UpdateRule:
    """A float64 copy of ``rule``: its network in float64 as well as its iterates.

    The evaluations (``l2o eval``, ``eval-ood``, the demo and the reproduction scripts) do not
    use it: they run a rule's network in the dtype it was trained in (float32) on float64
    instances, as a user deploys it, iterates and features in float64. Every zoo entry reaches
    1e-4 in the same median iterations either way, its float32 network 1.0–4.1× faster per step
    (``scripts/network_dtype.py``; ``tests/eval/test_network_dtype.py`` checks the iterations)."""
    return copy.deepcopy(rule).to(torch.float64)


def evaluate_scenarios(
    methods: dict[str, Method],
    scenarios: dict[str, ProblemFamily],
    *,
    batch: int,
    steps: int,
    seed: int = 0,
    baseline: str | None = "FISTA",
    out: str | Path | None = None,
    title: str = "",
    tolerances: tuple[float, ...] = (1e-2, 1e-4),
    timing: bool = False,
) -> Table:
    """Compare ``methods`` on one float64 batch per scenario (seed ``seed + index``);
    ``timing`` adds means and wall times (:func:`~l2o.eval.compare`).

    Writes ``report.{md,csv,json}`` and a ``convergence-<scenario>.png`` per scenario
    (:func:`~l2o.eval.plots.plot_filename`; one style per method throughout) into ``out`` if given.
    """
    tables = []
    styles = method_styles(methods)
    for index, (name, family) in enumerate(scenarios.items()):
        instances = family.sample(batch, seed=seed + index, dtype=torch.float64)
        table, curves = compare(
            methods, instances, steps, checkpoints=(10, 50, steps), tolerances=tolerances,
            baseline=baseline, scenario=name, timing=timing,
        )
        tables.append(table)
        if out is not None:
            plot_convergence(curves, Path(out) / plot_filename(name), title=f"{title}{name}", styles=styles)
    if not tables:
        raise ValueError("no scenarios to evaluate")
    merged = Table.concat(tables)
    if out is not None:
        merged.save(out, "report")
    return merged
