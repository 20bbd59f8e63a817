"""Meta-training with Lightning: ``MetaTrainer`` (module) and ``ProblemDataModule`` (data)."""

from l2o.meta.data import ProblemDataModule, make_family
from l2o.meta.losses import META_LOSSES
from l2o.meta.module import MetaTrainer

__all__ = ["META_LOSSES", "MetaTrainer", "ProblemDataModule", "make_family"]
