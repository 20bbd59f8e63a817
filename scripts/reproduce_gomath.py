"""Reproduce GoMathL2O's headline comparison with the zoo entries, on the corrected
(official-parity) rules.

For each setting (LASSO at the paper's size, toy LASSO, the official sparse logistic
regression), GoMathL2O, Math-L2O ("L2O-PA"), L2L and RNNprop where the zoo has them, and the
classical baselines run on held-out InD and OOD batches (float64): l2o's shifts (data ×3,
x0 + 5), the paper's initial-point shifts (x0 ± 10 … ± 100, ``--x0-shifts``) and its
objective shifts F(x) = F₀(x + t) (t = ± 10, ± 100, ``--objective-shifts``). Printed and
written to ``--out``: median and mean relative suboptimality (F - F*)/|F*| at fixed steps,
median iterations to each tolerance, wall time per step of each method on the whole batch
(measured one method after the other in this process) and the median time to 1e-6, and
GoMathL2O's speedup over every method in iterations (inf = only GoMathL2O gets there,
nan = neither does).

    python scripts/reproduce_gomath.py --batch 128 --steps 300 --out out/reproduce_gomath
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from l2o import zoo
from l2o.eval import Table, classical_baselines, default_scenarios, evaluate_scenarios
from l2o.meta import make_family

#: setting -> {method name: zoo entry}; the first is GoMathL2O's entry, whose family is used.
SETTINGS = {
    "LASSO 250x500": {"GoMathL2O": "gomath-lasso", "Math-L2O": "mathl2o-lasso"},
    "LASSO 20x40 (toy)": {"GoMathL2O": "gomath-lasso-toy", "Math-L2O": "mathl2o-lasso-toy",
                          "L2L": "l2l-lasso-toy", "RNNprop": "rnnprop-lasso-toy"},
    "sparse logistic 1000x50": {"GoMathL2O": "gomath-logistic", "Math-L2O": "mathl2o-logistic"},
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
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--x0-shifts", type=float, nargs="*", default=[10.0, -10.0, 100.0, -100.0],
                        help="the paper's initial-point shifts to add (default: ±10, ±100)")
    parser.add_argument("--objective-shifts", type=float, nargs="*", default=[10.0, -10.0, 100.0, -100.0],
                        help="the paper's objective shifts t, F(x) = F0(x + t), to add (default: ±10, ±100)")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", default="out/reproduce_gomath")
    args = parser.parse_args()
    available = set(zoo.list())
    for setting in args.settings:
        entries = {name: entry for name, entry in SETTINGS[setting].items() if entry in available}
        if "GoMathL2O" not in entries:
            print(f"## {setting}: skipped ({SETTINGS[setting]['GoMathL2O']} not in the zoo; scripts/train_zoo.sh)\n")
            continue
        training = zoo.load(entries["GoMathL2O"]).card["training"]
        family = make_family(training["family"], training["family_params"])
        methods = {name: zoo.load(entry).rule for name, entry in entries.items()}
        methods.update(classical_baselines())
        scenarios = default_scenarios(family)
        scenarios.update({f"paper OOD: x0 shifted {shift:+g}": family.shifted(x0_shift=shift)
                          for shift in args.x0_shifts})
        scenarios.update({f"paper OOD: objective shifted t={shift:+g}": family.shifted(objective_shift=shift)
                          for shift in args.objective_shifts})
        out = Path(args.out) / entries["GoMathL2O"]
        table = evaluate_scenarios(methods, scenarios, batch=args.batch, steps=args.steps, seed=args.seed,
                                   baseline=None, out=out, title=f"{setting}: ", tolerances=TOLERANCES,
                                   timing=True)
        ratio = speedups(table, "GoMathL2O", 1e-4)
        ratio.save(out, "speedups")
        print(f"## {setting} ({args.batch} instances per scenario, {args.steps} steps, seed {args.seed}; "
              f"entries {entries})\n")
        print(table.to_markdown(), "\n")
        print(ratio.to_markdown(), "\n")


if __name__ == "__main__":
    main()
