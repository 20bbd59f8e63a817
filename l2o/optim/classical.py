"""Classical optimizers that torch lacks, as thin wrappers over the rules in ``l2o.rules``.

Each class only maps a param group's hyperparameters to a rule; the math is the rule's.
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import Tensor

from l2o.optim.base import RuleOptimizer, lr_from_lipschitz, validate_l1_and_lipschitz
from l2o.rules import AdamHDRule, FISTARule, ProxGDRule, SGDHDRule, UpdateRule
from l2o.rules.adam import validate_adam
from l2o.rules.base import validate_lr
from l2o.rules.hypergradient import validate_hypergradient
from l2o.rules.lipschitz import without_constants

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


#: β of the drop-in hypergradient optimizers when none is given, per rule: the
#: multiplicative rule's α changes by at most 2% a step; the additive values are Baydin et al.'s.
DEFAULT_HYPERGRAD_LR = {"multiplicative": 0.02, "additive": {"SGDHD": 1e-4, "AdamHD": 1e-7}}


def _hypergrad_lr(value: float | None, hypergrad: str, optimizer: str) -> float:
    if value is not None:
        return value
    default = DEFAULT_HYPERGRAD_LR.get(hypergrad)
    if default is None:
        raise ValueError(f"Invalid hypergrad: {hypergrad!r} (choose from {sorted(DEFAULT_HYPERGRAD_LR)})")
    return default if isinstance(default, float) else default[optimizer]


def _validate_hypergradient(group: dict[str, Any]) -> None:
    validate_l1_and_lipschitz(group)
    validate_lr(group["lr"], allow_none=False)
    validate_hypergradient(group["hypergrad_lr"], group["hypergrad"], group["min_lr"])


def _validate_step_size(group: dict[str, Any]) -> None:
    validate_l1_and_lipschitz(group)
    validate_lr(group["lr"])
    lr_from_lipschitz(group)



class ProxGD(RuleOptimizer):
    r"""Proximal gradient descent (ISTA); plain GD when ``l1 = 0``.

    .. math:: x_{k+1} = \mathrm{prox}_{\alpha \lambda \|\cdot\|_1}(x_k - \alpha \nabla f(x_k))

    Args:
        params: parameters or param groups.
        lr: step size α; None means ``1 / lipschitz``, and the group's ``lr`` is set to
            that number, so LR schedulers scale it; with neither, ``1 / L̂_k`` from the online
            estimate (:class:`~l2o.rules.LipschitzEstimate`).
        l1: λ of the nonsmooth part ``λ ||params||_1`` handled by the prox.
        lipschitz: Lipschitz constant of the smooth gradient, if known.
    """

    def __init__(
        self, params: Params, lr: float | None = None, l1: float = 0.0,
        lipschitz: float | None = None, check_finite: bool = True,
    ) -> None:
        super().__init__(params, {"lr": lr, "l1": l1, "lipschitz": lipschitz}, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_step_size(group)

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return without_constants(ProxGDRule(lr=group["lr"]))


ISTA = ProxGD


class FISTA(RuleOptimizer):
    """FISTA / Nesterov acceleration; arguments as :class:`ProxGD` plus ``restart``
    (gradient-based adaptive restart).

    The parameters hold the extrapolated point ``y_k`` where gradients are taken; the
    main iterate ``x_k`` is in the state and returned by :meth:`iterates`.
    """

    def __init__(
        self, params: Params, lr: float | None = None, l1: float = 0.0,
        lipschitz: float | None = None, restart: bool = False, check_finite: bool = True,
    ) -> None:
        defaults = {"lr": lr, "l1": l1, "lipschitz": lipschitz, "restart": restart}
        super().__init__(params, defaults, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_step_size(group)

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return without_constants(FISTARule(lr=group["lr"], restart=group["restart"]))


class SGDHD(RuleOptimizer):
    """SGD with hypergradient descent on the step size (Baydin et al. 2018).

    Args:
        lr: initial step size α_0. An LR scheduler that changes the group's ``lr`` rescales
            the adapted α by the same factor; ``lr = 0`` takes no step
            (:mod:`l2o.rules.hypergradient`).
        hypergrad_lr: β, the step size's own learning rate (None: 0.02 for the
            multiplicative rule, 1e-4 for the additive one).
        hypergrad: ``"multiplicative"`` (default: scale-free, α changes by a factor in
            ``[1 - β, 1 + β]`` per step, so it cannot blow up within a few steps) or
            ``"additive"`` (the paper's Eq. 2, as the reference baselines use it).
        min_lr: floor on α of the additive rule.
        l1: λ; the rule follows the subgradient ``∇f + λ sign(x)``.
    """

    def __init__(
        self, params: Params, lr: float = 1e-3, hypergrad_lr: float | None = None,
        hypergrad: str = "multiplicative", min_lr: float = 0.0, l1: float = 0.0,
        check_finite: bool = True,
    ) -> None:
        defaults = {"lr": lr, "hypergrad_lr": _hypergrad_lr(hypergrad_lr, hypergrad, "SGDHD"),
                    "hypergrad": hypergrad, "min_lr": min_lr, "l1": l1}
        super().__init__(params, defaults, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_hypergradient(group)

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return SGDHDRule(lr=group["lr"], hypergrad_lr=group["hypergrad_lr"], hypergrad=group["hypergrad"],
                         min_lr=group["min_lr"])


class AdamHD(RuleOptimizer):
    """Adam with hypergradient descent on the step size (Baydin et al. 2018).

    Args: ``betas``, ``eps`` as in ``torch.optim.Adam``; ``lr``, ``hypergrad_lr`` (β; None:
    0.02 multiplicative, 1e-7 additive), ``hypergrad``, ``min_lr`` and ``l1`` as in :class:`SGDHD`.
    """

    def __init__(
        self, params: Params, lr: float = 1e-3, hypergrad_lr: float | None = None,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, hypergrad: str = "multiplicative",
        min_lr: float = 0.0, l1: float = 0.0, check_finite: bool = True,
    ) -> None:
        defaults = {"lr": lr, "hypergrad_lr": _hypergrad_lr(hypergrad_lr, hypergrad, "AdamHD"), "betas": betas,
                    "eps": eps, "hypergrad": hypergrad, "min_lr": min_lr, "l1": l1}
        super().__init__(params, defaults, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_hypergradient(group)
        validate_adam(tuple(group["betas"]), group["eps"])

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return AdamHDRule(
            lr=group["lr"], hypergrad_lr=group["hypergrad_lr"],
            betas=tuple(group["betas"]), eps=group["eps"], hypergrad=group["hypergrad"], min_lr=group["min_lr"],
        )
