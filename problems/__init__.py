"""Problem families for learning to optimize: batched, seeded, with certified optima.

>>> from problems import LassoFamily
>>> family = LassoFamily.toy()
>>> batch = family.sample(8, seed=0)          # 8 instances, reproducible from the seed
>>> ood = family.shifted(data_scale=10.0)     # objective OOD: same generator, scaled A
>>> batch.objective(batch.x0()).shape
torch.Size([8])
"""

from problems.base import Instances, ProblemFamily, ShiftedInstances
from problems.least_squares import (
    LassoFamily,
    LeastSquaresFamily,
    LeastSquaresInstances,
    QuadraticFamily,
)
from problems.logistic import LogisticFamily, LogisticInstances, LogisticL1Family
from problems.real_data import ImageLassoFamily, IrisLogisticL1Family

FAMILIES: dict[str, type[ProblemFamily]] = {
    "quadratic": QuadraticFamily,
    "least_squares": LeastSquaresFamily,
    "lasso": LassoFamily,
    "logistic": LogisticFamily,
    "logistic_l1": LogisticL1Family,
    "image_lasso": ImageLassoFamily,
    "iris_logistic_l1": IrisLogisticL1Family,
}

__all__ = [
    "FAMILIES",
    "ImageLassoFamily",
    "IrisLogisticL1Family",
    "Instances",
    "LassoFamily",
    "LeastSquaresFamily",
    "LeastSquaresInstances",
    "LogisticFamily",
    "LogisticInstances",
    "LogisticL1Family",
    "ProblemFamily",
    "QuadraticFamily",
    "ShiftedInstances",
]
