"""Zeroth-order (ZO) gradient estimates from function values, and their aggregators
("The Multi-Query Paradox in Zeroth-Order Optimization", Lin, Song, Xu 2025).

At x, ``q`` directions ``u_1 … u_q`` (rows of ``U: (B, q, n)``; Gaussian, or uniform on the
unit sphere) and finite differences with smoothing radius μ:

    forward  δ_i = (f(x + μ u_i) - f(x)) / μ              (q + 1 queries)
    central  δ_i = (f(x + μ u_i) - f(x - μ u_i)) / (2μ)   (2q queries)

Aggregators map ``(U, δ)`` to an estimate ``g = s Σ_i c_i u_i`` through coefficients ``c``
that depend only on ``δ`` and the Gram matrix ``G = U Uᵀ`` ``(B, q, q)`` — so the drop-in
optimizer can apply them with directions regenerated from seeds — and a scale ``s``
(:func:`estimate_scale`) that makes every aggregator's ``g`` an estimate of the gradient at
the same scale, ``E[g] ≈ ∇f_μ``: so ``lr`` means what SGD's lr means for all of them, and
switching aggregators at the same ``lr`` changes the noise, not the step:

* **ZO-Avg**: ``c = δ / q`` (× n for sphere directions, so that ``E[g] ≈ ∇f_μ``).
* **ZO-Align**: ``c = G⁻¹ δ``, i.e. ``Uᵀ (U Uᵀ)⁻¹ δ``: the minimum-norm vector whose
  directional derivatives along every u_i are the measured δ_i — the projection ``P_U ∇f``
  of the gradient onto span(U). For isotropic directions ``E[P_U] = (q/n) I``, so
  ``s = n / q`` makes it unbiased; with q = n directions ``s = 1`` and ``g`` is the
  finite-difference gradient itself.
* **Learned** (:class:`LearnedAggregator`): a small network over invariant summaries of
  ``(δ, G)`` and the last step's progress mixes the two (at ZO-Align's projection scale,
  so ``s = n / q``) and scales the step.

**Curvature.** Central differences also give the curvature along each direction,
``κ_i = (f(x + μu_i) + f(x − μu_i) − 2 f(x)) / (μ² ||u_i||²)`` (exact on a quadratic, one
more query for f(x)): :func:`directional_curvature`, which the drop-in optimizer's
``lr=None`` runs on (no constant needed).

Memory is ``O(B q n)`` here (batched problem families); the drop-in
:class:`~l2o.optim.ZOOptimizer` never materializes ``U``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from l2o.rules.base import State, StepContext, UpdateRule, validate_lr

DIRECTIONS = ("gaussian", "sphere")
SCHEMES = ("forward", "central")


def sample_directions(shape: tuple[int, ...], kind: str, generator: torch.Generator,
                      dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """``(..., n)`` directions: standard Gaussian, or uniform on the unit sphere (last dim).
    Drawn on the generator's device, then moved."""
    if kind not in DIRECTIONS:
        raise ValueError(f"Invalid directions: {kind!r}; choose from {DIRECTIONS}")
    u = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
    if kind == "sphere":
        u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True)
    return u.to(device) if device is not None else u


def finite_differences(objective, x: Tensor, U: Tensor, mu: float, scheme: str) -> tuple[Tensor, Tensor]:
    """``δ: (B, q)`` and the loss at x ``(B,)`` from ``objective: (B, n) -> (B,)`` at
    ``x: (B, n)`` along ``U: (B, q, n)``, spending exactly the scheme's queries (q + 1 or 2q):
    see :func:`difference_quotients`."""
    if scheme not in SCHEMES:
        raise ValueError(f"Invalid scheme: {scheme!r}; choose from {SCHEMES}")

    def along(sign: float) -> Tensor:
        return torch.stack([objective(x + sign * mu * U[:, i]) for i in range(U.shape[1])], dim=1)

    other = objective(x)[:, None] if scheme == "forward" else along(-1.0)
    return difference_quotients(along(1.0), other, mu, scheme)


def difference_quotients(plus: Tensor, other: Tensor, mu: float, scheme: str) -> tuple[Tensor, Tensor]:
    """``δ`` and the loss at x from measured values: ``plus = f(x + μu_i)`` ``(..., q)`` and
    ``other = f(x)`` ``(..., 1)`` (forward) or ``f(x - μu_i)`` ``(..., q)`` (central). The
    loss is f(x) (forward) or the mean of the 2q values, an O(μ²) estimate needing no query."""
    if scheme == "forward":
        return (plus - other) / mu, other[..., 0]
    return (plus - other) / (2 * mu), torch.cat([plus, other], dim=-1).mean(-1)


def relative_progress(last: Tensor, value: Tensor) -> Tensor:
    """``(last - value) / |last|``, 0 where there is no previous value (``last`` NaN)."""
    return torch.where(torch.isfinite(last), (last - value) / last.abs().clamp_min(1e-30), 0.0)


