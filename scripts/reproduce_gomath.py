"""Reproduce GoMathL2O's headline comparison with the zoo entries.

For each setting (LASSO at the paper's size, toy LASSO, sparse logistic regression), the
GoMathL2O and Math-L2O zoo entries and the classical baselines run on held-out InD and OOD
batches (float64). Printed and written to ``--out``: median relative suboptimality at
fixed steps, median iterations to each tolerance, and the speedup of GoMathL2O over every
other method (ratio of median iterations to the tightest tolerance; inf = only GoMathL2O
gets there, nan = neither does).

    python scripts/reproduce_gomath.py --batch 256 --steps 300 --out out/reproduce_gomath
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from l2o import zoo
from l2o.eval import Table, classical_baselines, default_scenarios, evaluate_scenarios, in_double
from l2o.meta import make_family

SETTINGS = {
    "LASSO 250x500": ("gomath-lasso", "mathl2o-lasso"),
    "LASSO 20x40 (toy)": ("gomath-lasso-toy", "mathl2o-lasso-toy"),
    "sparse logistic 100x20": ("gomath-logistic", "mathl2o-logistic"),
}
TOLERANCES = (1e-2, 1e-4, 1e-6)


def speedups(table: Table, learned: str, tolerance: float) -> Table:
    """GoMathL2O's speedup over each method, per scenario."""
    column = f"iters<={tolerance:g}"
    out = Table(["scenario", "over", f"speedup@{tolerance:g}"])
    for scenario in dict.fromkeys(r["scenario"] for r in table.rows):
        rows = {r["method"]: r[column] for r in table.rows if r["scenario"] == scenario}
        ours = rows[learned]
        for method, theirs in rows.items():
            if method == learned:
                continue
            if math.isinf(ours) and math.isinf(theirs):
                ratio = float("nan")
            else:
                ratio = theirs / ours if ours > 0 else float("inf")
            out.add(scenario=scenario, over=method, **{f"speedup@{tolerance:g}": ratio})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--out", default="out/reproduce_gomath")
    args = parser.parse_args()
    available = set(zoo.list())
    for setting, (gomath, mathl2o) in SETTINGS.items():
        if not {gomath, mathl2o} <= available:
            print(f"## {setting}: skipped ({gomath} / {mathl2o} not in the zoo; scripts/train_zoo.sh)\n")
            continue
        entry = zoo.load(gomath)
        training = entry.card["training"]
        family = make_family(training["family"], training["family_params"])
        methods = {"GoMathL2O": in_double(entry.rule), "Math-L2O": in_double(zoo.load(mathl2o).rule),
                   **classical_baselines()}
        out = Path(args.out) / gomath
        table = evaluate_scenarios(methods, default_scenarios(family), batch=args.batch,
                                   steps=args.steps, seed=args.seed, baseline=None, out=out,
                                   title=f"{setting}: ", tolerances=TOLERANCES)
        ratio = speedups(table, "GoMathL2O", 1e-4)
        ratio.save(out, "speedups")
        print(f"## {setting} ({args.batch} instances per scenario, {args.steps} steps, seed {args.seed})\n")
        print(table.to_markdown(), "\n")
        print(ratio.to_markdown(), "\n")


if __name__ == "__main__":
    main()
