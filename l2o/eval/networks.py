"""Drop-in evaluation on real networks: every zoo entry as a ``torch.optim`` optimizer training
small networks on data that ships with scikit-learn, against ``torch.optim.Adam`` and
``torch.optim.SGD`` over a small learning-rate grid, in loss after N steps and wall seconds,
all measured one after the other in one process.

The task family (:data:`NETWORK_TASKS`), each full batch, from ``seeds`` initializations
(``torch.manual_seed(seed)`` before the model is built, so every method starts from the same
weights):

* ``digits-mlp``: a 64-16-10 tanh MLP (1210 parameters), cross-entropy, on scikit-learn's
  1797 handwritten digits (:func:`problems.real_data.digits`);
* ``cancer-mlp``: a 30-8-1 tanh MLP (257 parameters), logistic loss, on the standardized
  breast cancer data (:func:`problems.real_data.breast_cancer`).

Every method is used as a PyTorch user would: ``optimizer.step(closure)`` with the closure
calling ``backward`` (never for ZO), the zoo entries with no ``lr`` and no ``lipschitz``
(so safeguarded by default, :class:`~l2o.optim.LearnedOptimizer`), the ZO entry as
``ZOOptimizer(aggregator=NAME)`` at its q.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from l2o import zoo
from l2o.eval.tables import Table
from l2o.optim import LearnedOptimizer, ZOOptimizer
from l2o.rules import UpdateRule, ZORule
from problems.real_data import breast_cancer, digits

ADAM_LRS = (1e-3, 1e-2, 1e-1)
SGD_LRS = (1e-2, 1e-1, 1.0)

OptimizerFactory = Callable[[Iterable[Tensor]], torch.optim.Optimizer]


def _cross_entropy(outputs: Tensor, labels: Tensor) -> Tensor:
    return nn.functional.cross_entropy(outputs, labels)


def _logistic(outputs: Tensor, labels: Tensor) -> Tensor:
    return nn.functional.softplus(-labels * outputs[:, 0]).mean()


@dataclasses.dataclass(frozen=True)
class NetworkTask:
    """A tanh MLP of layer ``widths`` trained on ``data()`` (features, labels) with ``loss``."""

    name: str
    widths: tuple[int, ...]
    data: Callable[[], tuple[Tensor, Tensor]]
    loss: Callable[[Tensor, Tensor], Tensor]

    def model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(self.widths, self.widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.Tanh()]
        return nn.Sequential(*layers[:-1])

    def train(self, make: OptimizerFactory, seed: int, steps: int) -> dict[str, float]:
        """``steps`` steps of ``make(model.parameters())`` from the seed's initialization:
        the loss before and after, the wall seconds of the steps and the closure calls."""
        features, labels = self.data()
        features = features.float()
        labels = labels.float() if labels.dtype.is_floating_point else labels
        model = self.model(seed)
        optimizer = make(model.parameters())
        backward = not isinstance(optimizer, ZOOptimizer)
        calls = 0

        def closure() -> Tensor:
            nonlocal calls
            calls += 1
            optimizer.zero_grad()
            value = self.loss(model(features), labels)
            if backward:
                value.backward()
            return value
        with torch.no_grad():
            start = float(self.loss(model(features), labels))
        began = time.perf_counter()
        for _ in range(steps):
            optimizer.step(closure)
        seconds = time.perf_counter() - began
        with torch.no_grad():
            final = float(self.loss(model(features), labels))
        return {"start": start, "final": final, "seconds": seconds, "calls": calls}


NETWORK_TASKS = (
    NetworkTask("digits-mlp", (64, 16, 10), digits, _cross_entropy),
    NetworkTask("cancer-mlp", (30, 8, 1), breast_cancer, _logistic),
)


def drop_in(rule: UpdateRule) -> OptimizerFactory:
    """``rule`` (a zoo entry's) as a user would make it: no lr, no lipschitz."""
    if isinstance(rule, ZORule):
        return lambda params: ZOOptimizer(params, aggregator=rule, q=rule.q, seed=0)
    return lambda params: LearnedOptimizer(params, rule=rule)


def torch_baselines() -> dict[str, OptimizerFactory]:
    """``torch.optim.Adam`` and ``SGD`` on the learning-rate grids."""
    return {**{f"Adam lr={lr:g}": (lambda params, lr=lr: torch.optim.Adam(params, lr=lr)) for lr in ADAM_LRS},
            **{f"SGD lr={lr:g}": (lambda params, lr=lr: torch.optim.SGD(params, lr=lr)) for lr in SGD_LRS}}


def evaluate_networks(rules: dict[str, UpdateRule] | None = None, *, steps: int = 200,
                      seeds: Iterable[int] = (0, 1), tasks: Iterable[NetworkTask] = NETWORK_TASKS) -> Table:
    """``rules`` (label -> rule; default: every zoo entry) as drop-ins and the torch
    baselines on every task. One row per task and method: the median over ``seeds`` of the
    loss after ``steps`` steps and of the wall seconds, and the closure calls per step;
    ``best`` marks the lowest loss among the Adam and among the SGD learning rates."""
    rules = {name: zoo.load(name).rule for name in zoo.list()} if rules is None else rules
    methods = {label: drop_in(rule) for label, rule in rules.items()} | torch_baselines()
    loss_column = f"loss@{steps}"
    table = Table(["task", "method", "loss@0", loss_column, "seconds", "calls/step", "best"])
    seeds = list(seeds)
    for task in tasks:
        rows = []
        for method, make in methods.items():
            runs = [task.train(make, seed, steps) for seed in seeds]
            rows.append({"task": task.name, "method": method, "loss@0": statistics.median(r["start"] for r in runs),
                         loss_column: statistics.median(r["final"] for r in runs),
                         "seconds": statistics.median(r["seconds"] for r in runs),
                         "calls/step": statistics.median(r["calls"] for r in runs) / steps, "best": ""})
        for family in ("Adam", "SGD"):
            grid = [row for row in rows if row["method"].startswith(f"{family} lr=")]
            min(grid, key=lambda row: row[loss_column])["best"] = f"best {family}"
        for row in rows:
            table.add(**row)
    return table
