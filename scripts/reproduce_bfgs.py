"""Learned coordinate-wise BFGS step sizes vs BFGS with scalar steps, InD and OOD.

For each ``bfgs-*`` zoo entry, on its training family and its OOD shifts (float64
held-out batches): the learned rule, BFGS with Armijo backtracking, the exact step (on
quadratics only), a constant unit step, a hypergradient-adapted scalar step, and plain
gradient descent (1/L). Printed and written to ``--out``: median relative suboptimality at
fixed steps, median iterations and measured milliseconds to each tolerance (the line
search's extra objective evaluations are in its time, not in its iteration count), and the
speedup over BFGS-Armijo in iterations and in time to 1e-4, measured in the same run.

    python scripts/reproduce_bfgs.py --batch 256 --steps 60 --out out/reproduce_bfgs
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from l2o import zoo
from l2o.eval import Table, compare, plot_convergence
from l2o.eval.plots import plot_filename
from l2o.rules import BFGSRule, ProxGDRule
from problems import FAMILIES, LeastSquaresFamily

SHIFTS = {
    "InD": {},
    "OOD: data scaled x3": {"data_scale": 3.0},
    "OOD: x0 shifted +5": {"x0_shift": 5.0},
}


def methods_for(entry_name: str, family) -> dict:
    rule = zoo.load(entry_name).rule.eval()
    initial = rule.initial
    methods = {
        entry_name: rule,
        "BFGS-Armijo": BFGSRule("armijo", initial=initial),
        "BFGS-unit": BFGSRule("constant", initial=initial),
        "BFGS-HD": BFGSRule("hypergradient", hypergrad_lr=1e-2, initial=initial),
        "GD (1/L)": ProxGDRule(),
    }
    if isinstance(family, LeastSquaresFamily):
        methods["BFGS-exact"] = BFGSRule("exact", initial=initial)
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=40_000)
    parser.add_argument("--out", default="out/reproduce_bfgs")
    args = parser.parse_args()
    out = Path(args.out)
    entries = [name for name in zoo.list() if name.startswith("bfgs")]
    if not entries:
        raise SystemExit("no bfgs-* entries in the zoo; train them with scripts/train_zoo.sh bfgs-least-squares bfgs-logistic")
    tables = []
    for entry in entries:
        training = zoo.load(entry).card["training"]
        base = FAMILIES[training["family"]](**training["family_params"])
        for index, (scenario, params) in enumerate(SHIFTS.items()):
            family = base.shifted(**params)
            instances = family.sample(args.batch, seed=args.seed + index, dtype=torch.float64)
            methods = methods_for(entry, family)
            table, curves = compare(methods, instances, args.steps, checkpoints=(10, 20, args.steps),
                                    tolerances=(1e-2, 1e-4), baseline="BFGS-Armijo", scenario=f"{entry}: {scenario}")
            armijo = next(r for r in table.rows if r["method"] == "BFGS-Armijo")["ms_to_0.0001"]
            table = Table([*table.columns, "time_speedup_vs_BFGS-Armijo"],
                          [{**row, "time_speedup_vs_BFGS-Armijo": armijo / row["ms_to_0.0001"]} for row in table.rows])
            plot_convergence(curves, out / plot_filename(scenario, prefix=entry), title=f"{entry}: {scenario}")
            tables.append(table)
            print(table.to_markdown(), flush=True)
    Table.concat(tables).save(out, "report")
    print(f"\nwrote {out}/report.md, report.csv, report.json and the PNG plots")


if __name__ == "__main__":
    main()
