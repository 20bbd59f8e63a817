"""``LearnedOptimizer``: any update rule as a drop-in ``torch.optim`` optimizer."""

from __future__ import annotations

from typing import Any, Iterable

from torch import Tensor

from l2o.optim.base import RuleOptimizer
from l2o.rules.base import UpdateRule


class LearnedOptimizer(RuleOptimizer):
    """Runs one :class:`~l2o.rules.UpdateRule` (learned or classical) on every group.

    Usage::

        opt = LearnedOptimizer(model.parameters(), rule=my_rule, l1=1e-3)
        for batch in data:
            opt.zero_grad()
            loss_fn(model(batch)).backward()   # smooth part only; l1 is handled by the rule
            opt.step()

    Args:
        params: parameters or param groups (groups may set their own ``l1`` and
            ``lipschitz``).
        rule: an ``UpdateRule`` instance. Its weights are not part of the optimizer's
            ``state_dict`` (they are the rule's own ``state_dict``).
        l1: λ of a nonsmooth part ``λ ||params||_1``, passed to the rule.
        lipschitz: Lipschitz constant of the smooth gradient, if known.
    """

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict[str, Any]], rule: UpdateRule,
        l1: float = 0.0, lipschitz: float | None = None, check_finite: bool = True,
    ) -> None:
        if not isinstance(rule, UpdateRule):
            raise TypeError(f"rule must be an l2o.rules.UpdateRule, got {type(rule).__name__}")
        self.rule = rule
        super().__init__(params, {"l1": l1, "lipschitz": lipschitz}, check_finite)

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return self.rule
