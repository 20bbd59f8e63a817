"""Update rules: the pure functional core of every l2o optimizer (see ``base``).

``RULES`` maps the short names used in configs and zoo cards to rule classes;
:func:`build_rule` makes one from a name and its constructor arguments.
"""

from typing import Any

from l2o.rules.adam import AdamRule
from l2o.rules.base import State, StepContext, UpdateRule
from l2o.rules.bfgs import BFGSRule, LearnedBFGSRule
from l2o.rules.blackbox import L2LRule, RNNpropRule
from l2o.rules.fista import FISTARule
from l2o.rules.gd import ProxGDRule
from l2o.rules.gomath import GoMathRule
from l2o.rules.hypergradient import AdamHDRule, HypergradientRule, SGDHDRule
from l2o.rules.lipschitz import LipschitzEstimate
from l2o.rules.lstm import CoordinateLSTMRule
from l2o.rules.math_l2o import MathL2ORule
from l2o.rules.ntk_gd import NTKGDRule
from l2o.rules.safeguard import SafeguardedRule
from l2o.rules.zeroth_order import LearnedAggregator, ZORule

RULES: dict[str, type[UpdateRule]] = {
    "gomath": GoMathRule,
    "mathl2o": MathL2ORule,
    "l2l": L2LRule,
    "rnnprop": RNNpropRule,
    "ntk_gd": NTKGDRule,
    "bfgs": LearnedBFGSRule,
    "zo": ZORule,
}


def build_rule(name: str, **config: Any) -> UpdateRule:
    """The rule registered as ``name``, constructed with ``config``."""
    if name not in RULES:
        raise KeyError(f"unknown rule {name!r}; known rules: {sorted(RULES)}")
    return RULES[name](**config)


def rule_name(rule: UpdateRule) -> str:
    """The registry name of ``rule``'s class."""
    for name, cls in RULES.items():
        if type(rule) is cls:
            return name
    raise KeyError(f"{type(rule).__name__} is not a registered rule; registered: {sorted(RULES)}")


__all__ = [
    "LearnedAggregator",
    "ZORule",
    "BFGSRule",
    "LearnedBFGSRule",
    "LipschitzEstimate",
    "AdamHDRule",
    "AdamRule",
    "CoordinateLSTMRule",
    "FISTARule",
    "GoMathRule",
    "HypergradientRule",
    "L2LRule",
    "MathL2ORule",
    "NTKGDRule",
    "ProxGDRule",
    "RNNpropRule",
    "RULES",
    "SGDHDRule",
    "SafeguardedRule",
    "State",
    "StepContext",
    "UpdateRule",
    "build_rule",
    "rule_name",
]
