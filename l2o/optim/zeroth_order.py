"""Memory-lean zeroth-order optimizer: closure-only steps, seeded in-place perturbations.

``ZOOptimizer.step(closure)`` estimates the gradient of the closure's loss from q
(central or forward) finite differences along random directions and aggregates them with
ZO-Avg, ZO-Align or a learned aggregator (:mod:`l2o.rules.zeroth_order`). The closure is
only evaluated — run under ``torch.no_grad()``, never back-propagated.

**Memory.** No copy of the parameters and no direction tensors are kept: direction
``u_i`` restricted to parameter ``j`` is regenerated from a generator seeded with
``(seed, step, i, j)`` each time it is needed (perturb, restore, Gram matrix, update), and
the parameters are perturbed in place. Parameters are processed in chunks of ``CHUNK``
elements, so transient memory is a few chunk-sized temporaries (q of them while forming
ZO-Align's q×q Gram matrix), plus the exact-restore log below; the model's activations are those of inference.

**Exact restore.** ``(p + a) - a`` is not ``p`` in floating point for every element
(rounding when |a| is comparable to |p|, binade crossings), and no in-place scheme can undo
a non-injective rounding from ``p + a`` alone. So before each perturbation the optimizer
computes, one parameter tensor at a time, which elements would not round-trip bit-for-bit,
and logs only those (index and original value); after the evaluation it subtracts ``a``
and writes the logged elements back. Parameters are therefore restored **bit for bit**,
and the log holds only the exceptions, 8 bytes each (a chunk-local int32 index and the
value); :attr:`last_restore_log` reports their largest count. Measured on a PyTorch-default
initialized 6.7M-parameter float32 MLP (weights ~1e-2): 8.1% of the elements at
μ = 1e-3, 1.5% at μ = 1e-4, i.e. 0.65 (0.12) bytes per parameter: 16% (3%) of what a
float32 copy of the parameters would cost. Smaller μ relative to the weights logs less.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor

from l2o.optim.base import CopyableOptimizer
from l2o.rules.zeroth_order import (
    DIRECTIONS,
    SCHEMES,
    LearnedAggregator,
    ZORule,
    aggregate,
    default_step,
    difference_quotients,
    directional_curvature,
    estimate_scale,
    relative_progress,
)

_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}
CHUNK = 1 << 18  # elements per regenerated direction chunk (1 MB of float32)


def _same_bits(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise bitwise equality of two float tensors (so -0.0 != +0.0, NaN == NaN)."""
    bits = _BITS[a.element_size()]
    return a.view(bits) == b.view(bits)


