"""l2o: a learning-to-optimize model zoo.

* :mod:`l2o.rules` — update rules (pure, batched, differentiable).
* :mod:`l2o.optim` — drop-in ``torch.optim`` optimizers built on the rules.
* :mod:`l2o.zoo` — named, pretrained rules (``l2o.zoo.list()``, ``l2o.zoo.load(name)``).
* :mod:`l2o.eval` — rollouts, metrics, tables and plots.
* :mod:`problems` (top-level package) — problem families with certified optima.

``import l2o`` imports none of them: each subpackage is imported on first use as an
attribute (``l2o.zoo.list()`` works right after ``import l2o``), so the command line and
``import l2o.zoo`` do not pay for the others.
"""

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = ("eval", "meta", "official", "optim", "rules", "zoo")
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"l2o.{name}")
    raise AttributeError(f"module 'l2o' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
