"""Import the packages of a checkout of the papers' official code (for the scripts that run it).

Used by ``make_parity_goldens.py`` (golden numbers) and ``compare_official.py`` (timing);
nothing here imports l2o.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path


def commit(path: Path) -> str:
    """The checkout's git commit, or ``"unknown"``."""
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def import_official(path: Path):
    """The official repository's ``optimizers`` and ``optimizees`` packages (fresh import)."""
    for name in [n for n in sys.modules if n.split(".")[0] in ("optimizers", "optimizees", "utils")]:
        del sys.modules[name]
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        # MathL2OProof's optimizees/__init__ imports its MNIST CNN task, which needs torchvision;
        # the QP case does not use it, so a placeholder module lets the package import.
        stub = types.ModuleType("torchvision")
        stub.datasets, stub.transforms = types.ModuleType("datasets"), types.ModuleType("transforms")
        sys.modules["torchvision"] = stub
    sys.path.insert(0, str(path))
    try:
        if (path / "utils" / "utils.py").exists():
            # MathL2OProof's modules import names (shrink_free, ...) from its ``utils`` package,
            # whose __init__ is empty: re-export utils/utils.py there so that they import.
            import utils  # noqa: PLC0415
            import utils.utils  # noqa: PLC0415
            vars(utils).update({k: v for k, v in vars(utils.utils).items() if not k.startswith("_")})
        import optimizees  # noqa: PLC0415
        import optimizers  # noqa: PLC0415
    finally:
        sys.path.remove(str(path))
    return optimizers, optimizees