class ZOOptimizer(CopyableOptimizer):
    """Zeroth-order descent ``θ ← θ - lr · g``, ``g = s Σ_i c_i u_i`` (module docstring).

    **What lr means.** ``g`` estimates the gradient at the same scale for every aggregator
    (``E[g] ≈ ∇f``: ZO-Align and the learned aggregator are multiplied by ``s = n / q``,
    n the number of trainable elements; :func:`~l2o.rules.zeroth_order.estimate_scale`),
    so ``lr`` is SGD's learning rate on that estimate whatever the aggregator, and
    switching ``avg`` <-> ``align`` at one ``lr`` keeps the expected step. ZO-Avg at q = 1
    with ``lr`` is MeZO's ZO-SGD with that learning rate.

    **No lr (default).** With ``lr=None`` the step is set from the curvature the queries
    measure, with no constant to know: the central differences give the curvature along
    each direction, ``κ_i = (f(θ + μu_i) + f(θ − μu_i) − 2 f(θ)) / (μ² ||u_i||²)`` (one more
    closure call per step, for f(θ)), ``L̂_k`` is the running maximum of ``max_i κ_i`` over
    the steps (a lower bound of L on a quadratic, growing toward the curvature met), and
    the step is ``default_step / L̂_k`` (``q / ((n + q + 1) L̂)`` for ZO-Avg, ``q / (n L̂)``
    for the others: :func:`~l2o.rules.zeroth_order.default_step`), the step that decreases
    the expected quadratic model most. Since ``L̂`` is only a lower bound (a loss that is
    nearly linear along random directions measures almost no curvature), the step is
    **verified**: one more closure call at the moved point, and a step that does not
    decrease f is undone (bit for bit) and ``L̂`` doubled, so the next step is half as long
    (2q + 2 closure calls per step in all). Until some positive curvature has been measured
    no step is taken. Needs ``scheme="central"``; :attr:`curvature` is ``L̂_k``. A group may
    still set its own ``lr`` (a scheduler then scales that group's); the verification
    covers the whole step.

    Contract: non-contiguous parameters are perturbed in place through views; frozen
    parameters (``requires_grad=False``) are never touched, and with all of them frozen
    ``step`` only evaluates the closure; ``copy.deepcopy`` / ``pickle`` keep every
    setting. Mixed precision: run the closure's forward under ``torch.autocast``; a
    ``torch.amp.GradScaler`` is neither needed (no backward, so no gradient underflow) nor
    accepted: ``scaler.step(opt, closure)`` raises a ``RuntimeError`` saying so before
    anything changes.

    Args:
        params: parameters or param groups (per-group ``lr``).
        lr: step size (> 0) on the gradient estimate, as SGD's; None (default): from the
            measured curvature (above).
        q: queries (directions) per step.
        aggregator: ``"avg"`` | ``"align"`` | a zoo entry name (a learned aggregator, ``zo`` in
            its name) | a :class:`~l2o.rules.ZORule` or :class:`~l2o.rules.LearnedAggregator`.
        mu: smoothing radius μ (> 0).
        seed: base seed of the directions (None: drawn from torch's global generator).
        directions: ``"gaussian"`` | ``"sphere"``; scheme: ``"central"`` (2q evaluations per
            step) | ``"forward"`` (q + 1).

    ``step(closure)`` returns the loss at the current point (forward scheme, and the central
    scheme with ``lr=None``, which evaluates it) or the mean of the 2q perturbed losses, an
    O(μ²) estimate of it (central scheme with an ``lr``, no extra evaluation).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float | None = None, q: int = 1,
                 aggregator: str | ZORule | LearnedAggregator = "avg", mu: float = 1e-3,
                 seed: int | None = None, directions: str = "gaussian", scheme: str = "central") -> None:
        _validate_lr(lr)
        if not isinstance(q, int) or q < 1:
            raise ValueError(f"Invalid q: {q!r} (a positive int)")
        if not isinstance(mu, (int, float)) or not 0 < mu < math.inf:
            raise ValueError(f"Invalid mu: {mu} (a finite float > 0)")
        if directions not in DIRECTIONS or scheme not in SCHEMES:
            raise ValueError(f"Invalid directions {directions!r} or scheme {scheme!r}: choose from {DIRECTIONS}, {SCHEMES}")
        self.q, self.mu, self.directions, self.scheme = q, float(mu), directions, scheme
        super().__init__(params, {"lr": None if lr is None else float(lr)})
        self.aggregator = _resolve_aggregator(aggregator)
        base = int(torch.randint(0, 2**31 - 1, ())) if seed is None else int(seed)
        self._meta.update({"seed": base, "step": 0, "last": math.nan, "curvature": 0.0})
        self.last_restore_log = 0

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _validate_lr(group["lr"])
            if group["lr"] is None and self.scheme != "central":
                raise ValueError("lr=None measures the curvature from central differences: pass scheme='central' "
                                 "or an lr")
            for p in group["params"]:
                if p.is_sparse or p.is_complex() or not p.is_floating_point():
                    raise ValueError("ZOOptimizer supports dense, real floating-point parameters only")
        except ValueError:
            self.param_groups.pop()
            raise

    _step_supports_amp_scaling = True  # so that GradScaler.step reaches step(), which explains itself

    @property
    def curvature(self) -> float:
        """``L̂_k``: the largest curvature measured along a direction so far (``lr=None``; 0
        before any positive one)."""
        return self._meta.get("curvature", 0.0)

    # ------------------------------------------------------------------ helpers
    def _params(self) -> list[Tensor]:
        """The trainable parameters (``requires_grad``; frozen ones are never touched)."""
        return [p for group in self.param_groups for p in group["params"] if p.requires_grad]

    @property
    def _meta(self) -> dict[str, Any]:
        """Optimizer-wide state (seed, step, last loss), kept with the first parameter so
        that ``state_dict`` round-trips it."""
        return self.state[self.param_groups[0]["params"][0]]

    def _chunks(self, query: int, index: int, p: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(view, u)`` pairs covering parameter ``index``: views of ``p`` (so in-place ops
        change ``p``) (:func:`_views`) and ``u_query`` on each, drawn from its own
        generator seeded with ``(seed, step, query, index, chunk)`` (Gaussian; the sphere
        scaling is global). Temporaries are O(CHUNK), whatever the parameter's size."""
        for chunk, view in enumerate(_views(p)):
            generator = self._generator(p.device, query, index, chunk)
            yield view, torch.randn(view.shape, generator=generator, dtype=p.dtype, device=p.device)

    def _generator(self, device: torch.device, *key: int) -> torch.Generator:
        """A generator on ``device`` seeded with ``(seed, step, *key)``: the same draws every
        time they are regenerated within a step, new ones at the next step."""
        seed = hash((self._meta["seed"], self._meta["step"], *key)) & 0x7FFF_FFFF_FFFF
        return torch.Generator(device=device).manual_seed(seed)

    def _gram(self) -> Tensor:
        """``G = U Uᵀ`` ``(q, q)`` in float64, accumulated chunk by chunk (q chunks at a time)."""
        gram = torch.zeros(self.q, self.q, dtype=torch.float64)
        for index, p in enumerate(self._params()):
            streams = [self._chunks(i, index, p) for i in range(self.q)]
            for pieces in zip(*streams):
                block = torch.stack([u.reshape(-1) for _, u in pieces]).double()
                gram += (block @ block.T).cpu()
        return gram

    def _displacements(self, amounts: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(view, a)`` chunk by chunk over every parameter: ``a = Σ_i amounts[j, i] u_i``
        on parameter j's chunk (``amounts: (parameters, q)``; directions whose amount is 0
        are not drawn, so a probe along one direction draws one)."""
        rows = amounts.tolist()  # Python floats: no tensor indexing per chunk
        for index, p in enumerate(self._params()):
            used = [(i, amount) for i, amount in enumerate(rows[index]) if amount != 0]
            for pieces in zip(*(self._chunks(i, index, p) for i, _ in used)):
                a = used[0][1] * pieces[0][1]
                for (_, amount), (_, u) in zip(used[1:], pieces[1:]):
                    a += amount * u
                yield pieces[0][0], a

    def _shift(self, amounts: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``p += Σ_i amounts[j, i] u_i`` in place for every parameter j; returns the restore
        log: per chunk, the flat indices (into the chunk) and original values of the elements
        that subtracting the same displacement would not restore bit for bit."""
        log = []
        for view, a in self._displacements(amounts):
            shifted = view + a
            where = (~_same_bits(shifted - a, view)).nonzero().to(torch.int32)  # (k, view.dim())
            log.append((where, view[tuple(where.long().T)].clone()))
            view.copy_(shifted)
        self.last_restore_log = max(self.last_restore_log, sum(w.numel() for w, _ in log))
        return log

    def _unshift(self, amounts: Tensor, log: list[tuple[Tensor, Tensor]]) -> None:
        """Undo :meth:`_shift` bit for bit."""
        for (view, a), (where, values) in zip(self._displacements(amounts), log):
            view.sub_(a)
            view[tuple(where.long().T)] = values

    def _probe(self, query: int, amount: float, count: int) -> Tensor:
        """``(parameters, q)`` amounts moving every parameter by ``amount · u_query``."""
        amounts = torch.zeros(count, self.q, dtype=torch.float64)
        amounts[:, query] = amount
        return amounts

    #: whether every step evaluates f(θ) first (a subclass whose directions come from it)
    needs_center = False

    def _evaluate_center(self, closure: Callable[[], Any]) -> float:
        """f(θ) at the unperturbed parameters, evaluated before any direction is drawn."""
        return self._evaluate(closure)

    def _dimension(self, params: list[Tensor]) -> int:
        """n, the dimension the directions span (every trainable element here)."""
        return sum(p.numel() for p in params)

    @staticmethod
    def _value(closure: Callable[[], Any]) -> float:
        value = closure()
        return float(value.detach() if isinstance(value, Tensor) else value)

    def _evaluate(self, closure: Callable[[], Any]) -> float:
        value = self._value(closure)
        if not math.isfinite(value):
            raise ValueError(f"the closure returned a non-finite loss ({value}); no parameter was changed")
        return value

    # --------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> float:  # type: ignore[override]
        if closure is None:
            raise ValueError("ZOOptimizer.step needs a closure that returns the loss (it never calls backward)")
        if getattr(self, "grad_scale", None) is not None:  # set by torch.amp.GradScaler.step
            raise RuntimeError(
                "ZOOptimizer needs no GradScaler: it never back-propagates, so there is no gradient "
                "underflow to prevent, and a scaled loss would scale its step. Call "
                "optimizer.step(closure) directly, with the closure's forward under torch.autocast."
            )
        params = self._params()
        if not params:  # every parameter frozen: nothing to estimate, as torch.optim with no grads
            return self._evaluate(closure)
        rates = [group["lr"] for group in self.param_groups for p in group["params"] if p.requires_grad]
        measure = any(lr is None for lr in rates)  # the curvature, for the groups without lr
        center = self.scheme == "forward" or measure or self.needs_center
        base = self._evaluate_center(closure) if center else None  # before the directions: they may depend on it
        dim = self._dimension(params)
        gram = self._gram() if (self.aggregator != "avg" or self.directions == "sphere" or measure) else None
        scale = torch.ones(self.q, dtype=torch.float64) if gram is None or self.directions == "gaussian" \
            else 1.0 / gram.diagonal().sqrt()  # sphere: u_i / ||u_i||
        plus, minus = [], []
        for i in range(self.q):
            for sign, values in ((1.0, plus), (-1.0, minus))[: 2 if self.scheme == "central" else 1]:
                probe = self._probe(i, sign * self.mu * float(scale[i]), len(params))
                log = self._shift(probe)
                try:
                    values.append(self._evaluate(closure))
                finally:
                    self._unshift(probe, log)
        other = minus if self.scheme == "central" else [base]
        delta, loss = difference_quotients(torch.tensor(plus, dtype=torch.float64),
                                           torch.tensor(other, dtype=torch.float64), self.mu, self.scheme)
        loss = float(loss) if base is None else base
        if gram is not None and self.directions == "sphere":
            gram = gram * scale[:, None] * scale[None, :]
        if measure:
            curvature = directional_curvature(torch.tensor(plus, dtype=torch.float64), torch.tensor(minus, dtype=torch.float64),
                                              torch.tensor([base], dtype=torch.float64), self.mu, gram.diagonal())
            self._meta["curvature"] = max(self.curvature, float(curvature.max()))
            curvature_step = default_step(self.aggregator, self.q, dim) / self.curvature if self.curvature > 0 else 0.0
            rates = [curvature_step if lr is None else lr for lr in rates]
        progress = relative_progress(torch.tensor([[self._meta["last"]]], dtype=torch.float64),
                                     torch.tensor([[loss]], dtype=torch.float64))
        coefficients = aggregate(self.aggregator, delta[None], gram[None] if gram is not None else None, dim,
                                 self.directions, progress)[0] * scale * estimate_scale(self.aggregator, self.q, dim)
        # a constant loss (c = 0) or a zero rate changes nothing, not even -0.0: those amounts are 0
        amounts = -torch.tensor(rates, dtype=torch.float64)[:, None] * coefficients[None, :]
        moved = bool((amounts != 0).any())
        if measure and moved:  # verified: a step that does not decrease f is undone, and the next one halved
            log = self._shift(amounts)
            if not self._value(closure) < base:  # NaN (an overflowed trial) is no decrease either
                self._unshift(amounts, log)
                self._meta["curvature"] = 2 * self.curvature
        elif moved:
            for view, a in self._displacements(amounts):
                view.add_(a)
        self._meta["step"] += 1
        self._meta["last"] = loss
        return loss


