"""glibc ``malloc``'s thresholds, pinned (and only ever raised) for l2o's CPU optimizers.

glibc serves a request above its *mmap threshold* with a fresh ``mmap`` (returned to the
system on ``free``), and returns free memory at the top of its heap above its *trim
threshold*. Both start at 128 KiB and follow the process's history: freeing an mmapped
block of S bytes raises them to S and 2 S, up to 32 and 64 MiB on 64-bit systems. Until
some large block has been freed, every megabyte-sized temporary is page-faulted in afresh.

A learned step on the CPU runs its network in chunks of ``kernels.LSTM_CHUNK_ROWS`` rows,
whose temporaries are megabytes (a chunk's gates, 16,384 × 80 float32: 5.2 MB, oneDNN's
output, which takes no ``out=``). In fresh processes on this project's 2-core machine
(``python scripts/benchmark.py --sections fresh_step --sizes 1000000``), the learned step at
1M parameters took 289 ms with glibc's own thresholds and 135 ms pinned; ProxGD, whose
full-size temporaries are hit too, 6.07 and 2.90 ms. Whether a program is hit depends on
what it freed before (the same step ran in 132 ms after an unrelated 16 MB tensor had been
freed), the effect that tcmalloc and jemalloc avoid, and the reason PyTorch's CPU tuning
guides suggest them. :meth:`~l2o.optim.RuleOptimizer.add_param_group` calls it for every
param group on the CPU, and :func:`~l2o.eval.rollout.unroll` for the batched states on the CPU.

:func:`pin_malloc_thresholds` sets the mmap threshold to the larger of glibc's dynamic
maximum, 32 MiB, and the largest full-size temporary the optimizer will make (one flattened
param group, given by the caller), and the trim threshold to glibc's 64 MiB maximum, or to
room for several such temporaries when they exceed 32 MiB: they then come from the heap and
are reused. At 10M parameters a flattened group is 40 MB, above glibc's 32 MiB maximum:
ProxGD's step took 134 ms and AdamHD's 276 ms with 93,029 and 205,315 faults, and 33–43 and
56–71 ms with the thresholds at 45 and 90–360 MiB (fresh processes, scratch timing). It only
ever raises them (to at most :data:`MAX_MMAP_THRESHOLD`), so a second optimizer for a larger
model raises them further. The price is freed memory kept for reuse instead of being
returned to the system: at most the trim threshold at the heap's top. It does nothing off
glibc, when the user has set the thresholds (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc.*`` in ``GLIBC_TUNABLES``), or with
``L2O_PIN_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

#: glibc's dynamic maximum of the mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MMAP_THRESHOLD = 32 << 20

#: The largest mmap threshold l2o pins (a 250M-parameter float32 group): larger temporaries
#: stay mmapped, as glibc maps them by default.
MAX_MMAP_THRESHOLD = 1 << 30

#: Full-size temporaries of a step whose memory the trim threshold keeps for reuse, when a
#: flattened group exceeds :data:`MMAP_THRESHOLD` (a step holds several at once: with room for
#: two, a 12M-parameter group's pattern still faulted a third of its pages in afresh).
TEMPORARIES_KEPT = 8

#: The mmap threshold pinned so far in this process (0: none).
_pinned = 0


def user_chose_thresholds() -> bool:
    """Whether the environment already sets glibc's malloc thresholds."""
    return ("MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (which has ``gnu_get_libc_version``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def pin_malloc_thresholds(largest_temporary: int = 0) -> bool:
    """Pins glibc's mmap threshold at ``max(MMAP_THRESHOLD, largest_temporary + 1 MiB)`` (at
    most :data:`MAX_MMAP_THRESHOLD`) and its trim threshold at ``2 · MMAP_THRESHOLD``, or at
    :data:`TEMPORARIES_KEPT` times a larger mmap threshold, unless thresholds at least as high
    are already pinned (see the module's docstring). ``largest_temporary``: bytes
    of the largest full-size temporary a step makes. Returns whether thresholds are pinned:
    False off glibc, when the user set them, with ``L2O_PIN_MALLOC=0``, or inside a
    ``torch.compile`` trace, where it does nothing (its ctypes call would break the graph: the
    caller pins before compiled code runs)."""
    global _pinned
    if (torch.compiler.is_compiling() or os.environ.get("L2O_PIN_MALLOC", "1") == "0"
            or user_chose_thresholds()):
        return False
    threshold = min(max(MMAP_THRESHOLD, largest_temporary + (1 << 20)), MAX_MMAP_THRESHOLD)
    if threshold <= _pinned:
        return True
    trim = TEMPORARIES_KEPT * threshold if threshold > MMAP_THRESHOLD else 2 * MMAP_THRESHOLD
    libc = _glibc()
    if libc is None or not (libc.mallopt(M_MMAP_THRESHOLD, threshold) and libc.mallopt(M_TRIM_THRESHOLD, trim)):
        return False
    _pinned = threshold
    return True
