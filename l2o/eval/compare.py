"""Side-by-side comparison of methods on one batch: the table every script prints."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from l2o.eval.metrics import iterations_to, median, relative_suboptimality, speedup
from l2o.eval.rollout import Method, rollout
from l2o.eval.tables import Table
from problems.base import Instances


def compare(
    methods: dict[str, Method],
    instances: Instances,
    steps: int,
    *,
    checkpoints: Sequence[int] = (10, 100),
    tolerances: Sequence[float] = (1e-2, 1e-4),
    baseline: str | None = None,
    scenario: str = "",
    timing: bool = False,
) -> tuple[Table, dict[str, Tensor]]:
    """Roll out every method on ``instances`` and tabulate:

    * median relative suboptimality at each step in ``checkpoints`` (those <= steps),
    * with ``timing``, also the mean (``mean_rel@k``: the papers report means),
    * median iterations to each relative tolerance in ``tolerances`` (inf: not reached),
      and next to them the median wall time to it (``ms_to_eps``: for each instance the
      measured time from the start of the batched rollout to the step where it first
      reaches eps, :attr:`Trajectory.seconds`; inf where not reached; the rollouts run one
      after the other in this process),
    * with ``timing``, also the wall time of one step on the whole batch (``ms/step``),
    * speedup vs ``baseline`` at the tightest tolerance (ratio of median iterations),
    * ``diverged``: the fraction of instances that end non-finite or worse than they started,
    * ``fallback_rate`` (when a method is safeguarded): the fraction of its steps on which
      the safeguard rejected the proposal.

    Returns the table and the relative-suboptimality curves ``(T + 1, B)`` per method.
    """
    if baseline is not None and baseline not in methods:
        raise KeyError(f"baseline {baseline!r} is not one of {sorted(methods)}")
    checkpoints = sorted({k for k in checkpoints if k <= steps})
    tightest = min(tolerances)
    columns = ["scenario", "method"]
    columns += [f"rel@{k}" for k in checkpoints]
    if timing:
        columns += [f"mean_rel@{k}" for k in checkpoints]
    for eps in tolerances:
        columns += [f"iters<={eps:g}", f"ms_to_{eps:g}"]
    if timing:
        columns.append("ms/step")
    if baseline is not None:
        columns.append(f"speedup_vs_{baseline}")
    columns.append("diverged")
    optimum = instances.optimum()
    trajectories = {name: rollout(method, instances, steps) for name, method in methods.items()}
    curves = {name: relative_suboptimality(t.objective, optimum) for name, t in trajectories.items()}
    fallbacks = {name: t.state["fallbacks"] for name, t in trajectories.items()
                 if t.state is not None and "fallbacks" in t.state}
    if fallbacks:
        columns.append("fallback_rate")
    iterations = {name: {eps: iterations_to(c, eps) for eps in tolerances} for name, c in curves.items()}
    table = Table(columns)
    for name, curve in curves.items():
        row = {"scenario": scenario, "method": name}
        row.update({f"rel@{k}": median(curve[k]) for k in checkpoints})
        seconds = trajectories[name].seconds
        for eps in tolerances:
            row[f"iters<={eps:g}"] = median(iterations[name][eps])
            row[f"ms_to_{eps:g}"] = 1e3 * median(seconds_at(seconds, iterations[name][eps]))
        if timing:
            row.update({f"mean_rel@{k}": curve[k].mean().item() for k in checkpoints})
            row["ms/step"] = 1e3 * float(seconds[-1]) / max(steps, 1)
        if baseline is not None:
            row[f"speedup_vs_{baseline}"] = speedup(iterations[baseline][tightest], iterations[name][tightest])
        row["diverged"] = (~(curve[-1] <= curve[0])).double().mean().item()
        if name in fallbacks:
            row["fallback_rate"] = fallbacks[name].double().mean().item() / max(steps, 1)
        table.add(**row)
    return table, curves


def seconds_at(seconds: Tensor, iterations: Tensor) -> Tensor:
    """``(B,)`` the elapsed ``seconds[k_b]`` at each instance's iteration ``k_b`` (float; inf
    stays inf)."""
    reached = torch.isfinite(iterations)
    index = torch.where(reached, iterations, torch.zeros_like(iterations)).long()
    return torch.where(reached, seconds.to(iterations)[index], torch.full_like(iterations, float("inf")))
