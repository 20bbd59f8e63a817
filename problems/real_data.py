"""Real data sets that ship inside installed packages (no downloads at run time).

* Iris (Fisher 1936), as shipped in SciPy's package data
  (``scipy/spatial/tests/data/iris.txt``: 150 × 4, rows ordered by class, 50 each of
  setosa, versicolor, virginica).
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch
from torch import Tensor

from problems.logistic import LogisticInstances

IRIS_CLASSES = ("setosa", "versicolor", "virginica")


def iris(positive: str = "virginica", negative: str = "versicolor") -> tuple[Tensor, Tensor]:
    """Standardized Iris features ``(m, 4)`` float64 and labels ``(m,)`` in {-1, +1} for a
    two-class problem (default: virginica vs versicolor, not linearly separable)."""
    for name in (positive, negative):
        if name not in IRIS_CLASSES:
            raise ValueError(f"unknown Iris class {name!r}; classes: {IRIS_CLASSES}")
    path = resources.files("scipy.spatial") / "tests" / "data" / "iris.txt"
    if not path.is_file():
        raise FileNotFoundError(f"SciPy's Iris data is missing at {path} (a SciPy build without test data?)")
    data = np.loadtxt(str(path))
    rows = {name: data[50 * i : 50 * (i + 1)] for i, name in enumerate(IRIS_CLASSES)}
    features = np.concatenate([rows[positive], rows[negative]])
    features = (features - features.mean(0)) / features.std(0)
    labels = np.concatenate([np.ones(50), -np.ones(50)])
    return torch.from_numpy(features), torch.from_numpy(labels)


def iris_logistic(l1: float = 0.01, ridge: float = 0.0) -> LogisticInstances:
    """A batch of one: logistic regression (+ λ‖x‖₁ or ρ/2‖x‖²) on :func:`iris`, x0 = 0."""
    features, labels = iris()
    return LogisticInstances(
        A=features[None], y=labels[None], l1=torch.tensor([float(l1)], dtype=torch.float64),
        ridge=torch.tensor([float(ridge)], dtype=torch.float64),
        start=torch.zeros(1, features.shape[1], dtype=torch.float64),
    )
