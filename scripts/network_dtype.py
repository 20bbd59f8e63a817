"""Every zoo entry's network as trained (float32) against its float64 copy (``in_double``), on
float64 instances of its training family: iterations and milliseconds to each tolerance, and
milliseconds per step, measured side by side in one run (``l2o.eval.compare``). The
evaluations run the networks as trained; this is the evidence that it costs no iterations.

    python scripts/network_dtype.py [--batch 64] [--steps 200] [--zoo NAME ...]
"""

from __future__ import annotations

import argparse

import torch

from l2o import zoo
from l2o.eval import Table, compare, in_double
from l2o.meta.data import make_family


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", nargs="+", default=None, help="entries (default: the whole zoo)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=10_000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    tables = []
    for name in args.zoo or zoo.list():
        entry = zoo.load(name)
        training = entry.card["training"]
        instances = make_family(training["family"], training.get("family_params")).sample(
            args.batch, seed=args.seed, dtype=torch.float64)
        methods = {"float32 network (as trained)": entry.rule.eval(), "float64 copy": in_double(entry.rule).eval()}
        table, _ = compare(methods, instances, args.steps, checkpoints=(args.steps,), timing=True, scenario=name)
        tables.append(table)
        print("\n".join(table.to_markdown().splitlines()[-2:]), flush=True)  # its two rows
    print("\n" + Table.concat(tables).to_markdown())


if __name__ == "__main__":
    main()
