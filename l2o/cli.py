"""The ``l2o`` command line.

  l2o fit --config configs/gomath_lasso_toy.yaml   meta-train (LightningCLI; --help for all flags)
  l2o validate --config ... --ckpt_path CKPT        validate a checkpoint
  l2o export CKPT NAME [--dir checkpoints]          Lightning checkpoint -> zoo entry (+ eval numbers)
  l2o zoo                                           list the zoo with its cards
  l2o eval ENTRY [--family lasso ...]               a zoo entry or checkpoint vs baselines, InD and OOD
  l2o eval-ood [--zoo NAME ...] [--out DIR]        OOD robustness matrix of the zoo (report.md, results.*)
  l2o demo                                          train a small GoMathL2O on LASSO, evaluate it
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

LIGHTNING_COMMANDS = ("fit", "validate")


CHECKPOINT_EVERY = 50  # meta-steps between rewrites of last.ckpt (l2o fit --checkpoint_every N)


def _pop_option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """``(value, argv without it)`` for ``name VALUE`` or ``name=VALUE`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def run_lightning(argv: list[str]) -> int:
    """``l2o fit`` / ``l2o validate``: LightningCLI over MetaTrainer + ProblemDataModule.

    Checkpoints (:mod:`l2o.meta.checkpointing`), in the run's ``version_N/checkpoints``:
    the best by ``val/loss`` and ``last.ckpt``, rewritten every ``--checkpoint_every``
    meta-steps (default 50) and when SIGINT/SIGTERM stops the run. ``--ckpt_path last``
    resumes from the newest ``last.ckpt`` of the runs under the trainer's root directory.
    Returns 128 + the signal number when a signal stopped training.
    """
    from lightning.pytorch.cli import LightningCLI

    from l2o.meta import MetaTrainer, ProblemDataModule
    from l2o.meta.checkpointing import CheckpointOnSignal, checkpoint_callbacks, find_last_checkpoint

    every, argv = _pop_option(argv, "--checkpoint_every")
    try:
        callbacks = checkpoint_callbacks(int(every) if every is not None else CHECKPOINT_EVERY)
    except ValueError as error:
        print(f"l2o: error: {error}", file=sys.stderr)
        return 2

    class MetaCLI(LightningCLI):
        def before_fit(self) -> None:
            config = self.config_init[self.subcommand]
            if config.get("ckpt_path") != "last":
                return
            found = find_last_checkpoint(self.trainer.default_root_dir)
            root = Path(self.trainer.default_root_dir).resolve()
            if found is None:
                print(f"no last.ckpt under {root}/lightning_logs: training from the start", flush=True)
                config["ckpt_path"] = None
            else:
                print(f"resuming from {found}", flush=True)
                config["ckpt_path"] = str(found)

    quiet_lightning_tips()
    # LightningCLI reads sys.argv itself; passing args= as well makes it warn on every run
    saved, sys.argv = sys.argv, [sys.argv[0] if sys.argv else "l2o", *argv]
    try:
        cli = MetaCLI(MetaTrainer, ProblemDataModule, trainer_defaults={"callbacks": callbacks},
                      save_config_kwargs={"overwrite": True})
    finally:
        sys.argv = saved
    stopper = next((c for c in cli.trainer.callbacks if isinstance(c, CheckpointOnSignal)), None)
    return 128 + stopper.received if stopper is not None and stopper.received is not None else 0


def quiet_lightning_tips() -> None:
    """Drop Lightning's advertising ("💡 Tip: ... try installing ...") from its log, and
    three warnings every ``l2o fit`` would print that are not the user's to act on: the
    CSV logger default (l2o reads its metrics.csv), the after-the-step state of manual-
    optimization checkpoints (what a resume needs) and a deprecation inside Lightning."""
    import logging
    import warnings

    for message in ("Starting from v1.9.0, `tensorboardX` has been removed",
                    "Using ModelCheckpoint with manual optimization",
                    "`isinstance\\(treespec, LeafSpec\\)` is deprecated"):
        warnings.filterwarnings("ignore", message=message)

    class NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.getMessage()).startswith("💡 Tip")

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(NoTips())


def _scenario_families(family_name: str, family_params: dict[str, Any]):
    from l2o.eval import default_scenarios
    from l2o.meta import make_family

    return default_scenarios(make_family(family_name, family_params))


def evaluate_rule(rule, family_name: str, family_params: dict[str, Any], *, batch: int,
                  steps: int, seed: int, out: str | Path | None, label: str):
    """The learned ``rule`` against the classical baselines on the default scenarios (float64
    instances; the rule's network in the dtype it was trained in, as a user deploys it)."""
    from l2o.eval import classical_baselines, evaluate_scenarios

    methods = {label: rule, **classical_baselines()}
    return evaluate_scenarios(
        methods, _scenario_families(family_name, family_params), batch=batch, steps=steps,
        seed=seed, baseline="FISTA", out=out, title=f"{family_name}: ",
    )


def validation_curve(checkpoint: str | Path, resumed_from: str | None = None) -> list[dict[str, float]]:
    """The validation metrics logged during the run that wrote ``checkpoint``: one dict per
    validation (``step`` and every ``val/...`` value), read from the CSV logger's
    ``metrics.csv`` beside the ``checkpoints/`` folder; empty if there is none. A run that
    resumed from another checkpoint (``resumed_from``) is preceded by that run's curve up
    to the step it resumed at."""
    import csv

    metrics = Path(checkpoint).resolve().parent.parent / "metrics.csv"
    curve = []
    if metrics.is_file():
        with metrics.open(newline="") as handle:
            for row in csv.DictReader(handle):
                values = {k: float(v) for k, v in row.items() if k.startswith("val/") and v not in ("", None)}
                if values:
                    curve.append({"step": int(row["step"]), **values})
    if resumed_from and Path(resumed_from).is_file():
        from l2o import zoo

        earlier = zoo.rule_from_lightning_checkpoint(resumed_from)[1]
        start = earlier["global_step"] or 0
        curve = [r for r in validation_curve(resumed_from, earlier["resumed_from"]) if r["step"] < start] + curve
    return curve


def export(args: argparse.Namespace) -> int:
    from l2o import zoo

    target = Path(args.dir) / args.name
    existing = [path for path in (target.with_suffix(".safetensors"), target.with_suffix(".json")) if path.exists()]
    if existing and not args.force:
        raise FileExistsError(f"zoo entry {args.name!r} exists ({existing[0]}); pass --force to replace it")
    rule, hparams = zoo.rule_from_lightning_checkpoint(args.checkpoint)
    data = hparams["data"]
    family, family_params = data.get("family", "lasso"), data.get("family_params") or {}
    table = evaluate_rule(zoo.as_trained(rule, hparams["module"]), family, family_params, batch=args.eval_batch,
                          steps=args.eval_steps, seed=args.eval_seed, out=None, label=args.name)
    weights, card = zoo.save(
        rule, Path(args.dir) / args.name,
        training={"family": family, "family_params": family_params, **hparams["module"],
                  "data": data, "global_step": hparams["global_step"], "epoch": hparams["epoch"],
                  "checkpoint": Path(args.checkpoint).name, "validation_curve": validation_curve(args.checkpoint, hparams["resumed_from"])},
        evaluation={"batch": args.eval_batch, "steps": args.eval_steps, "seed": args.eval_seed,
                    "command": f"l2o eval {args.name} --batch {args.eval_batch} --steps {args.eval_steps} --seed {args.eval_seed}",
                    "rows": json.loads(table.to_json())["rows"]},
    )
    print(table.to_markdown())
    print(f"\nwrote {weights} and {card}")
    return 0


def list_zoo(args: argparse.Namespace) -> int:
    from l2o import zoo

    names = zoo.list()
    if not names:
        print(f"the zoo at {zoo.zoo_directory()} is empty")
        return 0
    for name in names:
        card = zoo.read_card(zoo.zoo_directory() / f"{name}.json")
        training = card.get("training", {})
        print(f"{name}: rule={card['rule']} {card['rule_config']} family={training.get('family')} "
              f"{training.get('family_params')} horizon={training.get('horizon')}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from l2o import zoo

    if str(args.entry).endswith(".ckpt"):
        rule, hparams = zoo.rule_from_lightning_checkpoint(args.entry)
        rule = zoo.as_trained(rule, hparams["module"])
        training = {"family": hparams["data"].get("family"), "family_params": hparams["data"].get("family_params")}
    else:
        entry = zoo.load(args.entry)
        rule, training = entry.rule, entry.card.get("training", {})
    family = args.family or training.get("family") or "lasso"
    params = json.loads(args.family_params) if args.family_params else (training.get("family_params") or {})
    label = Path(str(args.entry)).stem
    table = evaluate_rule(rule, family, params, batch=args.batch, steps=args.steps, seed=args.seed,
                          out=args.out, label=label)
    print(table.to_markdown())
    written = "report.md, report.csv, report.json and convergence-*.png"
    if args.network_steps > 0:
        from l2o.eval.networks import evaluate_networks

        networks = evaluate_networks({label: rule}, steps=args.network_steps)
        print(f"\nreal networks (drop-in vs torch.optim.Adam / SGD, loss after {args.network_steps} steps):\n"
              + networks.to_markdown())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "networks.md").write_text(networks.to_markdown() + "\n")
        (out / "networks.csv").write_text(networks.to_csv())
        written += ", networks.md, networks.csv"
    print(f"\nwrote {args.out}/{written}")
    return 0


def evaluate_ood(args: argparse.Namespace) -> int:
    import shlex

    from l2o.eval.ood import evaluate_ood as run

    command = shlex.join(["l2o", *args.argv])
    report = run(args.zoo, out=args.out, batch=args.batch, steps=args.steps, seed=args.seed,
                 full=args.full, progress=not args.no_progress, command=command, network_steps=args.network_steps)
    survival = report.survival()
    for (entry, method), survived in survival.items():
        failed = [name for name, ok in survived.items() if not ok]
        print(f"[{entry}] {method}: survives {len(survived) - len(failed)}/{len(survived)} scenarios"
              + (f" (not: {', '.join(failed)})" if failed else ""))
    if report.networks is not None:
        print("\nreal networks (drop-in, loss after "
              f"{args.network_steps} steps):\n" + report.networks.to_markdown())
    print(f"\nwrote {args.out}/report.md, results.csv, results.json"
          + (", networks.csv" if report.networks is not None else "") + " and the PNG plots")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Meta-train GoMathL2O on toy LASSO on the CPU, export it, evaluate InD and OOD."""
    import lightning as L

    from l2o import zoo
    from l2o.meta import MetaTrainer, ProblemDataModule

    out = Path(args.out)
    quiet_lightning_tips()
    L.seed_everything(0, verbose=False)
    family_params = {"m": 20, "n": 40, "sparsity": 5, "l1": 0.1}
    data = ProblemDataModule(family="lasso", family_params=family_params, batch_size=64,
                             steps_per_epoch=args.steps_per_epoch, val_batch_size=128,
                             ood={"data_scale_x3": {"data_scale": 3.0}})
    model = MetaTrainer(rule="gomath", horizon=100, unroll=20, lr=1e-2, val_steps=100)
    trainer = L.Trainer(max_epochs=args.epochs, default_root_dir=out / "training", accelerator="cpu",
                        log_every_n_steps=5, enable_model_summary=False)
    trainer.fit(model, data)
    rule = model.rule.eval()
    table = evaluate_rule(rule, "lasso", family_params, batch=args.batch, steps=200, seed=args.seed,
                          out=out, label="GoMathL2O (demo)")
    zoo.save(rule, out / "gomath-demo", training={"family": "lasso", "family_params": family_params,
                                                 **dict(model.hparams)})
    print(f"\nLASSO 20x40: GoMathL2O meta-trained for {trainer.global_step} meta-steps "
          f"vs classical baselines; {args.batch} held-out instances per scenario, "
          "median rel = (F - F*)/|F*|, speedup = FISTA's median iterations to 1e-4 / the method's\n")
    print(table.to_markdown())
    print(f"\nwrote {out}/report.md, report.csv, report.json, convergence-*.png and the trained "
          f"rule as a zoo entry {out}/gomath-demo.safetensors (+ .json)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in LIGHTNING_COMMANDS:
        commands.add_parser(name, help=f"meta-training: LightningCLI '{name}' (l2o {name} --help)")

    run = commands.add_parser("demo", help="train a small GoMathL2O on LASSO and compare it with baselines")
    run.add_argument("--epochs", type=int, default=4, help="meta-training epochs (default 4)")
    run.add_argument("--steps-per-epoch", type=int, default=25, help="instance batches per epoch (default 25)")
    run.add_argument("--batch", type=int, default=128, help="held-out instances per scenario (default 128)")
    run.add_argument("--seed", type=int, default=10_000, help="first held-out seed (default 10000)")
    run.add_argument("--out", default="out/demo", help="output directory (default out/demo)")
    run.set_defaults(handler=demo)

    exp = commands.add_parser("export", help="turn a meta-training checkpoint into a zoo entry")
    exp.add_argument("checkpoint", help="a .ckpt written by l2o fit")
    exp.add_argument("name", help="entry name, method first (e.g. gomath-lasso)")
    exp.add_argument("--dir", default=None, help="zoo directory (default: the zoo's, checkpoints/)")
    exp.add_argument("--force", action="store_true", help="replace an existing entry of that name")
    exp.add_argument("--eval-batch", type=int, default=256, help="held-out instances per scenario for the card (default 256)")
    exp.add_argument("--eval-steps", type=int, default=200, help="iterations of that evaluation (default 200)")
    exp.add_argument("--eval-seed", type=int, default=10_000, help="seed of its first scenario (default 10000)")
    exp.set_defaults(handler=export)

    zoo_parser = commands.add_parser("zoo", help="list the zoo entries and their cards")
    zoo_parser.set_defaults(handler=list_zoo)

    ev = commands.add_parser("eval", help="evaluate a zoo entry or checkpoint vs baselines, InD and OOD")
    ev.add_argument("entry", help="zoo name, .safetensors or .ckpt path")
    ev.add_argument("--family", default=None, help="problem family (default: the entry's training family)")
    ev.add_argument("--family-params", default=None, help='JSON, e.g. \'{"m": 20, "n": 40}\'')
    ev.add_argument("--batch", type=int, default=256, help="held-out instances per scenario (default 256)")
    ev.add_argument("--steps", type=int, default=200, help="iterations (default 200)")
    ev.add_argument("--seed", type=int, default=10_000, help="seed of the first scenario (default 10000)")
    ev.add_argument("--out", default="out/eval", help="output directory (default out/eval)")
    ev.add_argument("--network-steps", type=int, default=200,
                    help="steps of the drop-in runs on real networks vs torch's Adam and SGD (default 200; 0: skip)")
    ev.set_defaults(handler=evaluate)

    ood = commands.add_parser(
        "eval-ood", help="OOD robustness of the zoo: InD, an objective shift, an x0 shift and real data "
        "vs the strongest baseline, with and without the safeguard (--full: every shift and baseline)")
    ood.add_argument("--full", action="store_true",
                     help="the whole matrix: every shift and every baseline (much longer; the plan and an "
                          "estimate are printed first)")
    ood.add_argument("--zoo", nargs="+", default=None, metavar="NAME", help="entries (default: all)")
    ood.add_argument("--out", default="out/ood", help="output directory (default out/ood)")
    ood.add_argument("--batch", type=int, default=64, help="instances per scenario (default 64)")
    ood.add_argument("--steps", type=int, default=200, help="iterations (default 200)")
    ood.add_argument("--seed", type=int, default=20_000, help="seed of the first scenario (default 20000)")
    ood.add_argument("--no-progress", action="store_true", help="no progress bar")
    ood.add_argument("--network-steps", type=int, default=200,
                     help="steps of every entry's drop-in runs on real networks vs torch's Adam and SGD "
                          "(default 200; 0: skip)")
    ood.set_defaults(handler=evaluate_ood)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        return run_lightning(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if getattr(args, "dir", "unset") is None:
        from l2o.zoo import zoo_directory

        args.dir = str(zoo_directory())
    try:
        return args.handler(args)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"l2o {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
