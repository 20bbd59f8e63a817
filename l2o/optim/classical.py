"""Classical optimizers that torch lacks, as thin wrappers over the rules in ``l2o.rules``.

Each class only maps a param group's hyperparameters to a rule; the math is the rule's.
"""

from __future__ import annotations

from typing import Any, Iterable

from torch import Tensor

from l2o.optim.base import RuleOptimizer, validate_l1_and_lipschitz
from l2o.rules import AdamHDRule, FISTARule, ProxGDRule, SGDHDRule, UpdateRule
from l2o.rules.adam import validate_adam
from l2o.rules.base import validate_lr

Params = Iterable[Tensor] | Iterable[dict[str, Any]]


def _validate_hypergradient(group: dict[str, Any]) -> None:
    validate_l1_and_lipschitz(group)
    validate_lr(group["lr"], allow_none=False)
    beta = group["hypergrad_lr"]
    if not (isinstance(beta, (int, float)) and 0.0 <= beta < float("inf")):
        raise ValueError(f"Invalid hypergradient learning rate: {beta}")


def _validate_step_size(group: dict[str, Any], name: str) -> None:
    validate_l1_and_lipschitz(group)
    validate_lr(group["lr"])
    if group["lr"] is None and group["lipschitz"] is None:
        raise ValueError(f"{name} needs lr or lipschitz (its default step is 1 / lipschitz)")


class ProxGD(RuleOptimizer):
    r"""Proximal gradient descent (ISTA); plain GD when ``l1 = 0``.

    .. math:: x_{k+1} = \mathrm{prox}_{\alpha \lambda \|\cdot\|_1}(x_k - \alpha \nabla f(x_k))

    Args:
        params: parameters or param groups.
        lr: step size α; None means ``1 / lipschitz`` (then ``lipschitz`` is required).
        l1: λ of the nonsmooth part ``λ ||params||_1`` handled by the prox.
        lipschitz: Lipschitz constant of the smooth gradient, if known.
    """

    def __init__(
        self, params: Params, lr: float | None = None, l1: float = 0.0,
        lipschitz: float | None = None, check_finite: bool = True,
    ) -> None:
        super().__init__(params, {"lr": lr, "l1": l1, "lipschitz": lipschitz}, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_step_size(group, "ProxGD")

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return ProxGDRule(lr=group["lr"])


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
        _validate_step_size(group, "FISTA")

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return FISTARule(lr=group["lr"], restart=group["restart"])


class SGDHD(RuleOptimizer):
    """SGD with hypergradient descent on the step size (Baydin et al. 2018).

    Args:
        lr: initial step size α_0.
        hypergrad_lr: β, the step size's own learning rate.
        l1: λ; the rule follows the subgradient ``∇f + λ sign(x)``.
    """

    def __init__(
        self, params: Params, lr: float = 1e-3, hypergrad_lr: float = 1e-4, l1: float = 0.0,
        check_finite: bool = True,
    ) -> None:
        super().__init__(params, {"lr": lr, "hypergrad_lr": hypergrad_lr, "l1": l1}, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_hypergradient(group)

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return SGDHDRule(lr=group["lr"], hypergrad_lr=group["hypergrad_lr"])


class AdamHD(RuleOptimizer):
    """Adam with hypergradient descent on the step size (Baydin et al. 2018).

    Args: ``lr``, ``hypergrad_lr`` (β), ``betas``, ``eps`` as in ``torch.optim.Adam``,
    ``l1`` as in :class:`SGDHD`.
    """

    def __init__(
        self, params: Params, lr: float = 1e-3, hypergrad_lr: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, l1: float = 0.0,
        check_finite: bool = True,
    ) -> None:
        defaults = {"lr": lr, "hypergrad_lr": hypergrad_lr, "betas": betas, "eps": eps, "l1": l1}
        super().__init__(params, defaults, check_finite)

    def validate_group(self, group: dict[str, Any]) -> None:
        _validate_hypergradient(group)
        validate_adam(tuple(group["betas"]), group["eps"])

    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        return AdamHDRule(
            lr=group["lr"], hypergrad_lr=group["hypergrad_lr"],
            betas=tuple(group["betas"]), eps=group["eps"],
        )
