"""Real data sets that ship inside installed packages (no downloads at run time), and the
real-data problem families built from them (the GoMathL2O real-data OOD tests, which use
BSDS500 patches and UCI sets; we use data that is already installed instead).

* Iris (Fisher 1936), as shipped in SciPy's package data
  (``scipy/spatial/tests/data/iris.txt``: 150 × 4, rows ordered by class, 50 each of
  setosa, versicolor, virginica).
* A natural photograph (Grace Hopper, 512 × 600 grey levels), as shipped in Matplotlib's
  sample data (``mpl-data/sample_data/grace_hopper.jpg``).
* The Wisconsin diagnostic breast cancer data (569 × 30, malignant vs benign), as shipped in
  scikit-learn's package data (``sklearn.datasets.load_breast_cancer``), standardized per
  feature: the real-data ridge logistic regression of the L-BFGS comparison.
* The UCI optical handwritten digits (1797 images of 8 × 8 grey levels 0–16, 10 classes), as
  shipped in scikit-learn's package data (``sklearn.datasets.load_digits``): the real
  network-training task of the drop-in evaluation.

Normalization (stated because the spec leaves it open): image patches are mean-removed and
scaled to unit ℓ2 norm (dictionary columns and targets alike, the LASSO generator's column
normalization); Iris features are standardized per feature (zero mean, unit variance).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from problems.base import ProblemFamily, require
from problems.least_squares import LeastSquaresInstances
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


@lru_cache(maxsize=1)
def digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's digits: features ``(1797, 64)`` float64 in [0, 1] (grey levels / 16)
    and labels ``(1797,)`` int64 in 0..9, in the shipped order."""
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return torch.from_numpy(features / 16.0), torch.from_numpy(labels).long()


@lru_cache(maxsize=1)
def breast_cancer() -> tuple[Tensor, Tensor]:
    """scikit-learn's breast cancer data: standardized features ``(569, 30)`` float64 and
    labels ``(569,)`` in {-1, +1} (+1 malignant)."""
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(0)) / features.std(0)
    return torch.from_numpy(features), torch.from_numpy(np.where(labels == 0, 1.0, -1.0))


def breast_cancer_logistic(batch: int, m: int = 400, ridge: float = 1e-3, seed: int = 0) -> LogisticInstances:
    """``batch`` ridge logistic regressions on :func:`breast_cancer`, each on a seeded
    subsample of ``m`` of the 569 examples, ``x0 = 0``."""
    features, labels = breast_cancer()
    require(1 <= m <= labels.shape[0], "m", m, f"must be in [1, {labels.shape[0]}]")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.stack([torch.randperm(labels.shape[0], generator=generator)[:m] for _ in range(batch)])
    return LogisticInstances(
        A=features[rows], y=labels[rows], l1=torch.zeros(batch, dtype=torch.float64),
        ridge=torch.full((batch,), float(ridge), dtype=torch.float64),
        start=torch.zeros(batch, features.shape[1], dtype=torch.float64),
    )


def iris_logistic(l1: float = 0.01, ridge: float = 0.0) -> LogisticInstances:
    """A batch of one: logistic regression (+ λ‖x‖₁ or ρ/2‖x‖²) on :func:`iris`, x0 = 0."""
    features, labels = iris()
    return LogisticInstances(
        A=features[None], y=labels[None], l1=torch.tensor([float(l1)], dtype=torch.float64),
        ridge=torch.tensor([float(ridge)], dtype=torch.float64),
        start=torch.zeros(1, features.shape[1], dtype=torch.float64),
    )