def avg_coefficients(delta: Tensor, dim: int, kind: str) -> Tensor:
    """ZO-Avg: ``c = δ / q`` (Gaussian), ``c = n δ / q`` (sphere). ``(B, q) -> (B, q)``."""
    scale = dim if kind == "sphere" else 1.0
    return delta * (scale / delta.shape[-1])


def align_coefficients(delta: Tensor, gram: Tensor) -> Tensor:
    """ZO-Align: ``c = G⁻¹ δ`` (least squares when G is singular). ``(B, q), (B, q, q) -> (B, q)``."""
    return torch.linalg.lstsq(gram, delta[..., None], driver="gelsd" if gram.device.type == "cpu" else None).solution[..., 0]


def combine(U: Tensor, coefficients: Tensor) -> Tensor:
    """``g = Σ_i c_i u_i``: ``(B, q, n), (B, q) -> (B, n)``."""
    return torch.einsum("bqn,bq->bn", U, coefficients)


class LearnedAggregator(nn.Module):
    """Coefficients ``c = γ (λ c_align + (1 - λ) c_avg)`` with ``(λ, log γ)`` from an MLP over
    per-instance invariants (no dependence on n or on the coordinates, so one trained
    aggregator serves any model):

    ``[log(||g_align|| / ||g_avg||), cos(g_align, g_avg), q / n, tanh(last relative decrease)]``

    where norms and cosines come from G alone (``||Σ c_i u_i||² = cᵀ G c``). The output
    layer starts at zero: untrained, λ = ½ and γ = 1.
    """

    num_features = 4

    def __init__(self, hidden_size: int = 16) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.net = nn.Sequential(nn.Linear(self.num_features, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, c_align: Tensor, c_avg: Tensor, gram: Tensor, dim: int, progress: Tensor) -> Tensor:
        """``(B, q)`` coefficients; ``progress: (B, 1)`` the last relative decrease of f."""
        tiny = torch.finfo(gram.dtype).tiny
        quad = lambda a, b: torch.einsum("bi,bij,bj->b", a, gram, b)[:, None]  # noqa: E731
        norm_align, norm_avg = quad(c_align, c_align).clamp_min(tiny).sqrt(), quad(c_avg, c_avg).clamp_min(tiny).sqrt()
        features = torch.cat([
            torch.log(norm_align / norm_avg), quad(c_align, c_avg) / (norm_align * norm_avg),
            torch.full_like(norm_avg, c_align.shape[-1] / dim), torch.tanh(progress)], dim=-1)
        mix, log_scale = self.net(features.to(self.net[0].weight.dtype)).to(gram.dtype).unbind(-1)
        weight = torch.sigmoid(mix)[:, None]
        return torch.exp(log_scale)[:, None] * (weight * c_align + (1 - weight) * c_avg)


def estimate_scale(aggregator: str | LearnedAggregator, q: int, dim: int) -> float:
    """``s``: the factor on ``Σ_i c_i u_i`` that makes the aggregator's estimate of ∇f
    unbiased for isotropic directions: 1 for ZO-Avg (already ``E[g] = ∇f_μ``), ``n / q`` for
    ZO-Align and the learned aggregator, whose output is a projection onto the q-dimensional
    span(U) (``E[P_U] = (q/n) I``)."""
    return 1.0 if aggregator == "avg" else dim / q


def default_step(aggregator: str | LearnedAggregator, q: int, dim: int) -> float:
    """The step (in units of 1/L) on the scaled estimate ``g`` (:func:`estimate_scale`):
    ``||∇f||² / E||g||²``, the step whose expected quadratic model
    ``f - t ||∇f||² + L t² E||g||² / 2`` decreases most per unit of L.

    ZO-Avg's Gaussian estimate has ``E||g||² ≈ (n + q + 1) / q · ||∇f||²``, so its step is
    ``q / ((n + q + 1) L)`` (Nesterov & Spokoiny's 1/((n + 4) L) for q = 1, up to the
    constant). ZO-Align's ``(n/q) P_U ∇f`` has ``E||g||² = (n/q) ||∇f||²``, so ``q / (n L)``:
    that is 1/L on the projection itself, the GD-safe step, since ``||P_U ∇f|| <= ||∇f||``.
    The learned aggregator starts at the same scaling (its avg input is multiplied by
    ZO-Avg's factor) and learns to rescale.
    """
    return q / (dim + q + 1) if aggregator == "avg" else q / dim


def directional_curvature(plus: Tensor, minus: Tensor, center: Tensor, mu: float, squared_norms: Tensor) -> Tensor:
    """``κ_i = (f(x + μu_i) + f(x − μu_i) − 2 f(x)) / (μ² ||u_i||²)``, the second difference
    along each direction: ``plus, minus, squared_norms: (..., q)``, ``center: (..., 1)`` ->
    ``(..., q)``. On a quadratic it is ``u_iᵀ H u_i / ||u_i||²`` exactly (a Rayleigh
    quotient, so <= L for an L-smooth f, up to rounding)."""
    return (plus + minus - 2 * center) / (mu**2 * squared_norms)


def aggregate(aggregator: str | LearnedAggregator, delta: Tensor, gram: Tensor, dim: int,
              kind: str, progress: Tensor | None = None) -> Tensor:
    """The coefficients of any aggregator: ``"avg"``, ``"align"`` or a learned one."""
    if aggregator == "avg":
        return avg_coefficients(delta, dim, kind)
    if aggregator == "align":
        return align_coefficients(delta, gram)
    if isinstance(aggregator, LearnedAggregator):
        progress = torch.zeros_like(delta[:, :1]) if progress is None else progress
        c_avg = avg_coefficients(delta, dim, kind) * default_step("avg", delta.shape[-1], dim)
        return aggregator(align_coefficients(delta, gram), c_avg, gram, dim, progress)
    raise ValueError(f"Invalid aggregator: {aggregator!r}; use 'avg', 'align' or a LearnedAggregator")


class ZORule(UpdateRule):
    """ZO descent ``x_{k+1} = x_k - lr · g_k`` with ``g_k ≈ ∇f`` (:func:`estimate_scale`) from
    q queries and an aggregator,
    on batches of problem instances (the objective comes from ``ctx.objective``; the
    gradient argument of :meth:`step` is ignored). Directions are drawn from a generator
    seeded with ``(seed, k)``: a rollout is reproducible.

    Args:
        aggregator: ``"avg"``, ``"align"`` or ``"learned"`` (a :class:`LearnedAggregator`,
            trained by meta-training).
        q: queries per iteration; lr: step size on the gradient estimate, as SGD's (None:
            :func:`default_step` with L from the context);
        mu: smoothing radius; directions: ``"gaussian"`` | ``"sphere"``;
        scheme: ``"central"`` | ``"forward"``; seed; hidden_size (learned only).
    """

    uses_gradient = False

    def __init__(self, aggregator: str = "learned", q: int = 4, lr: float | None = None, mu: float = 1e-3,
                 directions: str = "gaussian", scheme: str = "central", seed: int = 0, hidden_size: int = 16) -> None:
        super().__init__()
        if aggregator not in ("avg", "align", "learned"):
            raise ValueError(f"Invalid aggregator: {aggregator!r}; choose from avg, align, learned")
        if not isinstance(q, int) or q < 1:
            raise ValueError(f"Invalid q: {q!r} (a positive int)")
        if not mu > 0:
            raise ValueError(f"Invalid mu: {mu} (> 0)")
        if directions not in DIRECTIONS or scheme not in SCHEMES:
            raise ValueError(f"Invalid directions/scheme: {directions!r}, {scheme!r}")
        validate_lr(lr)
        self.aggregator_name, self.q, self.lr, self.mu = aggregator, q, lr, float(mu)
        self.directions, self.scheme, self.seed, self.hidden_size = directions, scheme, seed, hidden_size
        self.aggregator = LearnedAggregator(hidden_size) if aggregator == "learned" else None

    def config(self) -> dict[str, Any]:
        return {"aggregator": self.aggregator_name, "q": self.q, "lr": self.lr, "mu": self.mu,
                "directions": self.directions, "scheme": self.scheme, "seed": self.seed,
                "hidden_size": self.hidden_size}

    def queries_per_step(self) -> int:
        """Function evaluations per step (what a query budget counts)."""
        return 2 * self.q if self.scheme == "central" else self.q + 1

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        """``k``: the step (seeds the directions; a CPU counter, so reading it never waits for
        the device); ``last`` ``(B, 1)``: the previous loss."""
        return {"k": torch.zeros((), dtype=torch.long), "last": x.new_full((x.shape[0], 1), float("nan"))}

    def step(self, x: Tensor, grad: Tensor | None, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        if ctx.objective is None:
            raise ValueError("a ZO rule needs the objective (problem instances or a closure)")
        k = int(state["k"].item())
        generator = torch.Generator().manual_seed(hash((self.seed, k)) & 0x7FFFFFFF)
        U = sample_directions((x.shape[0], self.q, x.shape[1]), self.directions, generator, x.dtype, x.device)
        delta, value = finite_differences(ctx.objective, x, U, self.mu, self.scheme)
        gram = U @ U.transpose(1, 2)
        progress = relative_progress(state["last"], value[:, None])
        aggregator = self.aggregator if self.aggregator is not None else self.aggregator_name
        coefficients = aggregate(aggregator, delta, gram, x.shape[1], self.directions, progress)
        dim = x.shape[1]
        lr = self.lr if self.lr is not None else default_step(aggregator, self.q, dim) / ctx.lipschitz
        scaled = lr * estimate_scale(aggregator, self.q, dim)
        return x - scaled * combine(U, coefficients), {"k": state["k"] + 1, "last": value[:, None].detach()}
