"""AGZO's claims, measured: cosine similarity of the ZO update to the true gradient, fine-tuning
loss against forward passes, and peak memory (``AGZOOptimizer`` vs isotropic ZO).

The task (real data that ships with scikit-learn, no download): the 8 × 8 digits as
sequences of 8 row tokens (8 features each). A network is **pretrained with backprop** (Adam)
on the digits 0–4 and then **fine-tuned** on the digits 5–9, the same 10-way head: the
features carry over and the new classes must be learned, the shape of LLM fine-tuning
(a pretrained backbone adapted with few, cheap updates) at this machine's scale. Two
networks: an MLP on the flattened image (64-64-64-10, tanh) and a small transformer
(token embedding 8 → 32, one ``nn.TransformerEncoderLayer`` with 4 heads and a 64-wide
feed-forward, mean pooling, 32 → 10). Minibatches of ``--batch`` images.

Sections:

* ``cosine``: at the pretrained weights, on ``--draws`` minibatches of the fine-tuning set,
  the cosine between the ZO estimate (one step's update direction, MeZO-style ZO-Avg, central
  differences) and the backprop gradient of the same minibatch, per guided layer and overall,
  for AGZO (rank ``--rank``) and isotropic Gaussian directions at equal q;
* ``finetune``: training loss on the fine-tuning set against forward passes (ZO: 2q + 1 per
  step, or 2q for isotropic ZO given an lr; Adam counted one forward per step, its backward
  extra): AGZO and MeZO-style ZO-SGD (ZO-Avg, q = 1) on an lr grid (``--lrs``) and with
  ``lr=None``, ZO-Align and AGZO + ZO-Align (q = 4, lr=None), Adam;
* ``memory``: peak memory of one step above the resident model (fresh processes,
  :mod:`l2o.eval.memory`): inference forward, MeZO, AGZO, backprop.

    python scripts/agzo.py                     # every section (a few minutes on 2 cores)
    python scripts/agzo.py --sections cosine
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import Tensor, nn

from l2o.eval import Table
from l2o.eval.memory import peak_step_memory
from l2o.optim import AGZOOptimizer, ZOOptimizer
from problems.real_data import digits


class RowTransformer(nn.Module):
    """Digits as 8 tokens of 8 features: embed, one encoder layer, mean-pool, classify."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.encoder = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(width, 10)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(images.reshape(-1, 8, 8))).mean(1))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


MODELS = {"mlp": mlp, "transformer": RowTransformer}


def splits() -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(pretraining set: digits 0–4, fine-tuning set: digits 5–9), float32 features."""
    features, labels = digits()
    features = features.float()
    low = labels < 5
    return (features[low], labels[low]), (features[~low], labels[~low])


def pretrained(name: str, epochs: int = 30, seed: int = 0) -> nn.Module:
    """``name``'s network trained with backprop (Adam 1e-2, minibatches of 64) on digits 0–4."""
    (features, labels), _ = splits()
    torch.manual_seed(seed)
    model = MODELS[name]()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for rows in torch.randperm(labels.shape[0], generator=generator).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(features[rows]), labels[rows]).backward()
            optimizer.step()
    return model


def cosine(a: Tensor, b: Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-30))


def zo_estimate(make, model: nn.Module, loss) -> tuple[list[Tensor], ZOOptimizer]:
    """The direction of one ZO step (−Δθ / lr, lr tiny; the weights are put back), and the
    optimizer that took it."""
    before = [p.detach().clone() for p in model.parameters()]
    lr = 1e-8
    optimizer = make(model, lr)
    optimizer.step(loss)
    estimate = [(b - p.detach()) / lr for b, p in zip(before, model.parameters())]
    with torch.no_grad():
        for p, b in zip(model.parameters(), before):
            p.copy_(b)
    return estimate, optimizer


def cosine_section(args) -> Table:
    table = Table(["model", "q", "directions", "layer", "cosine (mean)", "standard error"])
    _, (features, labels) = splits()
    for name in args.models:
        model = pretrained(name)
        probe = AGZOOptimizer(model, lr=1e-8, q=1, rank=args.rank, seed=0)
        probe.step(lambda: nn.functional.cross_entropy(model(features[: args.batch]), labels[: args.batch]))
        model.load_state_dict(pretrained(name).state_dict())
        # the weights AGZO guides (nn.Linear modules the forward calls), reported layer by layer
        guided = [(n, p) for n, p in model.named_parameters() if probe.basis_of(p) is not None]
        for q in args.q:
            makers = {"AGZO (rank %d)" % args.rank: lambda m, lr, s: AGZOOptimizer(m, lr=lr, q=q, rank=args.rank, seed=s),
                      "isotropic (MeZO)": lambda m, lr, s: ZOOptimizer(m.parameters(), lr=lr, q=q, seed=s)}
            for label, make in makers.items():
                per_layer: dict[str, list[float]] = {}
                for draw in range(args.draws):
                    rows = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(draw))[: args.batch]
                    loss = lambda: nn.functional.cross_entropy(model(features[rows]), labels[rows])  # noqa: E731
                    gradient = torch.autograd.grad(loss(), list(model.parameters()))
                    estimate, _ = zo_estimate(lambda m, lr: make(m, lr, draw), model, loss)
                    position = {id(p): i for i, p in enumerate(model.parameters())}
                    for layer, p in guided:
                        i = position[id(p)]
                        per_layer.setdefault(layer, []).append(cosine(estimate[i], gradient[i]))
                    per_layer.setdefault("overall (every parameter)", []).append(
                        cosine(torch.cat([e.reshape(-1) for e in estimate]), torch.cat([g.reshape(-1) for g in gradient])))
                for layer, values in per_layer.items():
                    table.add(model=name, q=q, directions=label, layer=layer,
                              **{"cosine (mean)": statistics.mean(values),
                                 "standard error": statistics.stdev(values) / math.sqrt(len(values))})
            print(f"cosine: {name}, q={q} done", flush=True)
    return table


