"""Native CPU kernels: the instruction set they are built for, and their build on first use.

A kernel is a C++ source next to the module that calls it (``problems/normal_product.cpp``,
``l2o/rules/native_network.cpp``), compiled on first use with the system's C++ compiler
(``$CXX``, else ``g++``) into ``$L2O_CACHE_DIR/native`` (default ``~/.cache/l2o``), one shared
library per source, flags and defines, and loaded with ``ctypes``. Kernels run on CPUs where
torch dispatches AVX-512 or AVX2 (``torch.backends.cpu.get_cpu_capability()``); ``L2O_NATIVE``
chooses: ``1`` (the default) the widest, ``avx512`` or ``avx2`` that one, ``0`` none (torch's
paths run). Where no compiler is found, compiling fails or the cache is unusable, the caller
gets None after one warning and runs torch's path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

FLAGS = ("-O3", "-mprfchw", "-fno-math-errno", "-fopenmp", "-std=c++17", "-shared", "-fPIC")


@dataclass(frozen=True)
class InstructionSet:
    """A vector instruction set the kernels are built for: its name (a value of ``L2O_NATIVE``),
    float32 lanes per register, the compiler flags, and torch's capabilities that include it."""

    name: str
    vector: int
    flags: tuple[str, ...]
    capabilities: tuple[str, ...]


AVX512 = InstructionSet("avx512", 16, ("-mavx512f", "-mavx512dq", "-mfma"), ("AVX512",))
AVX2 = InstructionSet("avx2", 8, ("-mavx2", "-mfma"), ("AVX2", "AVX512"))
INSTRUCTION_SETS = (AVX512, AVX2)  # the widest first


def available() -> tuple[InstructionSet, ...]:
    """The instruction sets of :data:`INSTRUCTION_SETS` that torch dispatches on this CPU
    (``torch.backends.cpu.get_cpu_capability()``), the widest first."""
    capability = torch.backends.cpu.get_cpu_capability()
    return tuple(isa for isa in INSTRUCTION_SETS if capability in isa.capabilities)


def instruction_set() -> InstructionSet | None:
    """The instruction set the kernels run on, from ``L2O_NATIVE``: ``1`` (the default) the widest
    :func:`available` one, ``avx512`` or ``avx2`` that one where it is available, ``0`` none
    (torch's paths run); any other value is an error."""
    choice = os.environ.get("L2O_NATIVE", "1").lower()
    if choice not in ("0", "1", *(isa.name for isa in INSTRUCTION_SETS)):
        raise ValueError(f"L2O_NATIVE={choice!r}: expected 0, 1 or one of "
                         f"{', '.join(isa.name for isa in INSTRUCTION_SETS)}")
    return next((isa for isa in available() if choice in ("1", isa.name)), None)


def cache_dir() -> Path:
    return Path(os.environ.get("L2O_CACHE_DIR", Path.home() / ".cache" / "l2o")) / "native"


def compile_library(source: Path, flags: list[str], stem: str, what: str) -> ctypes.CDLL | None:
    """``source`` compiled with :data:`FLAGS` and ``flags`` and loaded, cached on disk as
    ``{stem}-{hash of source and command}.so``; or None after one warning naming ``what`` (e.g.
    "the native network kernel") when no compiler is found, compiling fails, or the cache
    cannot be written or loaded from. Callers cache the result per process."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        warnings.warn(f"l2o: no C++ compiler ($CXX or g++) for {what}; using torch's path")
        return None
    command = [compiler, *FLAGS, *flags]
    key = hashlib.sha256(source.read_bytes() + " ".join(command).encode()).hexdigest()[:20]
    target = cache_dir() / f"{stem}-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                built = Path(scratch) / target.name
                result = subprocess.run([*command, str(source), "-o", str(built)], capture_output=True, text=True)
                if result.returncode != 0:
                    warnings.warn(f"l2o: compiling {what} failed; using torch's path:\n{result.stderr[-2000:]}")
                    return None
                os.replace(built, target)  # atomic: concurrent processes see the whole file or none
        return ctypes.CDLL(str(target))
    except OSError as error:  # an unwritable cache, a file that does not load
        warnings.warn(f"l2o: {what} is unavailable ({error}); using torch's path")
        return None
