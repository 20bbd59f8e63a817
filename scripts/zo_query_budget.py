"""The multi-query paradox: under a fixed budget of function queries, how should q (queries
per iteration) be chosen for ZO-Avg, ZO-Align and the learned aggregator?

For each family and q, every method runs T = budget // (queries per step) iterations
(central differences: 2q queries per step) on ``--seeds`` held-out batches of ``--batch``
instances (float64). Reported: the median over instances of the final relative
suboptimality, per seed; the table gives the median over seeds and a 95% confidence band
for the mean of log10(rel) across seeds (t-free normal approximation, mean ± 1.96·sd/√S).
Families: strongly convex (least squares, κ = 10), ill-conditioned (κ = 1e4: within the
budget it behaves as merely convex; a rank-deficient quadratic would have F* = 0 and no
relative suboptimality), and ridge-regularized logistic regression. (No non-convex family
is included: l2o's problem families are convex.)

    python scripts/zo_query_budget.py --budget 400 --seeds 5 --batch 32 --out out/zo_query_budget
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from l2o import zoo
from l2o.eval import Table, relative_suboptimality, rollout
from l2o.rules import ZORule
from problems import LeastSquaresFamily, LogisticFamily

FAMILIES = {
    "strongly convex: least squares 40x20, cond 10": LeastSquaresFamily(m=40, n=20, condition_number=10.0),
    "ill-conditioned: least squares 40x20, cond 1e4": LeastSquaresFamily(m=40, n=20, condition_number=1e4),
    "logistic 100x20, ridge 1e-3": LogisticFamily(m=100, n=20, sparsity=20, ridge=1e-3),
}


def make_rule(aggregator: str, q: int, learned: ZORule | None) -> ZORule:
    if aggregator != "learned":
        return ZORule(aggregator, q=q)
    rule = ZORule(**{**learned.config(), "q": q})
    rule.load_state_dict(learned.state_dict())
    return rule.double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=400, help="function queries per run")
    parser.add_argument("--qs", type=int, nargs="+", default=[1, 2, 4, 5, 10, 20])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=50_000)
    parser.add_argument("--learned", default="zo-least-squares", help="zoo entry of the learned aggregator")
    parser.add_argument("--out", default="out/zo_query_budget")
    args = parser.parse_args()
    out = Path(args.out)
    learned = zoo.load(args.learned).rule if args.learned in zoo.list() else None
    aggregators = ["avg", "align"] + (["learned"] if learned is not None else [])
    table = Table(["family", "aggregator", "q", "iterations", "median rel", "log10 rel mean", "95% band low", "95% band high"])
    for family_name, family in FAMILIES.items():
        batches = [family.sample(args.batch, seed=args.seed + s, dtype=torch.float64) for s in range(args.seeds)]
        optima = [b.optimum() for b in batches]
        for aggregator in aggregators:
            for q in args.qs:
                rule = make_rule(aggregator, q, learned)
                steps = args.budget // rule.queries_per_step()
                per_seed = torch.tensor([
                    relative_suboptimality(rollout(rule, b, steps).objective[-1], o).median().item()
                    for b, o in zip(batches, optima)], dtype=torch.float64)
                logs = per_seed.clamp_min(1e-16).log10()
                half = 1.96 * logs.std().item() / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
                table.add(family=family_name, aggregator=aggregator, q=q, iterations=steps,
                          **{"median rel": per_seed.median().item(), "log10 rel mean": logs.mean().item(),
                             "95% band low": 10 ** (logs.mean().item() - half), "95% band high": 10 ** (logs.mean().item() + half)})
                print(table.to_markdown().splitlines()[-1], flush=True)
    table.save(out, "report")
    plot(table, out / "query_budget.png", args.budget)
    print("\n" + table.to_markdown())
    print(f"\nwrote {out}/report.md, report.csv, report.json and query_budget.png")


def plot(table: Table, path: Path, budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in table.rows))
    figure, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        for aggregator in dict.fromkeys(r["aggregator"] for r in table.rows):
            rows = [r for r in table.rows if r["family"] == family and r["aggregator"] == aggregator]
            qs = [r["q"] for r in rows]
            ax.plot(qs, [10 ** r["log10 rel mean"] for r in rows], marker="o", label=f"ZO-{aggregator}")
            ax.fill_between(qs, [r["95% band low"] for r in rows], [r["95% band high"] for r in rows], alpha=0.2)
        ax.set(xscale="log", yscale="log", xlabel="queries per iteration q", title=family)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"relative suboptimality after {budget} queries")
    axes[0][0].legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
