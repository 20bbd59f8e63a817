"""Peak memory of one optimizer step, each measured in a fresh process (so nothing of an
earlier measurement is resident): the ZO memory benchmarks of ``scripts/benchmark.py`` and
``scripts/agzo.py``.

The model is a 3-layer ReLU MLP of about ``parameters`` parameters on ``batch`` random
inputs; the peak is measured above what is resident after a warm-up step (the model, the
data, the allocator's pools): on CUDA ``max_memory_allocated``, on the CPU the peak RSS
(``VmHWM`` after resetting it), with glibc told to ``mmap`` large blocks so RSS follows live
memory. Modes: ``forward`` (one inference forward under ``no_grad``), ``backprop`` (SGD:
zero_grad, forward, backward, step), ``zo`` (``ZOOptimizer``, MeZO's q = 1 ZO-SGD) and
``agzo`` (``AGZOOptimizer``, q = 1, rank 8).
"""

from __future__ import annotations

import os
import subprocess
import sys

MODES = ("forward", "backprop", "zo", "agzo")

PROBE = r"""
import sys, torch
from l2o.optim import AGZOOptimizer, ZOOptimizer
mode, parameters, batch, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
width = int((parameters / 3) ** 0.5)
model = torch.nn.Sequential(*[m for _ in range(3) for m in (torch.nn.Linear(width, width), torch.nn.ReLU())]).to(device)
data = torch.randn(batch, width, device=device)
loss = lambda: model(data).square().mean()
if mode == "forward":
    def step():
        with torch.no_grad():
            loss()
elif mode in ("zo", "agzo"):
    optimizer = ZOOptimizer(model.parameters(), lr=1e-3, q=1, seed=0) if mode == "zo" else \
        AGZOOptimizer(model, lr=1e-3, q=1, rank=8, seed=0)
    step = lambda: optimizer.step(loss)
else:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)  # every mode ends holding only the model
step()  # warm-up: one-time costs (kernels, thread pools, lazy imports) are not the step's
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
if device == "cuda":
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
else:
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS (VmHWM)
    before = status("VmRSS")
step()
if device == "cuda":
    torch.cuda.synchronize()
    print(torch.cuda.max_memory_allocated() - before)
else:
    print(status("VmHWM") - before)
"""


def peak_step_memory(mode: str, parameters: int, batch: int, device: str = "cpu") -> int:
    """Bytes above the resident baseline at the peak of one ``mode`` step (module docstring)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    # Large blocks always mmap-ed and returned on free: RSS then tracks live memory (glibc's
    # adaptive threshold would otherwise keep freed temporaries in the heap).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run([sys.executable, "-c", PROBE, mode, str(parameters), str(batch), device],
                            capture_output=True, text=True, check=True, env=env)
    return int(result.stdout.strip().splitlines()[-1])
