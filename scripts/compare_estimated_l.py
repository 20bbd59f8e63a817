"""Every zoo entry that scales its step with 1/L, side by side: given the exact L (as it was
trained), and given nothing (the online estimate of :class:`l2o.rules.LipschitzEstimate`,
what ``LearnedOptimizer(params, rule=NAME)`` runs without ``lr`` / ``lipschitz``), plain and
safeguarded, on held-out float64 instances of its own training family; and where the zoo has
``NAME-estimated-l``, the same rule meta-trained on the estimate (``MetaTrainer(lipschitz=
"estimate")``), which needs no constant at all.

Prints one table per entry: median relative suboptimality at steps 50 and ``--steps``,
median iterations and milliseconds to 1e-4 and 1e-6 (wall time of the batched rollouts,
run one after the other in this process), and the fraction of diverged instances.

    python scripts/compare_estimated_l.py --batch 64 --steps 300
"""

from __future__ import annotations

import argparse

import torch

from l2o import zoo
from l2o.eval import compare
from l2o.meta import make_family
from l2o.rules import LipschitzEstimate, SafeguardedRule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=30_000)
    parser.add_argument("--zoo", nargs="+", default=None, metavar="NAME")
    args = parser.parse_args()
    available = zoo.list()
    entries = [zoo.load(n) for n in (args.zoo or available)]
    # learned BFGS reads L only for H_0 and runs without it on the curvature scaling instead
    entries = [e for e in entries if e.rule.needs_lipschitz() and e.rule.uses_gradient and e.card["rule"] != "bfgs"]
    for entry in entries:
        name, rule = entry.name, entry.rule
        scale = zoo.lipschitz_scale(entry.card)
        training = entry.card["training"]
        instances = make_family(training["family"], training.get("family_params")).sample(
            args.batch, seed=args.seed, dtype=torch.float64)
        methods = {"exact L": rule, "estimated L": LipschitzEstimate(rule, scale=scale),
                   "exact L + safeguard": SafeguardedRule(rule),
                   "estimated L + safeguard": LipschitzEstimate(SafeguardedRule(rule), scale=scale)}
        if f"{name}-estimated-l" in available:
            trained = zoo.load(f"{name}-estimated-l").rule  # a LipschitzEstimate already
            methods |= {f"{name}-estimated-l": trained,
                        f"{name}-estimated-l + safeguard": LipschitzEstimate(SafeguardedRule(trained.rule))}
        torch.manual_seed(0)
        table, _ = compare(methods, instances, args.steps, checkpoints=(50, args.steps),
                           tolerances=(1e-4, 1e-6), scenario=name, timing=True)
        table.columns = [c for c in table.columns if not c.startswith("mean_rel")]
        print(f"\n{name} ({training['family']}, {args.batch} held-out instances, seed {args.seed})\n")
        print(table.to_markdown())


if __name__ == "__main__":
    main()
