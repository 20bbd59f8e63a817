"""Drop-in ``torch.optim`` optimizers built on ``l2o.rules``."""

from l2o.optim.base import RuleOptimizer
from l2o.optim.classical import FISTA, ISTA, AdamHD, ProxGD, SGDHD
from l2o.optim.learned import LearnedOptimizer

__all__ = ["AdamHD", "FISTA", "ISTA", "LearnedOptimizer", "ProxGD", "RuleOptimizer", "SGDHD"]
