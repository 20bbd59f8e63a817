"""Drop-in ``torch.optim`` optimizers built on ``l2o.rules``."""

from l2o.optim.agzo import AGZOOptimizer
from l2o.optim.base import RuleOptimizer
from l2o.optim.classical import FISTA, ISTA, AdamHD, ProxGD, SGDHD
from l2o.optim.learned import LearnedOptimizer
from l2o.optim.zeroth_order import ZOOptimizer

__all__ = ["AGZOOptimizer", "AdamHD", "FISTA", "ISTA", "LearnedOptimizer", "ProxGD", "RuleOptimizer", "SGDHD", "ZOOptimizer"]
