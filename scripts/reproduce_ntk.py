"""Reproduce "Learning Provably Improves the Convergence of Gradient Descent" (NeurIPS 2025)
under the official protocol (NetX-lab/MathL2OProof-Official ``main_train_anlys.py``).

Problem: the consistent QP ``min ½||W x - Y||²`` with W ∈ R^{20×32} (unit-norm columns),
``Y = W x_gt``, x0 = 0 (F* = 0). Training: one fixed batch of 32 instances, loss
F(x_T) at the horizon T (no truncation) summed over the batch, SGD. Compared models, each
parity-tested against the official code (``tests/parity``):

* **NTK-GD** (``CoordMathDNN``): learned GD step sizes, NTK init (the untrained model is GD),
  input scale e = 100, SGD at ``--lr`` (1e-7: with e = 100 the meta-gradient carries e²);
* **Math-L2O-P** and **Math-L2O-PA** (``CoordMathLSTM``): the paper's LSTM comparators,
  SGD at ``--lstm-lr``;
* the **e-ablation**: NTK-GD with e ∈ ``--scales`` at T = ``--ablation-horizon``, SGD at
  ``--ablation-lr`` (the official ablation scripts' 1e-3).

Reported on the training batch (the paper's theorems are about training) and on 512
held-out instances of the same family: gain over GD =
1 − mean F(x_T)_learned / mean F(x_T)_GD (> 0: better than GD; GD = step 0.9999/L, the
untrained NTK-GD model), the
fraction of held-out instances where the learned model beats GD, whether training stayed finite,
and the meta-gradient norm: its first value, its maximum over training, and the
**scale-free growth over the horizon** — the first meta-gradient norm at T divided by the
first one at the shortest T of the same model (it removes the e² scale of the NTK
parametrization, under which only the output layer has a gradient at init).

    python scripts/reproduce_ntk.py --out out/reproduce_ntk
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import lightning as L
import torch

from l2o.eval import Table, rollout
from l2o.meta import MetaTrainer, ProblemDataModule
from l2o.rules import build_rule
from problems import QuadraticFamily

FAMILY = {"m": 20, "n": 32}


class GradNormRecorder(L.Callback):
    """Keeps the logged meta-gradient norm of every training batch."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.norms.append(float(trainer.callback_metrics["train/grad_norm"]))


def model_config(model: str, scale: float) -> tuple[str, dict]:
    """The rule's registry name and configuration."""
    if model == "NTK-GD":
        return "ntk_gd", {"hidden_size": 1024, "input_scale": scale, "init": "ntk", "seed": 0}
    return "mathl2o", {"hidden_size": 20, "num_layers": 2, "extrapolation": model == "Math-L2O-PA"}


def train(model: str, horizon: int, lr: float, args, scale: float = 100.0) -> tuple[MetaTrainer, list[float]]:
    L.seed_everything(args.seed, verbose=False)
    data = ProblemDataModule(family="quadratic", family_params=FAMILY, batch_size=args.batch,
                             steps_per_epoch=args.meta_steps, seed=args.seed, fixed_batch=True, val_batch_size=8)
    rule, config = model_config(model, scale)
    trainer_module = MetaTrainer(rule=rule, rule_config=config, horizon=horizon, unroll=horizon, meta_loss="last",
                                 batch_reduction="sum", meta_optimizer="sgd", lr=lr, grad_clip=0.0,
                                 val_steps=horizon)
    recorder = GradNormRecorder()
    L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
              callbacks=[recorder], accelerator="cpu").fit(trainer_module, data)
    return trainer_module, recorder.norms


def final_objective(rule, held_out, horizon: int) -> torch.Tensor:
    return rollout(rule.double(), held_out, horizon).objective[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--models", nargs="+", default=["NTK-GD", "Math-L2O-P", "Math-L2O-PA"])
    parser.add_argument("--lr", type=float, default=1e-7, help="NTK-GD's SGD rate (e = 100)")
    parser.add_argument("--lstm-lr", type=float, default=1e-4, help="the LSTM comparators' SGD rate")
    parser.add_argument("--scales", type=float, nargs="*", default=[1.0, 5.0, 25.0, 50.0, 100.0])
    parser.add_argument("--ablation-horizon", type=int, default=20)
    parser.add_argument("--ablation-lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--meta-steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=int, default=512)
    parser.add_argument("--out", default="out/reproduce_ntk")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    held_out = QuadraticFamily(**FAMILY).sample(args.held_out, seed=987_654)
    training_batch = QuadraticFamily(**FAMILY).sample(args.batch, seed=args.seed)  # the fixed training batch
    columns = ["study", "model", "T", "e", "lr", "train_gain_over_gd", "gain_over_gd", "beats_gd_fraction",
               "first_grad_norm",
               "max_grad_norm", "grad_growth_over_T", "finite"]
    table = Table(columns)
    curves: dict[str, list[float]] = {}

    def run(study: str, model: str, horizon: int, lr: float, scale: float, first_at_shortest: dict) -> None:
        trained, norms = train(model, horizon, lr, args, scale)
        name, config = model_config("NTK-GD", 100.0)
        gd_rule = build_rule(name, **config)  # untrained: GD, step 0.9999 / L
        learned, gd = final_objective(trained.rule, held_out, horizon), final_objective(gd_rule, held_out, horizon)
        train_learned, train_gd = (final_objective(r, training_batch, horizon) for r in (trained.rule, gd_rule))
        finite = all(math.isfinite(v) for v in norms) and bool(torch.isfinite(learned).all())
        first_at_shortest.setdefault(model, norms[0])
        table.add(study=study, model=model, T=horizon, e=scale if model == "NTK-GD" else float("nan"), lr=lr,
                  train_gain_over_gd=1 - float(train_learned.mean() / train_gd.mean()),
                  gain_over_gd=1 - float(learned.mean() / gd.mean()),
                  beats_gd_fraction=float((learned < gd).double().mean()), first_grad_norm=norms[0],
                  max_grad_norm=max(norms), grad_growth_over_T=norms[0] / first_at_shortest[model], finite=finite)
        curves[f"{model}{f' e={scale:g}' if model == 'NTK-GD' else ''}, T={horizon}"] = norms
        print(table.to_markdown().splitlines()[-1], flush=True)

    shortest: dict = {}
    for horizon in sorted(args.horizons):
        for model in args.models:
            run("horizon", model, horizon, args.lr if model == "NTK-GD" else args.lstm_lr, 100.0, shortest)
    for scale in args.scales:
        run("e-ablation", "NTK-GD", args.ablation_horizon, args.ablation_lr, scale, {})
    table.save(out, "ntk_study")
    plot(curves, out / "grad_norms.png")
    print(f"\nQP {FAMILY['m']}x{FAMILY['n']} (consistent, x0 = 0), one fixed batch of {args.batch}, summed 'last' loss, "
          f"SGD, {args.meta_steps} meta-steps; held-out {args.held_out} instances\n")
    print(table.to_markdown())
    print(f"\nwrote {out}/ntk_study.{{md,csv,json}} and {out}/grad_norms.png")


def plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for name, norms in curves.items():
        axes.plot([v if math.isfinite(v) else float("nan") for v in norms], label=name,
                  linestyle="-" if name.startswith("NTK") else "--")
    axes.set_yscale("log")
    axes.set_xlabel("meta-step")
    axes.set_ylabel("meta-gradient norm")
    axes.set_title("Meta-gradient norms (official NTK-GD protocol)")
    axes.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
