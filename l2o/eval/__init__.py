"""Evaluation harness: rollouts, metrics, comparison tables and convergence plots."""

from l2o.eval.compare import compare
from l2o.eval.metrics import iterations_to, median, relative_suboptimality, speedup
from l2o.eval.plots import plot_convergence
from l2o.eval.rollout import Trajectory, rollout, unroll, unroll_objectives
from l2o.eval.report import classical_baselines, default_scenarios, evaluate_scenarios, in_double
from l2o.eval.tables import Table

__all__ = [
    "Table",
    "classical_baselines",
    "default_scenarios",
    "evaluate_scenarios",
    "in_double",
    "Trajectory",
    "compare",
    "iterations_to",
    "median",
    "plot_convergence",
    "relative_suboptimality",
    "rollout",
    "speedup",
    "unroll",
    "unroll_objectives",
]
