"""Meta-training throughput of l2o's GoMathL2O against the official code, side by side.

    git clone https://github.com/NetX-lab/GoMathL2O-Official
    python scripts/compare_official.py --official GoMathL2O-Official
    python scripts/compare_official.py            # no checkout: prints why and exits 0

Both train the same model (GoMathL2O, LSTM 2 × 20, the LASSO heads) on the same instances
(l2o's ``LassoFamily`` draws; the official optimizee gets their A, b and x₀), in the same
dtype, with the same protocol: a training batch is ``horizon`` steps in ``horizon / unroll``
truncated segments, each ending in the mean objective's backward, a meta-gradient clipped
at norm 1 and an Adam step (lr 1e-2), the official ``configs/*lasso*.yaml`` settings.

* The official side runs its ``GOMathL2O`` model and ``LASSO`` optimizee with the loop of its
  ``main.py`` (``unroll_BP``, ``loss_func: mean``, ``clip_grad``), its best setting:
  **without** ``torch.autograd.set_detect_anomaly(True)``, which its ``main.py`` turns on
  and which alone slows it by about 2.4×.
* The l2o side is ``MetaTrainer.training_step`` inside a Lightning ``Trainer``, as
  ``l2o fit`` runs it; a callback times each training batch (validation off). Its variants
  are every ``--l2o-compile`` with every ``--products`` library of the LSTM layers'
  float32 CPU products (default: the one ``kernels.products_library()`` picks for this CPU),
  so that two libraries are timed side by side in one process.

Repetitions alternate between the two (official batch, l2o batch, …) after one untimed
warm-up batch each, so drift on the machine hits both. Printed per size: seconds per
training batch (median and min–max), and the ratio official / l2o (median of the
per-repetition ratios, with their min–max), and each l2o variant against the first one
(``first l2o / this``, per repetition: l2o's own variants side by side). That the two compute the same thing is
``tests/parity``'s job (the official iterates and meta-gradients, replayed to 1e-10).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch

from l2o.eval import Table
from l2o.meta import MetaTrainer
from l2o.rules import kernels
from official_checkout import commit, import_official
from problems import LassoFamily

SIZES = {"toy": {"m": 20, "n": 40, "sparsity": 5, "batch": 64},
         "paper": {"m": 250, "n": 500, "sparsity": 50, "batch": 32}}
HIDDEN, LAYERS, RHO, META_LR, CLIP = 20, 2, 0.1, 1e-2, 1.0


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------- official
class OfficialTrainer:
    """The official model and its training loop (``main.py``'s ``unroll_BP``)."""

    def __init__(self, path: Path, instances, horizon: int, unroll: int, device: str) -> None:
        optimizers, optimizees = import_official(path)
        torch.manual_seed(0)
        heads = dict(r_use=True, q_use=True, b_use=True, b3_use=False, b4_use=False, r_scale_learned=False,
                     q_scale_learned=False, b_scale_learned=False, b3_scale_learned=False,
                     b4_scale_learned=False, r_norm="sigmoid", q_norm="sigmoid", b_norm="sigmoid1")
        self.model = optimizers.GOMathL2O(3, 1, HIDDEN, LAYERS, **heads).to(device=device, dtype=instances.dtype)
        self.meta_optimizer = torch.optim.Adam(self.model.parameters(), lr=META_LR)
        self.make_lasso = lambda: optimizees.LASSO(
            instances.batch_size, W=instances.A, Y=instances.b[..., None], rho=RHO,
            s=1, input_dim=instances.dim, output_dim=instances.A.shape[1], device=device)
        self.x0 = instances.x0()[..., None]
        self.horizon, self.unroll = horizon, unroll

    def train_batch(self) -> None:
        optimizees = self.make_lasso()
        optimizees.X = self.x0.clone()
        optimizees.set_var("Z", self.x0.clone())
        optimizees.set_var("VG", torch.zeros_like(self.x0))
        self.model.train()
        self.model.reset_state(optimizees, None, state_scale=0.01)
        for _ in range(self.horizon // self.unroll):
            global_loss = 0.0
            for _ in range(self.unroll):
                optimizees = self.model(optimizees, "smooth_grad")
                global_loss = global_loss + optimizees.objective(compute_grad=True) / self.unroll
            self.meta_optimizer.zero_grad()
            global_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP, error_if_nonfinite=False)
            self.meta_optimizer.step()
            self.model.detach_state()
            optimizees.detach_vars()


# ------------------------------------------------------------------------ l2o
class BatchTimer(L.Callback):
    """Wall seconds of the (single) training batch of a ``fit``."""

    def __init__(self, device: str) -> None:
        self.device, self.seconds, self.start = device, float("nan"), 0.0

    def on_train_batch_start(self, *args) -> None:
        synchronize(self.device)
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.start


class L2OTrainer:
    """l2o's ``MetaTrainer`` in a Lightning ``Trainer``, one ``fit`` call per timed batch."""

    def __init__(self, instances, horizon: int, unroll: int, device: str, compile: bool,
                 products: str) -> None:
        torch.manual_seed(0)
        self.module = MetaTrainer(rule="gomath", rule_config={"hidden_size": HIDDEN, "num_layers": LAYERS},
                                  horizon=horizon, unroll=unroll, lr=META_LR, grad_clip=CLIP, compile=compile)
        self.module.rule.to(dtype=instances.dtype)
        self.instances, self.device, self.products = instances, device, products

    def train_batch(self) -> float:
        """Seconds of one training batch, between Lightning's batch hooks."""
        loader = torch.utils.data.DataLoader([self.instances], batch_size=1, collate_fn=lambda items: items[0])
        timer = BatchTimer(self.device)
        trainer = L.Trainer(
            max_epochs=1, accelerator="gpu" if self.device.startswith("cuda") else "cpu", devices=1,
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            limit_val_batches=0, callbacks=[timer])
        with kernels.products(self.products):
            trainer.fit(self.module, train_dataloaders=loader)
        return timer.seconds


# ------------------------------------------------------------------ the race
def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g}–{max(values):.4g})"


