"""Performance benchmarks, each measured side by side in one run and printed as ratios.

1. meta-training throughput per rule: instance-steps per second, forward + backward through
   a K-step unroll, batched vs a straightforward per-instance loop;
2. ``step()`` time of learned optimizers vs ``torch.optim.Adam`` on MLPs of ~1M and ~10M
   parameters, with l2o's classical AdamHD and ProxGD as the cost of the optimizer machinery
   without a network; for the LSTM rules also the achieved GFLOP/s of the network's matrix
   products and the ratio to the roofline (those FLOPs at the GEMM rate measured in the same
   run, or the step's minimal memory traffic at the measured copy bandwidth), the floor with
   the LSTM's σ at the measured σ rate, and the network's products timed at their own shapes;
3. (``fresh_step``) the same ``step()`` in fresh processes, with l2o's malloc thresholds
   pinned and with glibc's own, alternating: what a user's first process gets;
4. amortized solving: time to reach a relative suboptimality on 256 and 1000 LASSO instances,
   float64 and float32 data, with a zoo optimizer (one batched call) vs batched FISTA and
   FISTA with restart, and cvxpy one instance at a time; on the paper's A (250×500) and on a
   tall, correlated one (2500×500, ρ = 0.8: a gradient that costs more than the network, and
   a problem on which FISTA needs more iterations);
5. ZO memory: peak memory of one ``ZOOptimizer`` step (closure only) vs one backprop step
   (forward + backward + SGD) on the same MLP and batch, each in a fresh subprocess after
   one warm-up step: the rise of peak RSS above the resident size before the step (Linux
   /proc; reset with clear_refs), or on CUDA ``max_memory_allocated`` above the allocated
   memory before the step.

Every section runs on the CPU, and on CUDA too when a GPU is present (skipped otherwise).
Rules with compiled kernels (the LSTM rules) are also measured with ``torch.compile``
(``compile_kernels()``), side by side with their eager runs; compilation happens in the
warm-up run and is not timed.

    python scripts/benchmark.py                       # everything, default sizes
    python scripts/benchmark.py --sections step --sizes 1000000
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable
from unittest import mock

import torch

from l2o import zoo
from l2o.eval import Table, relative_suboptimality
from l2o.eval.memory import peak_step_memory
from l2o.eval.rollout import unroll, unroll_objectives
from l2o.optim import AdamHD, LearnedOptimizer, ProxGD
from l2o.rules import CoordinateLSTMRule, FISTARule, StepContext, UpdateRule, build_rule, kernels, native_network
from problems import LassoFamily


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def variants(rule: UpdateRule, args) -> dict[str, UpdateRule]:
    """``{"": rule}`` plus ``{" (compiled)": copy}`` when the rule has compiled kernels
    (unless ``--no-compile``)."""
    if args.no_compile:
        return {"": rule}
    try:
        return {"": rule, " (compiled)": copy.deepcopy(rule).compile_kernels()}
    except ValueError:
        return {"": rule}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_runs(fn: Callable[[], object], device: str, repeats: int, warmup: int = 1) -> list[float]:
    """Wall times of ``repeats`` runs of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timed(fn: Callable[[], object], device: str, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    return statistics.median(timed_runs(fn, device, repeats))


def spread(values: list[float], scale: float = 1.0) -> str:
    """``"min–max"`` of ``values × scale``: the spread next to a median."""
    return f"{scale * min(values):.3g}–{scale * max(values):.3g}"


# ------------------------------------------------------------------ 1. throughput
def unroll_backward(rule: UpdateRule, instances, steps: int) -> None:
    values = [value for _, _, value in unroll_objectives(rule, instances, steps)]
    torch.stack(values).mean().backward()


def meta_training_throughput(args) -> Table:
    table = Table(["device", "rule", "batch", "n", "batched inst-steps/s", "per-instance inst-steps/s", "ratio"])
    family = LassoFamily(m=args.m, n=args.n, sparsity=max(1, args.n // 10))
    for device in devices():
        for name in args.rules:
            torch.manual_seed(0)
            batch = family.sample(args.batch, seed=0, device=device)
            singles = [family.sample(1, seed=i, device=device) for i in range(args.per_instance)]
            for label, rule in variants(build_rule(name).to(device), args).items():
                batched = timed(lambda: unroll_backward(rule, batch, args.unroll), device, args.repeats)
                looped = timed(lambda: [unroll_backward(rule, s, args.unroll) for s in singles], device, 1)
                rate_batched = args.batch * args.unroll / batched
                rate_looped = args.per_instance * args.unroll / looped
                table.add(device=device, rule=name + label, batch=args.batch, n=args.n,
                          **{"batched inst-steps/s": rate_batched, "per-instance inst-steps/s": rate_looped,
                             "ratio": rate_batched / rate_looped})
                print(table.to_markdown().splitlines()[-1], flush=True)
    return table


# -------------------------------------------------------------------- 2. step()
def mlp(parameters: int, device: str) -> torch.nn.Module:
    width = int((parameters / 3) ** 0.5)
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                               torch.nn.ReLU(), torch.nn.Linear(width, width)).to(device)


def step_time(make_optimizer, parameters: int, device: str, repeats: int) -> tuple[list[float], int, int]:
    """``step()`` seconds of each repetition after 3 untimed steps (the first creates the
    optimizer's state; by the third the allocator reuses the memory of earlier steps, as in
    any long run), the parameter count, and the bytes a step must move at least: the
    optimizer's state read and written, the parameters read and written and their gradients
    read."""
    torch.manual_seed(0)
    model = mlp(parameters, device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer = make_optimizer(model.parameters())
    runs = timed_runs(optimizer.step, device, repeats, warmup=3)
    params = list(model.parameters())
    state = sum(tensor_bytes(slot) for slot in optimizer.state.values())
    return runs, sum(p.numel() for p in params), 2 * state + 3 * sum(p.nbytes for p in params)


def tensor_bytes(value: object) -> int:
    """Bytes of the tensors in ``value``, nested dicts included (a learned rule's state sits
    in its slot's ``rule_state`` dict)."""
    if torch.is_tensor(value):
        return value.nbytes
    return sum(tensor_bytes(v) for v in value.values()) if isinstance(value, dict) else 0


def machine_rates(device: str, repeats: int) -> tuple[float, float, float]:
    """The machine's achievable rates, measured now: float32 GEMM FLOP/s (a 2048³ product, the
    faster of torch's ``mm`` and, on a CPU with it, oneDNN's matmul: on AMD Zen, MKL's ``sgemm``
    takes its AVX2 path and oneDNN runs about twice its rate), copy bandwidth in bytes/s (a
    256 MB ``copy_``, read + write) and σ evaluations per second (``sigmoid_`` in place on one
    chunk's float32 gates, ``(LSTM_CHUNK_ROWS, 80)``: in cache)."""
    a, b = (torch.randn(2048, 2048, device=device) for _ in range(2))
    gemm = 2 * 2048**3 / timed(lambda: a @ b, device, max(repeats, 5))
    if device == "cpu" and kernels.ONEDNN_BUILT:  # whichever library the layers' products use
        gemm = max(gemm, 2 * 2048**3 / timed(lambda: kernels.onednn_linear(a, b, None, "none"), device,
                                             max(repeats, 5)))
    source = torch.randn(1 << 26, device=device)
    target = torch.empty_like(source)
    copy = 2 * source.nbytes / timed(lambda: target.copy_(source), device, max(repeats, 5))
    gates = torch.randn(kernels.LSTM_CHUNK_ROWS, 80, device=device)
    sigmoid = gates.numel() / timed(gates.sigmoid_, device, max(repeats, 20))
    return gemm, copy, sigmoid


def products_seconds(rule: CoordinateLSTMRule, count: int, device: str, repeats: int) -> float:
    """The network's matrix products alone for ``count`` coordinates: each of
    ``rule.matmul_shapes()`` timed as one product over the rows the step runs at once (a chunk
    of ``LSTM_CHUNK_ROWS`` on the CPU, all of them on a GPU), as the step runs it
    (``kernels.dense``: on a CPU the library ``kernels.products_library()`` picks, ``mm``
    elsewhere), scaled to ``count``: what the products cost at their own skinny shapes, where
    the roofline assumes the 2048³ rate."""
    rows = min(count, kernels.LSTM_CHUNK_ROWS) if device == "cpu" else count
    seconds = 0.0
    with torch.no_grad():
        for k, n in rule.matmul_shapes():
            inputs, weight = torch.randn(rows, k, device=device), torch.randn(n, k, device=device)
            seconds += timed(lambda: kernels.dense(inputs, weight, None), device, max(repeats, 20))
    return seconds * count / rows


def step_variants(rule: UpdateRule, device: str, args) -> list[tuple[str, UpdateRule, dict[str, str]]]:
    """The step section's runs of ``rule``: :func:`variants`, and for an LSTM rule whose network
    runs through the native kernel here (:mod:`l2o.rules.native_network`) each of them
    through the kernel's other builds that this CPU runs too (``L2O_NATIVE=avx2`` on an AVX-512
    CPU, labelled "avx2 kernel") and through torch's kernels (``L2O_NATIVE=0``, labelled "torch
    path"), side by side: the compiled variant compiles the features and update on every path and
    the LSTM cells on torch's."""
    paths: list[tuple[str, dict[str, str]]] = [("", {})]
    if isinstance(rule, CoordinateLSTMRule):
        with torch.no_grad():
            if rule._native_kernel(torch.zeros(1, rule.num_features, device=device)) is not None:
                default = native_network.instruction_set()
                paths += [(f"{isa.name} kernel", {"L2O_NATIVE": isa.name})
                          for isa in native_network.available() if isa != default]
                paths.append(("torch path", {"L2O_NATIVE": "0"}))
    runs = []
    for label, variant in variants(rule, args).items():
        for path, environment in paths:
            words = [word for word in (label.strip(" ()"), path) if word]  # " (compiled, torch path)"
            runs.append((f" ({', '.join(words)})" if words else "", variant, environment))
    return runs


def step_overhead(args) -> Table:
    """``step()`` vs Adam, and for the LSTM rules against the roofline: the time the network's
    matrix-product FLOPs take at the measured GEMM rate, or the step's minimal traffic at
    the measured copy bandwidth, whichever is longer; and against the floor of the fused
    design, those FLOPs plus the LSTM's σ evaluations at the measured σ rate (both run on
    the same vector units); and against the products timed at their own shapes plus those σ
    (:func:`products_seconds`). The machine's rates are measured before the first step and
    again after every LSTM rule's, and the fastest of each is the rate the ratios use: on a
    shared machine a single probe can catch it slow and understate the roofline."""
    table = Table(["device", "params", "optimizer", "step ms", "range ms", "vs Adam", "GFLOP/s", "roofline ms",
                   "step / roofline", "range / roofline", "GEMM + σ floor ms", "step / floor",
                   "products at shapes ms", "step / (products + σ)"])
    learned = {name: zoo.load(name).rule for name in args.zoo if name in zoo.list()}
    for device in devices():
        probes = [machine_rates(device, args.repeats)]
        rows: list[tuple[dict, Callable[[float, float, float], dict]]] = []  # (row, its roofline columns)
        for size in args.sizes:
            runs, count, _ = step_time(lambda p: torch.optim.Adam(p, lr=1e-3), size, device, args.repeats)
            adam = statistics.median(runs)
            rows.append(({"device": device, "params": count, "optimizer": "torch.optim.Adam",
                          "step ms": 1e3 * adam, "range ms": spread(runs, 1e3), "vs Adam": 1.0}, None))
            # The RuleOptimizer machinery alone (flatten, finite check, pure rule, write-back):
            for name, make in {"l2o.optim.AdamHD": lambda p: AdamHD(p, lr=1e-3),
                               "l2o.optim.ProxGD": lambda p: ProxGD(p, lr=1e-3)}.items():
                runs, _, _ = step_time(make, size, device, args.repeats)
                seconds = statistics.median(runs)
                rows.append(({"device": device, "params": count, "optimizer": name, "step ms": 1e3 * seconds,
                              "range ms": spread(runs, 1e3), "vs Adam": seconds / adam}, None))
            for name, entry_rule in learned.items():
                for label, rule, environment in step_variants(entry_rule.to(device), device, args):
                    with mock.patch.dict(os.environ, environment):
                        runs, _, traffic = step_time(
                            lambda p: LearnedOptimizer(p, rule=rule, lr=1e-3, check_finite=False), size, device,
                            args.repeats)
                    seconds = statistics.median(runs)
                    row = {"device": device, "params": count, "optimizer": name + label, "step ms": 1e3 * seconds,
                           "range ms": spread(runs, 1e3), "vs Adam": seconds / adam}
                    print(f"{name + label}, {count} params: {1e3 * seconds:.3g} ms", flush=True)
                    columns = None
                    if isinstance(rule, CoordinateLSTMRule):
                        products = products_seconds(rule, count, device, args.repeats)
                        columns = roofline_columns(rule, count, seconds, runs, traffic, products)
                        probes.append(machine_rates(device, args.repeats))
                    rows.append((row, columns))
        gemm, bandwidth, sigmoid = (max(rates) for rates in zip(*probes))
        print(f"{device}: GEMM {gemm / 1e9:.0f} GFLOP/s (2048³ float32, the faster of mm and oneDNN), copy "
              f"{bandwidth / 1e9:.1f} GB/s, σ {sigmoid / 1e9:.2f} G/s (in cache): the fastest of {len(probes)} "
              f"probes (GEMM {', '.join(f'{rates[0] / 1e9:.0f}' for rates in probes)})", flush=True)
        for row, columns in rows:
            table.add(**row, **({} if columns is None else columns(gemm, bandwidth, sigmoid)))
    return table


def roofline_columns(rule: CoordinateLSTMRule, count: int, seconds: float, runs: list[float], traffic: int,
                     products: float) -> Callable[[float, float, float], dict]:
    """The step section's roofline columns of one LSTM rule's step, given the machine's rates."""
    flops = count * rule.matmul_flops_per_coordinate()

    def columns(gemm: float, bandwidth: float, sigmoid: float) -> dict:
        roofline = max(flops / gemm, traffic / bandwidth)
        sigmoids = count * rule.sigmoids_per_coordinate() / sigmoid
        floor = flops / gemm + sigmoids
        return {"GFLOP/s": flops / seconds / 1e9, "roofline ms": 1e3 * roofline,
                "step / roofline": seconds / roofline, "range / roofline": spread(runs, 1 / roofline),
                "GEMM + σ floor ms": 1e3 * floor, "step / floor": seconds / floor,
                "products at shapes ms": 1e3 * products, "step / (products + σ)": seconds / (products + sigmoids)}

    return columns


# ------------------------------------------------------------- 3. fresh process
FRESH_STEP = r"""
import json, resource, statistics, sys
sys.path.insert(0, sys.argv[1])
from benchmark import fresh_step_optimizer, step_time
name, parameters, repeats = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
runs, _, _ = step_time(fresh_step_optimizer(name), parameters, "cpu", repeats)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(json.dumps({"seconds": statistics.median(runs), "faults": faults}))
"""


def fresh_step_optimizer(name: str) -> Callable:
    """``params -> optimizer`` for the fresh-process section: a zoo entry or ``ProxGD``."""
    if name == "l2o.optim.ProxGD":
        return lambda p: ProxGD(p, lr=1e-3)
    rule = zoo.load(name).rule
    return lambda p: LearnedOptimizer(p, rule=rule, lr=1e-3, check_finite=False)


def fresh_process_step(args) -> Table:
    """``step()`` as a user's first process gets it: each measurement in a fresh interpreter,
    with l2o's malloc thresholds pinned (the default, ``l2o.optim.malloc``) and without
    (``L2O_PIN_MALLOC=0``), alternating; the median step and the minor page faults of the
    process's steps (its 3 untimed and ``--repeats`` timed ones, and the model's creation),
    median over ``--repeats`` processes each. The step section cannot show this: its GEMM-rate
    probe frees 16 MB tensors first, which raises glibc's thresholds as pinning does."""
    table = Table(["params", "optimizer", "malloc thresholds", "step ms", "range ms", "faults per process",
                   "unpinned / pinned"])
    scripts = str(Path(__file__).resolve().parent)
    for size in args.sizes:
        for name in [*args.zoo[:1], "l2o.optim.ProxGD"]:
            runs: dict[str, list[dict]] = {"pinned": [], "glibc's own": []}
            for _ in range(args.repeats):
                for label, pin in (("pinned", "1"), ("glibc's own", "0")):
                    result = subprocess.run(
                        [sys.executable, "-c", FRESH_STEP, scripts, name, str(size), str(args.repeats)],
                        capture_output=True, text=True, check=True, env={**os.environ, "L2O_PIN_MALLOC": pin})
                    runs[label].append(json.loads(result.stdout.strip().splitlines()[-1]))
            pinned = statistics.median(run["seconds"] for run in runs["pinned"])
            for label, values in runs.items():
                seconds = [run["seconds"] for run in values]
                table.add(params=size, optimizer=name, **{
                    "malloc thresholds": label, "step ms": 1e3 * statistics.median(seconds),
                    "range ms": spread(seconds, 1e3),
                    "faults per process": statistics.median(run["faults"] for run in values),
                    "unpinned / pinned": statistics.median(seconds) / pinned})
                print(table.to_markdown().splitlines()[-1], flush=True)
    return table


# ------------------------------------------------------------------ 4. amortized
def time_to_tolerance(rule: UpdateRule, instances, tolerance: float, max_steps: int, device: str) -> tuple[float, int, float]:
    """Wall time until every instance's relative suboptimality is <= tolerance (checked
    every 10 steps), the steps taken, and the fraction that got there."""
    optimum = instances.optimum()
    ctx = StepContext.for_instances(instances)
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        steps = 0
        for steps, (x, state) in enumerate(unroll(rule, instances, max_steps, ctx=ctx), start=1):
            if steps % 10 == 0:
                reached = relative_suboptimality(instances.objective(rule.iterate(x, state)), optimum) <= tolerance
                if bool(reached.all()):
                    break
    synchronize(device)
    return time.perf_counter() - start, steps, float(reached.double().mean())


def cvxpy_time(instances, count: int) -> tuple[float, float]:
    """Seconds per instance for cvxpy with its default solver, and the worst relative
    suboptimality it reached."""
    import cvxpy as cp

    A, b, l1 = instances.A.cpu().double().numpy(), instances.b.cpu().double().numpy(), instances.l1.cpu().numpy()
    optimum = instances.optimum().cpu().double()
    worst = 0.0
    start = time.perf_counter()
    for i in range(count):
        x = cp.Variable(A.shape[2])
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(A[i] @ x - b[i]) + l1[i] * cp.norm1(x)))
        problem.solve()
        worst = max(worst, float((problem.value - optimum[i]) / abs(optimum[i])))
    return (time.perf_counter() - start) / count, worst


def design(text: str) -> tuple[int | None, float]:
    """``"M:RHO"`` -> rows m of A and the column correlation ρ (``"paper:0"``: the entry's m)."""
    rows, _, correlation = text.partition(":")
    return (None if rows == "paper" else int(rows)), float(correlation or 0.0)


def amortized_solving(args) -> Table:
    """Wall time to a tolerance on many LASSO instances: the zoo entry (its float32 network,
    iterates in the data's dtype) against batched FISTA and FISTA with adaptive restart
    (the strongest classical baseline), per design of A (rows m, column correlation ρ),
    data dtype and instance count, and cvxpy one instance at a time (float64) as the
    yardstick. A count whose float64 A would exceed ``--max-data-gb`` is skipped (said so)."""
    table = Table(["device", "A", "dtype", "instances", "method", "seconds", "range", "per instance ms", "steps", "ms per step",
                   "reached", "vs best FISTA", "speedup vs cvxpy"])
    name = args.amortized_zoo
    entry = zoo.load(name)
    trained = entry.card["training"]["family_params"]
    for device, (m, correlation) in ((device, design(text)) for device in devices() for text in args.amortized_designs):
        family = LassoFamily(**{**trained, "m": m or trained["m"], "correlation": correlation})
        shape = f"{family.m}×{family.n}, ρ {correlation:g}"
        cvxpy_instances = family.sample(args.cvxpy_instances, seed=args.seed, device=device, dtype=torch.float64)
        per_cvxpy, worst = cvxpy_time(cvxpy_instances, args.cvxpy_instances)
        table.add(device="cpu", A=shape, dtype="float64", instances=args.cvxpy_instances,
                  method="cvxpy (default solver, one at a time)", seconds=per_cvxpy * args.cvxpy_instances,
                  **{"per instance ms": 1e3 * per_cvxpy, "speedup vs cvxpy": 1.0},
                  steps="-", reached=f"worst rel {worst:.1e}")
        learned = {name + label: rule for label, rule in variants(entry.rule.to(device), args).items()}
        methods = {**learned, "FISTA (batched)": FISTARule(), "FISTA + restart (batched)": FISTARule(restart=True)}
        for dtype in args.data_dtypes:
            for count in args.instances:
                gigabytes = count * family.m * family.n * 8 / 1e9
                if gigabytes > args.max_data_gb:
                    print(f"skipped: {count} instances of {shape} need {gigabytes:.3g} GB of float64 A "
                          f"(> --max-data-gb {args.max_data_gb:g})", flush=True)
                    continue
                instances = family.sample(count, seed=args.seed, device=device, dtype=getattr(torch, dtype))
                instances.optimum()  # F* is the benchmark's yardstick, not part of any method's time
                runs: dict[str, list[float]] = {label: [] for label in methods}
                outcome = {}
                for label, method in methods.items():
                    time_to_tolerance(method, instances, args.tolerance, 10, device)  # warm-up, untimed
                for _ in range(args.amortized_repeats):  # interleaved: drift hits every method
                    for label, method in methods.items():
                        seconds, steps, reached = time_to_tolerance(method, instances, args.tolerance, args.max_steps, device)
                        runs[label].append(seconds)
                        outcome[label] = (steps, reached)
                best_fista = min(statistics.median(v) for label, v in runs.items() if label.startswith("FISTA"))
                for label, values in runs.items():
                    seconds, (steps, reached) = statistics.median(values), outcome[label]
                    per = seconds / count
                    table.add(device=device, A=shape, dtype=dtype, instances=count, method=label, seconds=seconds,
                              range=spread(values), steps=steps, reached=reached,
                              **{"per instance ms": 1e3 * per, "ms per step": 1e3 * seconds / steps,
                                 "vs best FISTA": best_fista / seconds, "speedup vs cvxpy": per_cvxpy / per})
                    print(table.to_markdown().splitlines()[-1], flush=True)
    return table


# ------------------------------------------------------------------- 5. ZO memory
def zo_memory(args) -> Table:
    table = Table(["device", "params", "batch", "backprop step MB", "ZO step MB", "ZO / backprop"])
    for device in devices():
        for size in args.sizes:
            backprop = peak_step_memory("backprop", size, args.memory_batch, device)
            zo = peak_step_memory("zo", size, args.memory_batch, device)
            ratio = zo / backprop if backprop > 0 else float("nan")  # too small a model to register
            table.add(device=device, params=size, batch=args.memory_batch, **{
                "backprop step MB": backprop / 2**20, "ZO step MB": zo / 2**20, "ZO / backprop": ratio})
            print(table.to_markdown().splitlines()[-1], flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["throughput", "step", "fresh_step", "amortized", "zo_memory"])
    parser.add_argument("--rules", nargs="+", default=["gomath", "mathl2o", "l2l", "rnnprop", "ntk_gd", "bfgs", "zo"],
                        help="rules of the throughput section (all on the same LASSO batches: it measures cost)")
    parser.add_argument("--m", type=int, default=250)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--per-instance", type=int, default=4, help="instances in the per-instance loop")
    parser.add_argument("--unroll", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--zoo", nargs="+", default=["gomath-lasso-toy", "ntk-gd-qp"])
    parser.add_argument("--amortized-zoo", default="gomath-lasso")
    parser.add_argument("--instances", type=int, nargs="+", default=[256, 1000])
    parser.add_argument("--amortized-repeats", type=int, default=3, help="timed solves per method (median, range)")
    parser.add_argument("--amortized-designs", nargs="+", default=["paper:0", "2500:0.8"], metavar="M:RHO",
                        help="the amortized section's A: rows m ('paper': the entry's training m) and column "
                             "correlation ρ (LassoFamily.correlation); anything but paper:0 is OOD for the entry")
    parser.add_argument("--max-data-gb", type=float, default=4.0,
                        help="skip an amortized count whose float64 A would need more memory than this")
    parser.add_argument("--data-dtypes", nargs="+", choices=["float64", "float32"], default=["float64", "float32"],
                        help="dtypes of the amortized section's problem data")
    parser.add_argument("--cvxpy-instances", type=int, default=20, help="cvxpy's time is per instance, from this many")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-batch", type=int, default=256, help="inputs per step in the ZO memory section")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--out", default="out/benchmark")
    args = parser.parse_args()
    sections = {"throughput": meta_training_throughput, "step": step_overhead, "fresh_step": fresh_process_step,
                "amortized": amortized_solving, "zo_memory": zo_memory}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices: {devices()}\n")
    for section in args.sections:
        print(f"## {section}\n")
        table = sections[section](args)
        print("\n" + table.to_markdown() + "\n")
        table.save(args.out, section)


if __name__ == "__main__":
    main()
