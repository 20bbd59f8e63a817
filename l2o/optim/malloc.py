"""glibc ``malloc``'s thresholds, pinned once per process for l2o's CPU optimizers.

glibc serves a request above its *mmap threshold* with a fresh ``mmap`` (returned to the
system on ``free``), and returns free memory at the top of its heap above its *trim
threshold*. Both start at 128 KiB and follow the process's history: freeing an mmapped
block of S bytes raises them to S and 2 S, up to 32 and 64 MiB on 64-bit systems. Until
some large block has been freed, every megabyte-sized temporary is page-faulted in afresh.

A learned step on the CPU runs its network in chunks of ``kernels.LSTM_CHUNK_ROWS`` rows,
whose temporaries are megabytes (a chunk's gates, 16,384 × 80 float32: 5.2 MB, oneDNN's
output, which takes no ``out=``). In a fresh process, measured on this project's 2-core
machine at 1M parameters: 250 ms and 115,742 minor page faults per step; with the
thresholds pinned at glibc's own dynamic maxima, 120 ms and 89 faults. Whether a program
is hit depended on what it had freed before (the same step ran in 134 ms after an
unrelated 16 MB tensor had been freed), the effect that tcmalloc and jemalloc avoid, and
the reason PyTorch's CPU tuning guides suggest them. The network-free optimizers' full-size
temporaries are hit too (ProxGD at 1M: 3.5–7.7 ms per step, 2.5–2.7 pinned).
:class:`~l2o.optim.RuleOptimizer` calls it when constructed on CPU parameters.

:func:`pin_malloc_thresholds` sets the two thresholds to those maxima (the state glibc
itself reaches after freeing one 32 MiB block): requests up to 32 MiB come from the heap,
and up to 64 MiB of freed heap is kept for reuse instead of being returned. It does
nothing off glibc, when the user has set the thresholds (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES``), or with ``L2O_PIN_MALLOC=0``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

#: ``mallopt`` parameters (glibc's ``malloc.h``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3

#: glibc's dynamic maxima on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX`` and twice it).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD



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


@functools.cache
def pin_malloc_thresholds() -> bool:
    """Pins glibc's mmap and trim thresholds at :data:`MMAP_THRESHOLD` and
    :data:`TRIM_THRESHOLD` (once per process; see the module's docstring). Returns whether
    they are pinned: False off glibc, when the user set them, or with ``L2O_PIN_MALLOC=0``."""
    if os.environ.get("L2O_PIN_MALLOC", "1") == "0" or user_chose_thresholds():
        return False
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