@lru_cache(maxsize=4)
def image_patches(size: int = 8) -> Tensor:
    """All non-overlapping ``size × size`` patches of Matplotlib's Grace Hopper photograph,
    mean-removed and unit-norm: ``(count, size²)`` float64, in raster order (top to bottom).
    Near-constant patches (norm < 1e-3 before scaling) are dropped."""
    import matplotlib.cbook
    import matplotlib.image

    require(isinstance(size, int) and 2 <= size <= 64, "size", size, "must be an int in [2, 64]")
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as file:
        image = np.asarray(matplotlib.image.imread(file, format="jpg"), dtype=np.float64)
    grey = image[..., :3].mean(-1) / 255.0
    rows, cols = grey.shape[0] // size, grey.shape[1] // size
    patches = grey[: rows * size, : cols * size].reshape(rows, size, cols, size).swapaxes(1, 2)
    patches = patches.reshape(rows * cols, size * size)
    patches = patches - patches.mean(1, keepdims=True)
    norms = np.linalg.norm(patches, axis=1, keepdims=True)
    keep = norms[:, 0] > 1e-3
    return torch.from_numpy(patches[keep] / norms[keep])


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageLassoFamily(ProblemFamily):
    """Sparse coding of natural-image patches: LASSO ``½ ||A x - b||² + λ ||x||_1``.

    ``A: (size², n)``: ``n`` distinct patches from the top half of the photograph
    (:func:`image_patches`) as unit-norm columns, chosen by the seed; ``b``: a patch from the
    bottom half (unit norm); ``x0 = x0_shift + x0_std · N(0, I)`` as for the synthetic LASSO.
    Default 64 × 128 (an overcomplete dictionary, as the synthetic 250 × 500). With
    ``l1 = 0`` it is the real-data least-squares problem, which needs ``n <= size²`` (an
    overdetermined system: a unique minimizer, and F* > 0).
    """

    size: int = 8
    n: int = 128
    l1: float = 0.1
    x0_std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n >= 1, "n", self.n, "must be >= 1")
        require(self.l1 >= 0, "l1", self.l1, "must be >= 0")
        require(self.l1 > 0 or self.n <= self.size**2, "n", self.n,
                f"least squares (l1 = 0) needs n <= size² = {self.size**2}")
        half = image_patches(self.size).shape[0] // 2
        require(self.n <= half, "n", self.n, f"must be <= {half} (patches in the top half)")

    def _generate(self, batch: int, generator: torch.Generator) -> LeastSquaresInstances:
        patches = image_patches(self.size)
        half = patches.shape[0] // 2
        columns = torch.stack([torch.randperm(half, generator=generator)[: self.n] for _ in range(batch)])
        targets = half + torch.randint(patches.shape[0] - half, (batch,), generator=generator)
        return LeastSquaresInstances(
            A=patches[columns].transpose(1, 2), b=patches[targets],
            l1=torch.full((batch,), float(self.l1), dtype=torch.float64),
            start=self._initial_points(batch, self.n, generator),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class IrisLogisticL1Family(ProblemFamily):
    """Sparse logistic regression on Iris (virginica vs versicolor, :func:`iris`):
    each instance a seeded subsample of ``m`` of the 100 examples; ``λ = l1``;
    ``x0 = x0_shift + x0_std · N(0, I)`` (n = 4). With ``l1 = 0`` and ``ridge = ρ > 0`` it
    is the smooth, ridge-regularized logistic regression instead (one of the two is > 0)."""

    m: int = 80
    l1: float = 0.01
    ridge: float = 0.0
    x0_std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(1 <= self.m <= 100, "m", self.m, "must be in [1, 100]")
        require(self.l1 >= 0 and self.ridge >= 0 and (self.l1 > 0) != (self.ridge > 0), "l1", self.l1,
                f"exactly one of l1 (sparse) and ridge (= {self.ridge}, smooth) must be > 0")

    def _generate(self, batch: int, generator: torch.Generator) -> LogisticInstances:
        features, labels = iris()
        rows = torch.stack([torch.randperm(labels.shape[0], generator=generator)[: self.m] for _ in range(batch)])
        return LogisticInstances(
            A=features[rows], y=labels[rows],
            l1=torch.full((batch,), float(self.l1), dtype=torch.float64),
            ridge=torch.full((batch,), float(self.ridge), dtype=torch.float64),
            start=self._initial_points(batch, features.shape[1], generator),
        )