def finetune_section(args) -> Table:
    _, (features, labels) = splits()
    checkpoints = sorted({int(args.forwards * f) for f in (0.1, 0.25, 0.5, 1.0)})
    table = Table(["model", "method", "loss@0", *[f"loss@{c} fwd" for c in checkpoints], "seconds", "diverged"])
    grid = {f"lr={lr:g}": lr for lr in args.lrs} | {"lr=None": None}
    methods = {
        **{f"AGZO (rank {args.rank}, q=1, {key})": (lambda m, lr=lr: AGZOOptimizer(m, lr=lr, q=1, rank=args.rank, seed=0))
           for key, lr in grid.items()},
        **{f"MeZO ZO-SGD (ZO-Avg, q=1, {key})": (lambda m, lr=lr: ZOOptimizer(m.parameters(), lr=lr, q=1, seed=0))
           for key, lr in grid.items()},
        "ZO-Align (q=4)": lambda m: ZOOptimizer(m.parameters(), q=4, aggregator="align", seed=0),
        f"AGZO + ZO-Align (rank {args.rank}, q=4)": lambda m: AGZOOptimizer(m, q=4, rank=args.rank, aggregator="align",
                                                                            seed=0),
        "Adam lr=1e-3 (first order)": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3),
    }
    for name in args.models:
        base = pretrained(name)
        for label, make in methods.items():
            model = MODELS[name]()
            model.load_state_dict(base.state_dict())
            optimizer = make(model)
            first_order = not isinstance(optimizer, ZOOptimizer)
            generator = torch.Generator().manual_seed(1)
            calls = {"n": 0}
            with torch.no_grad():
                start = float(nn.functional.cross_entropy(model(features), labels))
            row, began = {"model": name, "method": label, "loss@0": start}, time.perf_counter()
            for checkpoint in checkpoints:
                if row.get("diverged"):
                    row[f"loss@{checkpoint} fwd"] = math.nan
                    continue
                while calls["n"] < checkpoint:  # forward passes, counted as they happen
                    rows = torch.randint(labels.shape[0], (args.batch,), generator=generator)

                    def loss(rows: Tensor = rows) -> Tensor:
                        calls["n"] += 1
                        return nn.functional.cross_entropy(model(features[rows]), labels[rows])
                    if first_order:
                        optimizer.zero_grad()
                        loss().backward()
                        optimizer.step()
                    else:
                        try:
                            optimizer.step(loss)
                        except ValueError:  # a non-finite loss: that lr diverged
                            row["diverged"] = "yes"
                            break
                with torch.no_grad():
                    value = float(nn.functional.cross_entropy(model(features), labels))
                row[f"loss@{checkpoint} fwd"] = math.nan if row.get("diverged") else value
            row["seconds"] = time.perf_counter() - began
            row.setdefault("diverged", "")
            table.add(**row)
            print(f"finetune: {name}, {label} done", flush=True)
    return table


def memory_section(args) -> Table:
    table = Table(["params", "batch", "forward MB", "MeZO step MB", "AGZO step MB", "backprop step MB",
                   "AGZO / MeZO"])
    for size in args.sizes:
        peak = {mode: peak_step_memory(mode, size, args.memory_batch) / 2**20 for mode in ("forward", "zo", "agzo",
                                                                                           "backprop")}
        table.add(params=size, batch=args.memory_batch, **{
            "forward MB": peak["forward"], "MeZO step MB": peak["zo"], "AGZO step MB": peak["agzo"],
            "backprop step MB": peak["backprop"],
            "AGZO / MeZO": peak["agzo"] / peak["zo"] if peak["zo"] > 0 else math.nan})
        print(f"memory: {size} done", flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["cosine", "finetune", "memory"],
                        choices=["cosine", "finetune", "memory"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--q", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="minibatch of images")
    parser.add_argument("--draws", type=int, default=50, help="minibatches (and seeds) per cosine")
    parser.add_argument("--forwards", type=int, default=6000, help="forward passes of each fine-tuning run")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2],
                        help="the fine-tuning lr grid of AGZO and MeZO (each also runs with lr=None)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--memory-batch", type=int, default=256)
    parser.add_argument("--out", default="out/agzo")
    args = parser.parse_args()
    sections = {"cosine": cosine_section, "finetune": finetune_section, "memory": memory_section}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    for section in args.sections:
        table = sections[section](args)
        print(f"\n## {section}\n\n{table.to_markdown()}\n", flush=True)
        table.save(args.out, section)


if __name__ == "__main__":
    main()