def compare(path: Path, size: str, args) -> list[dict]:
    shape = SIZES[size]
    family = LassoFamily(m=shape["m"], n=shape["n"], sparsity=shape["sparsity"], l1=RHO)
    dtype = getattr(torch, args.dtype)
    instances = family.sample(args.batch or shape["batch"], seed=args.seed, device=args.device, dtype=dtype)
    official = OfficialTrainer(path, instances, args.horizon, args.unroll, args.device)
    contenders = {"official": official.train_batch}
    for compiled in args.l2o_compile:
        for library in args.products:
            trainer = L2OTrainer(instances, args.horizon, args.unroll, args.device, compiled, library)
            options = (["compile=True"] if compiled else []) + ([library] if len(args.products) > 1 else [])
            contenders["l2o" + (f" ({', '.join(options)})" if options else "")] = trainer.train_batch

    def timed(run) -> float:
        synchronize(args.device)
        start = time.perf_counter()
        seconds = run()
        synchronize(args.device)
        return seconds if isinstance(seconds, float) else time.perf_counter() - start

    for run in contenders.values():  # warm-up: first-call costs (and compilation) untimed
        timed(run)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            times[name].append(timed(run))
    rows = []
    first_l2o = times[next(name for name in contenders if name != "official")]
    for name, values in times.items():
        ratios = [o / v for o, v in zip(times["official"], values)]
        against_l2o = "—" if name == "official" else spread([f / v for f, v in zip(first_l2o, values)])
        rows.append({"size": size, "A": f"{shape['m']}×{shape['n']}", "batch": instances.batch_size,
                     "dtype": args.dtype, "device": args.device, "code": name, "s per batch": spread(values),
                     "official / this": spread(ratios), "first l2o / this": against_l2o,
                     "median ratio": statistics.median(ratios)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, help="checkout of NetX-lab/GoMathL2O-Official")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["toy", "paper"])
    parser.add_argument("--batch", type=int, default=None, help="instances per batch (default: 64 toy, 32 paper)")
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--unroll", type=int, default=20)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda when a GPU is present")
    parser.add_argument("--l2o-compile", type=lambda s: s == "true", nargs="+", default=[False],
                        metavar="{false,true}", help="l2o variants: MetaTrainer(compile=...)")
    parser.add_argument("--products", nargs="+", choices=["onednn", "blas"], default=[kernels.products_library()],
                        help="l2o variants: the library of the LSTM layers' float32 CPU products "
                             "(default: kernels.products_library(), by CPU vendor)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/compare_official"))
    args = parser.parse_args()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # each sets its own level
        logging.getLogger(name).setLevel(logging.ERROR)  # one fit per timed batch: no banners
    warnings.filterwarnings("ignore", message=".*val_dataloader.*")  # timed batches skip validation
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of torch's pytree
    if args.official is None:
        print("compare_official: skipped (no --official PATH to a checkout of NetX-lab/GoMathL2O-Official)")
        return
    if not (args.official / "optimizers" / "go_math_l2o_gradmap.py").exists():
        sys.exit(f"compare_official: {args.official} is not a checkout of NetX-lab/GoMathL2O-Official")
    if "onednn" in args.products and not kernels.ONEDNN_BUILT:
        sys.exit("compare_official: --products onednn but this torch was built without oneDNN")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("compare_official: --device cuda but no GPU is present")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads ({kernels.cpu_vendor() or 'vendor unknown'}), "
          f"device {args.device}, products {'/'.join(args.products)}, "
          f"official NetX-lab/GoMathL2O-Official@{commit(args.official)[:10]}\n")
    table = Table(["size", "A", "batch", "dtype", "device", "code", "s per batch", "official / this",
                   "first l2o / this"])
    for size in args.sizes:
        for row in compare(args.official.resolve(), size, args):
            table.add(**{k: v for k, v in row.items() if k != "median ratio"})
            print(table.to_markdown().splitlines()[-1], flush=True)
    print("\n" + table.to_markdown())
    table.save(str(args.out), "compare_official")


if __name__ == "__main__":
    main()
