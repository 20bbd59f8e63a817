"""Update rules: the pure functional core of every l2o optimizer (see ``base``)."""

from l2o.rules.adam import AdamRule
from l2o.rules.base import State, StepContext, UpdateRule
from l2o.rules.fista import FISTARule
from l2o.rules.gd import ProxGDRule
from l2o.rules.hypergradient import AdamHDRule, HypergradientRule, SGDHDRule

__all__ = [
    "AdamHDRule",
    "AdamRule",
    "FISTARule",
    "HypergradientRule",
    "ProxGDRule",
    "SGDHDRule",
    "State",
    "StepContext",
    "UpdateRule",
]
