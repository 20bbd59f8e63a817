"""``RuleOptimizer``: a ``torch.optim.Optimizer`` that runs an :class:`UpdateRule`.

Each param group is one problem instance: its parameters' values and gradients are
flattened into ``x, grad: (1, N)`` (N = total number of elements in the group), the
rule takes one step under ``torch.no_grad()``, and the result is written back. The
rule's state for the group lives in ``self.state[group["params"][0]]``, so
``state_dict()`` / ``load_state_dict()`` work as for any torch optimizer.

Group options understood by every ``RuleOptimizer``:

* ``l1`` (float >= 0): the step is proximal for ``l1 * ||params||_1``; the closure and
  ``.grad`` hold the smooth part only.
* ``lipschitz`` (float > 0 or None): a known Lipschitz constant of the smooth gradient,
  used by rules whose step defaults to ``1 / L``.
* ``lr`` (where the optimizer has one): a float, whatever form it was given in (a 0-dim
  tensor is read as its value), so ``torch.optim.lr_scheduler`` schedulers can scale it.
  A group whose ``lr`` is 0 is not stepped: its parameters and state stay as they are.

Policies (documented and tested):

* A parameter whose ``.grad`` is None is not updated; the rule sees a zero gradient for
  its coordinates. A group where no parameter has a gradient is skipped entirely.
* Sparse or complex gradients/parameters, and parameters of mixed dtype or device in one
  group, raise ``ValueError``/``RuntimeError`` before anything is changed.
* Non-finite gradients raise ``FloatingPointError`` before any parameter or state is
  touched (set ``check_finite=False`` to skip the check, e.g. under a GradScaler).
* A step is atomic: if the closure raises while a rule evaluates trial points (the
  safeguard), every group's parameters and state are restored to what they were before
  the step, and the exception propagates.
* Integer (non-floating-point) parameters raise ``ValueError``.
* With parameters on the CPU, constructing one pins glibc's malloc thresholds above its
  largest flattened group (:func:`~l2o.optim.malloc.pin_malloc_thresholds`;
  ``L2O_PIN_MALLOC=0`` turns it off): in a fresh process a step's megabyte temporaries were
  otherwise page-faulted in afresh each time (the learned step at 1M parameters 289 against
  135 ms, ProxGD 6.07 against 2.90 ms, ``scripts/benchmark.py --sections fresh_step``), and
  at 10M a flattened group exceeds glibc's own 32 MiB maximum.
* ``copy.deepcopy`` and ``pickle`` keep the optimizer's own attributes (its rule, the
  safeguard flag, ``check_finite``), which ``torch.optim.Optimizer.__getstate__`` drops.
* **Evaluations are reused**, as ``torch.optim.LBFGS`` reuses its line search's: when a
  rule's trial evaluation (the safeguard's check, a line search) was at the point the step
  ends on, the next ``step(closure)`` takes that evaluation's loss and gradients instead
  of calling the closure again, if every parameter is still bitwise what it was then
  (``reuse_evaluations=False`` turns this off). A safeguarded or line-searched step whose
  trial is accepted therefore costs one closure call, not two; the price is one copy of the
  parameters and gradients, held from a trial evaluation to the next step. With a stochastic closure
  (minibatches) the reused gradient is the trial's minibatch at that same point.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from l2o.optim.malloc import pin_malloc_thresholds
from l2o.rules.base import State, StepContext, UpdateRule


def lr_from_lipschitz(group: dict[str, Any]) -> None:
    """Give a group with ``lr=None`` and a known ``lipschitz`` the number ``lr = 1 / L``
    (the step it means), so that schedulers can scale it."""
    if group.get("lr", 0.0) is None and group["lipschitz"] is not None:
        group["lr"] = 1.0 / group["lipschitz"]


def plain_lr(group: dict[str, Any]) -> None:
    """Read a 0-dim (or one-element) real tensor ``lr`` as its float value."""
    lr = group.get("lr")
    if isinstance(lr, Tensor):
        if lr.numel() != 1 or not lr.is_floating_point():
            raise ValueError(f"Invalid learning rate: a tensor lr must be one real number, got {lr!r}")
        group["lr"] = float(lr)


def validate_l1_and_lipschitz(group: dict[str, Any]) -> None:
    """Checks of the group options every ``RuleOptimizer`` shares."""
    l1 = group["l1"]
    if not isinstance(l1, (int, float)) or not (0.0 <= l1 < float("inf")):
        raise ValueError(f"Invalid l1 (L1 weight λ): {l1} (must be a finite float >= 0)")
    lipschitz = group["lipschitz"]
    if lipschitz is not None and (
        not isinstance(lipschitz, (int, float)) or not (0.0 < lipschitz < float("inf"))
    ):
        raise ValueError(f"Invalid lipschitz: {lipschitz} (must be None or a finite float > 0)")


class CopyableOptimizer(Optimizer):
    """An ``Optimizer`` whose ``copy.deepcopy`` / ``pickle`` keep the public attributes its
    subclass sets in ``__init__`` (``torch.optim.Optimizer.__getstate__`` keeps only
    ``defaults``, ``state`` and ``param_groups``, so a copy could not step)."""

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        own = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k not in state}
        return {**state, **own}


class RuleOptimizer(CopyableOptimizer):
    """Base class: subclasses say which rule runs a group (:meth:`rule_for`) and how a
    group's hyperparameters are checked (:meth:`validate_group`)."""

    def __init__(
        self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any],
        check_finite: bool = True,
    ) -> None:
        self.check_finite = check_finite
        self.reuse_evaluations = True
        super().__init__(params, {"l1": 0.0, "lipschitz": None, **defaults})

    # ---------------------------------------------------------------- hooks
    def rule_for(self, group: dict[str, Any]) -> UpdateRule:
        """The rule that steps ``group``."""
        raise NotImplementedError

    def validate_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming a bad hyperparameter of ``group``."""
        validate_l1_and_lipschitz(group)

    # ------------------------------------------------------------- contract
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            plain_lr(group)
            for p in group["params"]:
                if not (p.is_floating_point() or p.is_complex()):
                    raise ValueError(f"l2o optimizers need floating-point parameters, got {p.dtype}")
                if p.is_complex():
                    raise ValueError("complex parameters are not supported by l2o optimizers")
                if p.is_sparse:
                    raise ValueError("sparse parameters are not supported by l2o optimizers")
            if len({(p.dtype, p.device) for p in group["params"]}) > 1:
                raise ValueError("all parameters of a param group must share dtype and device")
            self.validate_group(group)
        except ValueError:
            self.param_groups.pop()
            raise
        if group["params"] and group["params"][0].device.type == "cpu":
            # the step's temporaries, up to the flattened group, reused instead of faulted in afresh
            pin_malloc_thresholds(sum(p.nbytes for p in group["params"]))

    def _context(self, group: dict[str, Any], like: Tensor) -> StepContext:
        return StepContext.constant(like, l1=group["l1"], lipschitz=group["lipschitz"])

    def _flat_gradient(self, group: dict[str, Any]) -> Tensor | None:
        params = group["params"]
        grads = [p.grad for p in params]
        if all(g is None for g in grads):
            return None
        for g in grads:
            if g is not None and g.is_sparse:
                raise RuntimeError("l2o optimizers do not support sparse gradients")
        flat = torch.cat(
            [torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1) for p, g in zip(params, grads)]
        ).unsqueeze(0)
        if self.check_finite and not bool(torch.isfinite(flat).all()):
            raise FloatingPointError(
                "non-finite gradient (NaN or inf); nothing was updated. "
                "Pass check_finite=False to let the rule see it."
            )
        return flat

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of every param group; ``closure`` re-evaluates the loss with grads."""
        loss = None
        if closure is not None:
            loss = self._reused_evaluation()
            if loss is None:
                with torch.enable_grad():
                    loss = closure()
        self.__dict__.pop("_last_evaluation", None)
        # Validate every group before changing any, so an error loses nothing.
        pending = [(group, self._flat_gradient(group)) for group in self.param_groups
                   if group.get("lr") != 0]
        current_loss = loss
        before: list[tuple[dict[str, Any], Tensor, dict[str, Any]]] = []
        try:
            for group, grad in pending:
                if grad is not None:
                    params = group["params"]
                    x = torch.cat([p.reshape(-1) for p in params]).unsqueeze(0)  # a copy: the rollback
                    before.append((group, x[0], dict(self.state[params[0]])))
                    self._step_group(group, x, grad, closure, current_loss)
                    current_loss = None  # the parameters moved: the value is stale for the next group
        except BaseException:
            for group, values, slot in before:  # undo: the step is atomic
                self._write(group["params"], values)
                self.state[group["params"][0]] = slot
            raise
        return loss

    def _all_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _record_evaluation(self, loss: Any) -> None:
        """Keep a closure evaluation (its loss, every parameter and gradient) for the next step."""
        if self.reuse_evaluations:
            params = self._all_params()
            self._last_evaluation = (loss, [p.detach().clone() for p in params],
                                     [None if p.grad is None else p.grad.detach().clone() for p in params])

    def _reused_evaluation(self) -> Any:
        """The loss of the recorded evaluation, with its gradients put back, when every
        parameter is bitwise what it was then; else None (the closure must run)."""
        recorded = self.__dict__.get("_last_evaluation")
        if not self.reuse_evaluations or recorded is None:
            return None
        loss, values, grads = recorded
        params = self._all_params()
        if len(values) != len(params) or not all(
                p.shape == v.shape and p.dtype == v.dtype and torch.equal(p, v) for p, v in zip(params, values)):
            return None
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.clone()
        return loss

    @staticmethod
    def _write(params: list[Tensor], flat: Tensor) -> None:
        """Copy ``flat: (N,)`` into the group's ``params``, in order."""
        offset = 0
        for p in params:
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def _step_group(self, group: dict[str, Any], x: Tensor, grad: Tensor,
                    closure: Callable[[], Any] | None = None, loss: Any = None) -> None:
        """Step one group from ``x: (1, N)``, a copy of its flattened parameters."""
        params = group["params"]
        rule = self.rule_for(group)
        ctx = self._context(group, x)
        if closure is not None:
            ctx.objective = self._objective(group, x, closure, loss, self._record_evaluation)
        slot = self.state[params[0]]
        state: State = slot.get("rule_state") or rule.init_state(x, ctx)
        spares = self.__dict__.setdefault("_spare", {})  # not copied or pickled: private
        ctx.spare = spares.pop(id(params[0]), [])
        x_next, new_state = rule.step(x, grad, state, ctx)
        scale = self._displacement_scale(group, slot)
        if scale != 1.0:
            x_next = x + scale * (x_next - x)
        if any(p.grad is None for p in params):
            # a parameter without a gradient keeps its value, even after a trial evaluation moved it
            kept = torch.cat([torch.full((p.numel(),), p.grad is None, device=x.device) for p in params])
            x_next = torch.where(kept, x, x_next)
        self._write(params, x_next[0])
        slot["rule_state"] = new_state
        # The state before this step is now referenced by nothing of ours (torch.optim's own
        # optimizers overwrite their state in place, so a user keeps copies, not references):
        # its tensors that share no memory with the new state become the next step's spares.
        live = {t.untyped_storage().data_ptr() for t in new_state.values() if torch.is_tensor(t)}
        spares[id(params[0])] = [t for t in state.values()
                                 if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in live]
        slot["step"] = slot.get("step", torch.tensor(0.0)) + 1

    def _displacement_scale(self, group: dict[str, Any], slot: dict[str, Any]) -> float:
        """A factor on the rule's step for a scheduled ``lr`` the rule cannot follow itself
        (1 here; see :class:`~l2o.optim.LearnedOptimizer`)."""
        return 1.0

    @staticmethod
    def _objective(group: dict[str, Any], current: Tensor, closure: Callable[[], Any],
                   loss: Any, record: Callable[[Any], None]) -> Callable[[Tensor], Tensor]:
        """``F(points) = closure() + l1 ||points||_1`` with the group's parameters set to
        ``points: (1, N)`` (the other groups fixed); at the current point the closure's
        value from this step is reused when it is still valid. Each closure call is passed
        to ``record`` (evaluation reuse)."""

        def objective(points: Tensor) -> Tensor:
            if points is current and loss is not None:
                value = torch.as_tensor(loss, dtype=points.dtype, device=points.device).detach()
            else:
                RuleOptimizer._write(group["params"], points[0])
                with torch.enable_grad():
                    result = closure()
                record(result)
                value = torch.as_tensor(result, dtype=points.dtype, device=points.device).detach()
            return (value + group["l1"] * points.abs().sum(-1)).reshape(1)

        return objective

    def iterates(self) -> list[Tensor]:
        """For every parameter (in param-group order), the rule's reported iterate: the
        parameter itself, or e.g. FISTA's main iterate x_k when the parameter holds the
        extrapolated point y_k."""
        out: list[Tensor] = []
        for group in self.param_groups:
            params = group["params"]
            state = self.state.get(params[0], {}).get("rule_state")
            if not state:
                out.extend(p.detach() for p in params)
                continue
            x = torch.cat([p.detach().reshape(-1) for p in params]).unsqueeze(0)
            reported = self.rule_for(group).iterate(x, state)
            offset = 0
            for p in params:
                out.append(reported[0, offset : offset + p.numel()].view_as(p))
                offset += p.numel()
        return out
