"""``LearnedOptimizer``: any update rule as a drop-in ``torch.optim`` optimizer."""

from __future__ import annotations

import copy
import itertools
from typing import Any, Callable, Iterable

from torch import Tensor

from l2o.optim.base import RuleOptimizer, lr_from_lipschitz
from l2o.rules.base import StepContext, UpdateRule, validate_lr
from l2o.rules.bfgs import LearnedBFGSRule
from l2o.rules.lipschitz import without_constants
from l2o.rules.safeguard import SafeguardedRule


class LearnedOptimizer(RuleOptimizer):
    """Runs one :class:`~l2o.rules.UpdateRule` (learned or classical) on every group.

    Usage::

        opt = LearnedOptimizer(model.parameters(), rule="gomath-lasso", lr=1e-2, l1=1e-3)
        for batch in data:
            opt.zero_grad()
            loss_fn(model(batch)).backward()   # smooth part only; l1 is handled by the rule
            opt.step()

    Args:
        params: parameters or param groups (groups may set their own ``l1`` and
            ``lipschitz``).
        rule: an ``UpdateRule``, a zoo name (``l2o.zoo.list()``), a ``.safetensors`` zoo
            file or a ``.ckpt`` meta-training checkpoint. Its weights are not part of the
            optimizer's ``state_dict`` (they are the rule's own).
        l1: λ of a nonsmooth part ``λ ||params||_1``, passed to the rule.
        lipschitz: Lipschitz constant L of the smooth gradient, if known. Rules whose
            steps scale with ``1 / L`` (GoMathL2O, Math-L2O, NTK-GD, ProxGD/FISTA without lr,
            the safeguard, BFGS with ``initial="lipschitz"``) use it; given neither it nor
            ``lr``, they run with the online estimate of :class:`~l2o.rules.LipschitzEstimate`
            (a drop-in needs no constant; with ``safeguard=True`` the fallback backtracks, so
            the loss still decreases monotonically).
        lr: base step size for such rules, i.e. ``lipschitz = 1 / lr`` (give one of them).
            Given ``lipschitz``, the group's ``lr`` is set to ``1 / lipschitz``, so an LR
            scheduler scales the base step (the rule then sees ``L = 1 / lr``); a group at
            ``lr = 0`` is not stepped.
        safeguard: wrap the rule in :class:`~l2o.rules.SafeguardedRule`: a learned step is
            accepted only with sufficient decrease, else the prox-gradient step is taken, so
            the loss is monotone and converges (see that class). Costs one extra closure
            call per step, more when its fallback backtracks. None (default): every
            ``step(closure)`` is safeguarded and a ``step()`` without a closure takes the
            rule's step unverified, so a learned rule used on a model unlike its training
            problems cannot diverge as long as it is given closures; learned BFGS with its
            line search has a guarantee of its own and is not wrapped. True: every step
            needs a closure. False: never safeguarded (the rule exactly as trained).
        compile: run the rule's kernels through ``torch.compile``
            (:meth:`~l2o.rules.UpdateRule.compile_kernels`; the LSTM rules). The first step
            at each parameter count compiles (seconds); later steps are faster (see
            ``scripts/benchmark.py``). Changes the rule object passed in.
        check_finite: refuse non-finite gradients before anything changes (see
            :class:`~l2o.optim.RuleOptimizer`).
        line_search: for learned BFGS rules, take the learned step as the first trial of an
            Armijo search, so that every step decreases the loss
            (:class:`~l2o.rules.LearnedBFGSRule`; needs ``step(closure)``). None (default):
            on for learned BFGS, which as a drop-in must not be able to diverge.
    """

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict[str, Any]],
        rule: UpdateRule | str, l1: float = 0.0, lipschitz: float | None = None,
        lr: float | None = None, safeguard: bool | None = None, compile: bool = False,
        check_finite: bool = True, line_search: bool | None = None,
    ) -> None:
        from l2o.zoo import resolve_rule  # the zoo depends on l2o.optim's siblings only

        rule = resolve_rule(rule)
        if not rule.uses_gradient:
            raise ValueError(f"{type(rule).__name__} is a zeroth-order rule: run it closure-only with "
                             "l2o.optim.ZOOptimizer(params, aggregator=...), which never back-propagates")
        if isinstance(rule, LearnedBFGSRule) and rule.line_search != (line_search is not False):
            rule = copy.copy(rule)  # shares the weights; only the flag differs
            rule.line_search = line_search is not False
        if compile:
            rule.compile_kernels()
        if safeguard is None and isinstance(rule, LearnedBFGSRule) and rule.line_search:
            safeguard = False  # the line search already makes every step a decrease
        self.rule = rule if safeguard is False else SafeguardedRule(rule, optional=safeguard is None)
        self.safeguard = safeguard
        #: the rule for groups given neither lipschitz nor lr (:func:`~l2o.rules.lipschitz.without_constants`)
        self.estimating_rule = without_constants(self.rule, getattr(rule, "lipschitz_scale", 1.0))
        super().__init__(params, {"l1": l1, "lipschitz": lipschitz, "lr": lr}, check_finite)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if self.safeguard is True and closure is None:
            raise ValueError("safeguard=True needs step(closure): the closure re-evaluates the loss")
        return super().step(closure)

    def validate_group(self, group: dict[str, Any]) -> None:
        super().validate_group(group)
        validate_lr(group["lr"])
        if group["lr"] is not None and group["lipschitz"] is not None:
            raise ValueError("give lr or lipschitz, not both (lr means lipschitz = 1 / lr)")
        lr_from_lipschitz(group)

    def _context(self, group: dict[str, Any], like: Tensor) -> StepContext:
        lr = group["lr"]
        if lr is not None and self.rule.lipschitz_at_init_only:
            lr = self.state[group["params"][0]].get("initial_lr", lr)  # H_0 from the first lr
        lipschitz = group["lipschitz"] if lr is None else 1.0 / lr
        return StepContext.constant(like, l1=group["l1"], lipschitz=lipschitz)

    def _displacement_scale(self, group: dict[str, Any], slot: dict[str, Any]) -> float:
        """Rules that read L only when they start (BFGS: H_0 = lr · I) follow a scheduled
        ``lr`` through their step: ``x + (lr_k / lr_0)(x_rule − x)``, lr_0 the group's lr at
        its first step."""
        if group["lr"] is None or not self.rule.lipschitz_at_init_only:
            return 1.0
        return group["lr"] / slot.setdefault("initial_lr", group["lr"])

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        """The rule in the dtype of the group's parameters, so its computation and state
        (e.g. the LSTM's h, c) follow the parameters' precision as in ``torch.optim``: a
        copy cast to that dtype is made once and reused (changes to ``self.rule``'s weights
        after the first step of a group of another dtype do not reach that copy)."""
        estimate = group["lr"] is None and group["lipschitz"] is None
        rule = self.estimating_rule if estimate else self.rule
        dtype = group["params"][0].dtype
        weights = next((t for t in itertools.chain(rule.parameters(), rule.buffers()) if t.is_floating_point()), None)
        if weights is None or weights.dtype == dtype:
            return rule
        copies = self.__dict__.setdefault("_rule_in_dtype", {})
        key = (dtype, rule is self.rule)
        if key not in copies:
            copies[key] = copy.deepcopy(rule).to(dtype)
        return copies[key]
