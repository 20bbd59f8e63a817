"""The drop-in evaluation on real networks (``l2o.eval.networks``)."""

from __future__ import annotations

import torch

from l2o.eval.networks import ADAM_LRS, NETWORK_TASKS, SGD_LRS, evaluate_networks
from l2o.rules import GoMathRule, ZORule


def test_every_method_starts_from_the_same_weights_and_the_best_of_each_grid_is_marked():
    torch.manual_seed(0)
    table = evaluate_networks({"gomath": GoMathRule(hidden_size=4), "zo": ZORule("avg", q=2)}, steps=5, seeds=(0,))
    assert len(table.rows) == len(NETWORK_TASKS) * (2 + len(ADAM_LRS) + len(SGD_LRS))
    for task in NETWORK_TASKS:
        rows = [r for r in table.rows if r["task"] == task.name]
        assert len({r["loss@0"] for r in rows}) == 1, "one initialization for every method"
        assert [r["best"] for r in rows].count("best Adam") == [r["best"] for r in rows].count("best SGD") == 1
        best_sgd = next(r for r in rows if r["best"] == "best SGD")
        assert best_sgd["loss@5"] == min(r["loss@5"] for r in rows if r["method"].startswith("SGD"))
        zo = next(r for r in rows if r["method"] == "zo")
        assert zo["calls/step"] == 2 * 2 + 2, "closure-only: 2q central differences, f(θ) and the verified step"
        assert all(r["seconds"] > 0 and r["loss@5"] < r["loss@0"] for r in rows if r["method"].startswith("Adam lr=0.1"))


def test_the_models_are_the_documented_mlps():
    digits, cancer = NETWORK_TASKS
    assert sum(p.numel() for p in digits.model(0).parameters()) == 64 * 16 + 16 + 16 * 10 + 10
    assert sum(p.numel() for p in cancer.model(0).parameters()) == 30 * 8 + 8 + 8 + 1
