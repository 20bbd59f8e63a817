"""The update-rule interface shared by every optimizer in l2o.

An update rule maps the current point and the gradient of the smooth part to the next
point, carrying an explicit state dict. It is pure: ``step`` returns a new state and
never mutates its inputs, so the same rule runs

* differentiably on a batch of problem instances (meta-training unrolls), and
* under ``torch.no_grad()`` inside :class:`l2o.optim.RuleOptimizer` on the flattened
  parameters of a param group (deployment, B = 1).

Shapes: ``x``, ``grad``: ``(B, n)``; per-instance scalars in the context: ``(B, 1)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, ContextManager

import torch
from torch import Tensor, nn

from problems.proximal import soft_threshold

State = dict[str, Tensor]


@dataclasses.dataclass
class StepContext:
    """What a rule may know about the problem besides the gradient.

    Attributes:
        l1: ``(B, 1)`` weight λ of the nonsmooth part ``λ ||x||_1`` (zeros if smooth).
        lipschitz: ``(B, 1)`` Lipschitz constant L of the smooth gradient, or None when
            unknown (deployment on a model); rules that need it then need an explicit lr.
        objective: ``F: (B, n) -> (B,)`` (smooth + nonsmooth part), or None; only
            safeguards and line searches evaluate it.
        gradient: ``∇f: (B, n) -> (B, n)``, or None; only rules that need a second
            gradient per step (the exact quadratic step of BFGS) call it.
        generator: the CPU generator of a rule's random initial state (the LSTM rules'
            ``N(0, 1)`` hidden state), or None for torch's global generator (what the
            official code and the drop-in optimizers use). Rollouts and meta-training
            pass a seeded one, so their results do not depend on the global random state.
        shift: ``(B, 1)`` objective shift t of the GoMathL2O paper's OOD test, where the
            problem is ``F₀(x + t)``; None for no shift. Rules never read it directly:
            they take the proximal step with :meth:`prox` and evaluate the nonsmooth part's
            subdifferential at :meth:`nonsmooth_point`, as the official code does.
        spare: tensors of a state that the caller has discarded, which a rule may take
            (:meth:`take_spare`) and overwrite as outputs of this step instead of allocating
            (the drop-in optimizers pass the state before the previous step: at 1M
            parameters the LSTM's new ``h``, ``c`` are 320 MB, whose fresh pages cost about
            a third of a step). Empty in rollouts and meta-training.
    """

    l1: Tensor
    lipschitz: Tensor | None = None
    objective: Callable[[Tensor], Tensor] | None = None
    gradient: Callable[[Tensor], Tensor] | None = None
    generator: torch.Generator | None = None
    shift: Tensor | None = None
    spare: list[Tensor] = dataclasses.field(default_factory=list)

    def take_spare(self, like: Tensor) -> Tensor | None:
        """Remove and return a spare tensor with ``like``'s shape, dtype and device that shares
        no memory with ``like``, or None. Each spare is handed out at most once per step."""
        for index, spare in enumerate(self.spare):
            if (spare.shape == like.shape and spare.dtype == like.dtype and spare.device == like.device
                    and spare.is_contiguous() and spare.untyped_storage().data_ptr() != like.untyped_storage().data_ptr()):
                return self.spare.pop(index)
        return None

    def prox(self, z: Tensor, step: Tensor | float) -> Tensor:
        """``prox_{step · λ ||· + t||_1}(z) = soft_threshold(z + t, step · λ) − t``
        (``t = 0`` without a shift): ``(B, n) -> (B, n)``, ``step`` broadcasting."""
        if self.shift is None:
            return soft_threshold(z, step * self.l1)
        return soft_threshold(z + self.shift, step * self.l1) - self.shift

    def nonsmooth_point(self, x: Tensor) -> Tensor:
        """Where the nonsmooth part ``λ ||·||_1`` is evaluated at ``x``: ``x + t``."""
        return x if self.shift is None else x + self.shift

    @classmethod
    def for_instances(cls, instances) -> "StepContext":
        """The context of a :class:`problems.Instances` batch."""
        shift = instances.objective_shift
        return cls(l1=instances.l1[:, None], lipschitz=instances.lipschitz()[:, None],
                   objective=instances.objective, gradient=instances.grad,
                   shift=None if shift is None else shift[:, None])

    @classmethod
    def constant(
        cls, like: Tensor, l1: float = 0.0, lipschitz: float | None = None,
        objective: Callable[[Tensor], Tensor] | None = None,
    ) -> "StepContext":
        """A context with the same scalars for every row of ``like: (B, n)``."""
        shape = (like.shape[0], 1)
        return cls(
            l1=torch.full(shape, float(l1), dtype=like.dtype, device=like.device),
            lipschitz=None
            if lipschitz is None
            else torch.full(shape, float(lipschitz), dtype=like.dtype, device=like.device),
            objective=objective,
        )


class UpdateRule(nn.Module):
    """Base class of update rules: ``x_{k+1}, s_{k+1} = step(x_k, ∇f(x_k), s_k, ctx)``.

    Subclasses implement :meth:`init_state` and :meth:`step`. A rule whose gradient is
    taken at an auxiliary point (FISTA's extrapolation ``y_k``) returns that point from
    ``step`` and reports its main iterate through :meth:`iterate`.
    """

    #: False for zeroth-order rules: ``step`` then gets ``grad=None`` and queries ``ctx.objective``.
    uses_gradient: bool = True
    #: True for rules that read ``ctx.lipschitz`` only in :meth:`init_state` (BFGS's H_0 = I/L):
    #: a drop-in optimizer then follows a scheduled ``lr`` by scaling their displacement.
    lipschitz_at_init_only: bool = False

    def needs_lipschitz(self) -> bool:
        """Whether a step reads ``ctx.lipschitz`` (a 1/L step with no ``lr`` of its own);
        drop-in optimizers then supply the online estimate (:class:`~l2o.rules.LipschitzEstimate`)
        when the user gives neither ``lipschitz`` nor ``lr``."""
        return bool(getattr(self, "lr", 0) is None)

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        """The state before the first step at ``x: (B, n)``."""
        return {}

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        """One update. ``grad`` is ∇f at ``x`` (the smooth part only)."""
        raise NotImplementedError

    def iterate(self, x: Tensor, state: State) -> Tensor:
        """The point whose objective is reported (default: ``x`` itself)."""
        return x

    def compile_kernels(self, enabled: bool = True) -> "UpdateRule":
        """Run the rule's compute kernels through ``torch.compile`` (the LSTM rules).

        Raises ``ValueError`` for rules that have no compiled path, rather than doing nothing.
        """
        raise ValueError(f"{type(self).__name__} has no compiled kernels (the LSTM-based rules do)")

    def shared_weights(self) -> ContextManager[None]:
        """A block within which the rule's weights do not change (one meta-training segment's
        forward pass): a rule that derives tensors from its weights at every step (the LSTM
        rules' fused gate weights) derives them once for the block, one node of the autograd
        graph instead of one per step. Default: nothing to share."""
        return contextlib.nullcontext()

    def forward(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        return self.step(x, grad, state, ctx)

    def extra_repr(self) -> str:
        """The constructor arguments, for rules that list them in ``config()`` (the zoo's)."""
        config = getattr(self, "config", None)
        return ", ".join(f"{k}={v}" for k, v in config().items()) if config is not None else ""


def step_size(lr: float | None, ctx: StepContext, rule: str) -> Tensor | float:
    """``lr`` if given, else ``1 / L`` from the context (``(B, 1)``).

    Raises ``ValueError`` when neither is available.
    """
    if lr is not None:
        return lr
    if ctx.lipschitz is None:
        raise ValueError(
            f"{rule} needs a step size: pass lr=..., or give the Lipschitz constant "
            "(lipschitz=... on the optimizer, or a problems.Instances batch)"
        )
    return 1.0 / ctx.lipschitz


def validate_lr(lr: float | None, allow_none: bool = True) -> None:
    """Shared hyperparameter check: ``lr`` is None (use 1/L) or a finite float >= 0."""
    if lr is None:
        if not allow_none:
            raise ValueError("Invalid learning rate: None (a float >= 0 is required)")
        return
    if not isinstance(lr, (int, float)) or not (0.0 <= float(lr) < float("inf")):
        raise ValueError(f"Invalid learning rate: {lr}")


class RuleWrapper(UpdateRule):
    """Base of rules that run another rule, ``self.rule`` (the safeguard, the online L
    estimate): its kernels are theirs, and its state is kept in theirs under ``inner.*`` keys.
    """

    INNER = "inner."

    def __init__(self, rule: UpdateRule) -> None:
        super().__init__()
        self.rule = rule

    def compile_kernels(self, enabled: bool = True) -> "RuleWrapper":
        self.rule.compile_kernels(enabled)
        return self

    def shared_weights(self) -> ContextManager[None]:
        return self.rule.shared_weights()

    @classmethod
    def inner_state(cls, state: State) -> State:
        """The wrapped rule's state, out of this rule's ``state``."""
        return {k[len(cls.INNER):]: v for k, v in state.items() if k.startswith(cls.INNER)}

    @classmethod
    def outer_state(cls, inner: State, **own: Tensor) -> State:
        """This rule's state: the wrapped rule's ``inner`` under ``inner.*``, plus ``own``."""
        return {**{cls.INNER + k: v for k, v in inner.items()}, **own}
