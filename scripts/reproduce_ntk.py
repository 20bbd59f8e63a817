"""Reproduce "Learning Provably Improves the Convergence of Gradient Descent" on our QPs.

For each horizon T, meta-train the learned GD step-size network twice — NTK init and
random init — with the same data, loss "last" (F(x_T), no truncation), meta-optimizer and
budget, and report on held-out instances:

* gain over GD = 1 - mean(F(x_T) - F*)_learned / mean(F(x_T) - F*)_GD  (> 0: better than GD),
* the fraction of held-out instances where the learned model beats GD,
* the meta-gradient norm over training (max and last; plotted per run), and whether
  training stayed finite.

    python scripts/reproduce_ntk.py --horizons 10 50 100 --epochs 2 --out out/reproduce_ntk
"""

from __future__ import annotations

import argparse
import copy
import math
from pathlib import Path

import lightning as L
import torch

from l2o.eval import Table, rollout
from l2o.meta import MetaTrainer, ProblemDataModule
from problems import QuadraticFamily


class GradNormRecorder(L.Callback):
    """Keeps the logged meta-gradient norm of every training batch."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.norms.append(float(trainer.callback_metrics["train/grad_norm"]))


def train(init: str, args, horizon: int, family: dict) -> tuple[MetaTrainer, list[float]]:
    L.seed_everything(args.seed, verbose=False)
    data = ProblemDataModule(family="quadratic", family_params=family, batch_size=args.batch,
                             steps_per_epoch=args.steps_per_epoch, seed=args.seed, val_batch_size=8)
    model = MetaTrainer(rule="ntk_gd", rule_config={"hidden_size": args.hidden, "init": init, "seed": args.seed},
                        horizon=horizon, unroll=horizon, meta_loss="last", lr=args.lr, grad_clip=0.0,
                        val_steps=horizon)
    recorder = GradNormRecorder()
    L.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              callbacks=[recorder], accelerator="cpu").fit(model, data)
    return model, recorder.norms


def gap_at_horizon(rule, held_out, horizon: int) -> torch.Tensor:
    return rollout(rule, held_out, horizon).objective[-1] - held_out.optimum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=512)
    parser.add_argument("--out", default="out/reproduce_ntk")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    family = {"m": args.m, "n": args.n, "x0_std": 1.0}
    held_out = QuadraticFamily(**family).sample(args.held_out, seed=987_654)
    table = Table(["T", "init", "gain_over_gd", "beats_gd_fraction", "max_grad_norm", "last_grad_norm", "finite"])
    curves: dict[str, list[float]] = {}
    for horizon in args.horizons:
        for init in ("ntk", "random"):
            model, norms = train(init, args, horizon, family)
            reference = copy.deepcopy(model.rule)  # GD: the same network with a zero output layer
            with torch.no_grad():
                reference.output.weight.zero_()
                reference.output.bias.zero_()
            learned, gd = gap_at_horizon(model.rule, held_out, horizon), gap_at_horizon(reference, held_out, horizon)
            finite = all(math.isfinite(v) for v in norms) and bool(torch.isfinite(learned).all())
            table.add(T=horizon, init=init, gain_over_gd=1 - float(learned.mean() / gd.mean()),
                      beats_gd_fraction=float((learned < gd).float().mean()),
                      max_grad_norm=max(norms), last_grad_norm=norms[-1], finite=finite)
            curves[f"{init}, T={horizon}"] = norms
            print(table.to_markdown().splitlines()[-1], flush=True)
    table.save(out, "ntk_vs_random")
    plot(curves, out / "grad_norms.png")
    print(f"\nQP {args.m}x{args.n}, hidden {args.hidden}, Adam lr {args.lr}, {args.epochs}x{args.steps_per_epoch} "
          f"meta-batches of {args.batch}; held-out {args.held_out} instances\n")
    print(table.to_markdown())
    print(f"\nwrote {out}/ntk_vs_random.{{md,csv,json}} and {out}/grad_norms.png")


def plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for name, norms in curves.items():
        axes.plot([v if math.isfinite(v) else float("nan") for v in norms], label=name,
                  linestyle="-" if name.startswith("ntk") else "--")
    axes.set_yscale("log")
    axes.set_xlabel("meta-step")
    axes.set_ylabel("meta-gradient norm")
    axes.set_title("Meta-gradient norms: NTK init vs random init")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
