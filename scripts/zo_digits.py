"""ZOOptimizer on scikit-learn's digits: one lr for ZO-Avg and ZO-Align, and no lr at all.

A 64-32-10 tanh MLP (2410 parameters) on the 1797 digits images (full batch, features / 16),
300 steps each; prints the loss before and after, the measured curvature L̂ (lr=None) and
the seconds. ``python scripts/zo_digits.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from l2o.optim import ZOOptimizer
from problems.real_data import digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    features, labels = digits()
    features = features.float()
    settings = [{}, {"q": 8, "aggregator": "avg"}, {"q": 8, "aggregator": "align"},
                {"lr": 1e-2, "q": 8, "aggregator": "avg"}, {"lr": 1e-2, "q": 8, "aggregator": "align"},
                {"lr": 1e-1, "q": 8, "aggregator": "avg"}, {"lr": 1e-1, "q": 8, "aggregator": "align"}]
    print("| settings | loss before | loss after | L̂ | seconds |\n|---|---|---|---|---|")
    for settings_ in settings:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))

        def closure() -> torch.Tensor:
            return torch.nn.functional.cross_entropy(model(features), labels)
        optimizer = ZOOptimizer(model.parameters(), seed=0, **settings_)
        with torch.no_grad():
            start = float(closure())
        began = time.perf_counter()
        for _ in range(args.steps):
            optimizer.step(closure)
        seconds = time.perf_counter() - began
        with torch.no_grad():
            final = float(closure())
        print(f"| {settings_ or 'defaults'} | {start:.3f} | {final:.3f} | {optimizer.curvature:.3g} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