def _validate_lr(lr: Any) -> None:
    if lr is not None and (not isinstance(lr, (int, float)) or not 0 < lr < math.inf):
        raise ValueError(f"Invalid learning rate: {lr} (None, or a finite float > 0)")


def _views(p: Tensor) -> Iterator[Tensor]:
    """Views of ``p`` covering it in order: flat slices of ``CHUNK`` elements, or for a
    non-contiguous ``p`` blocks of whole rows (``p[i:j]``) of about ``CHUNK`` elements."""
    if p.is_contiguous():
        flat = p.view(-1)
        for start in range(0, flat.numel(), CHUNK):
            yield flat[start : start + CHUNK]
        return
    rows = max(1, CHUNK // max(1, p[0].numel()))
    for start in range(0, p.shape[0], rows):
        yield p[start : start + rows]


def _resolve_aggregator(aggregator: str | ZORule | LearnedAggregator) -> str | LearnedAggregator:
    if isinstance(aggregator, LearnedAggregator):
        return aggregator
    if isinstance(aggregator, ZORule):
        if aggregator.aggregator is None:
            return aggregator.aggregator_name
        return aggregator.aggregator
    if aggregator in ("avg", "align"):
        return aggregator
    if isinstance(aggregator, str):
        from l2o import zoo

        rule = zoo.load(aggregator).rule
        if not isinstance(rule, ZORule) or rule.aggregator is None:
            raise ValueError(f"zoo entry {aggregator!r} is a {type(rule).__name__}, not a learned ZO aggregator")
        return rule.aggregator
    raise ValueError(f"Invalid aggregator: {aggregator!r}; use 'avg', 'align', a zoo name or a LearnedAggregator")
