"""The ``l2o`` command line.

``l2o demo`` — classical baselines on an in-distribution (InD) and two out-of-distribution
(OOD) LASSO batches: a comparison table on stdout, plus CSV/JSON/PNG in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from l2o.eval import Table, compare, plot_convergence
from l2o.rules import AdamHDRule, AdamRule, FISTARule, ProxGDRule
from problems import LassoFamily


def baseline_rules() -> dict:
    """The classical baselines every comparison includes."""
    return {
        "ISTA": ProxGDRule(),
        "FISTA": FISTARule(),
        "FISTA-restart": FISTARule(restart=True),
        "Adam": AdamRule(lr=1e-2),
        "Adam-HD": AdamHDRule(lr=1e-2, hypergrad_lr=1e-5),
    }


def demo(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    family = LassoFamily(m=args.m, n=args.n, sparsity=max(1, args.n // 10))
    scenarios = {
        "InD": family,
        "OOD: A scaled x3": family.shifted(data_scale=3.0),
        "OOD: x0 shifted +5": family.shifted(x0_shift=5.0),
    }
    merged: Table | None = None
    out = Path(args.out)
    for index, (name, scenario) in enumerate(scenarios.items()):
        instances = scenario.sample(args.batch, seed=args.seed + index, dtype=torch.float64)
        table, curves = compare(
            baseline_rules(), instances, args.steps,
            checkpoints=(10, 50, args.steps), tolerances=(1e-2, 1e-4), baseline="ISTA",
            scenario=name,
        )
        merged = table if merged is None else Table(merged.columns, merged.rows + table.rows)
        plot_convergence(curves, out / f"convergence_{index}.png", title=f"LASSO {args.m}x{args.n}: {name}")
    assert merged is not None
    print(f"LASSO {args.m}x{args.n}, {args.batch} instances per scenario, {args.steps} steps, "
          "median over instances (rel = (F - F*)/|F*|)\n")
    print(merged.to_markdown())
    merged.save(out, "demo")
    print(f"\nwrote {out}/demo.md, demo.csv, demo.json and convergence_*.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="compare the classical baselines on InD and OOD LASSO")
    run.add_argument("--m", type=int, default=100, help="rows of A (default 100)")
    run.add_argument("--n", type=int, default=200, help="unknowns (default 200)")
    run.add_argument("--batch", type=int, default=32, help="instances per scenario (default 32)")
    run.add_argument("--steps", type=int, default=300, help="iterations (default 300)")
    run.add_argument("--seed", type=int, default=0, help="first instance seed (default 0)")
    run.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    run.set_defaults(handler=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
