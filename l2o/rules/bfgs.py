"""Batched, differentiable BFGS with classical scalar step sizes and learned coordinate-wise
step sizes (Lin, Song, Xu 2024: "coordinate-wise step sizes for quasi-Newton methods").

Iteration, with ``g_k = ∇f(x_k)`` and the BFGS inverse-Hessian approximation ``H_k``:

    d_k = H_k g_k,    x_{k+1} = x_k - P_k d_k,

``P_k = α_k I`` for the classical rules (:class:`BFGSRule`) and ``P_k = diag(p_k)`` for the
learned one (:class:`LearnedBFGSRule`). ``H_0 = I`` (``initial="identity"``, SciPy's
choice) or ``I / L`` (``initial="lipschitz"``, so that the first step is a 1/L gradient
step). The update, with ``s = x_{k+1} - x_k``, ``y = g_{k+1} - g_k``, ``ρ = 1 / yᵀs``:

    H_{k+1} = (I - ρ s yᵀ) H_k (I - ρ y sᵀ) + ρ s sᵀ,

is **skipped** (``H_{k+1} = H_k``) when ``yᵀs <= ε ||s|| ||y||`` (curvature safeguard), so
``H_k`` stays symmetric positive definite.

**Memory.** ``H`` is dense: ``O(n²)`` per instance (n = number of parameters in a group),
and each step costs ``O(n²)``. That is fine for the problem families (n <= a few thousand:
n = 2,000 in float32 is 16 MB) and wrong for neural networks: a 1M-parameter model would
need 4 TB. A limited-memory variant is not provided (see the issue's closing note).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from l2o.features import instance_dot, instance_norm
from l2o.rules.base import State, StepContext, UpdateRule, step_size, validate_lr
from l2o.rules.lstm import CoordinateLSTMRule
from problems.linalg import matvec

INITIALS = ("identity", "lipschitz", "curvature")
STEPS = ("constant", "armijo", "exact", "hypergradient")


def bfgs_update(H: Tensor, s: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """The BFGS inverse-Hessian update, per instance, skipped where ``yᵀs <= ε ||s|| ||y||``.

    ``H: (B, n, n)``, ``s, y: (B, n)`` → ``(B, n, n)``. Expanded form (no n×n products):
    ``H⁺ = H - ρ (s (Hy)ᵀ + (Hy) sᵀ) + (ρ² yᵀHy + ρ) s sᵀ``.
    """
    sy = instance_dot(s, y)  # (B, 1)
    ok = sy > eps * instance_norm(s) * instance_norm(y)
    rho = torch.where(ok, 1.0 / torch.where(ok, sy, torch.ones_like(sy)), torch.zeros_like(sy))
    Hy = matvec(H, y)
    yHy = instance_dot(y, Hy)
    outer = lambda a, b: a[:, :, None] * b[:, None, :]  # noqa: E731
    correction = -rho[:, :, None] * (outer(s, Hy) + outer(Hy, s)) + (rho**2 * yHy + rho)[:, :, None] * outer(s, s)
    return H + correction


def initial_inverse_hessian(x: Tensor, ctx: StepContext, initial: str) -> Tensor:
    """``H_0``: ``(B, n, n)`` identity (``"identity"``, and ``"curvature"`` until its first
    pair rescales it, see :func:`bfgs_direction`), or identity / L (``"lipschitz"``)."""
    eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)
    if initial in ("identity", "curvature"):
        return eye.clone()
    return eye * step_size(None, ctx, "BFGS with initial='lipschitz'")[:, :, None]


#: the largest dimension dense BFGS accepts: H is n × n (20000² float64 = 3.2 GB per instance).
MAX_DENSE_DIM = 20_000


def bfgs_state(x: Tensor, ctx: StepContext, initial: str) -> State:
    """The BFGS part of a rule's state: ``H``, the previous point and gradient, and
    ``started`` ``(B, 1)`` (0 before the first step: no (s, y) pair yet).

    Raises ``ValueError`` above :data:`MAX_DENSE_DIM` coordinates, before allocating H."""
    n = x.shape[1]
    if n > MAX_DENSE_DIM:
        gigabytes = x.shape[0] * n * n * x.element_size() / 1e9
        raise ValueError(
            f"dense BFGS keeps an n x n matrix: n = {n} would need {gigabytes:.3g} GB (limit n <= "
            f"{MAX_DENSE_DIM}); for a network use a first-order rule (e.g. rule='gomath-lasso-toy' "
            "or torch.optim.LBFGS); a learned L-BFGS is planned (issue 13)")
    return {"H": initial_inverse_hessian(x, ctx, initial), "x_prev": torch.zeros_like(x),
            "g_prev": torch.zeros_like(x), "started": x.new_zeros(x.shape[0], 1),
            "pairs": x.new_zeros(x.shape[0], 1)}


def bfgs_direction(x: Tensor, grad: Tensor, state: State, eps: float,
                   rescale_first: bool = False) -> tuple[Tensor, State]:
    """Fold the last (s, y) pair into ``H`` and return ``d = H g`` ``(B, n)`` and the new
    BFGS state (the current point and gradient become the previous ones).

    With ``rescale_first`` (``initial="curvature"``), H_0 = I is replaced before the first
    update by ``(sᵀy / yᵀy) I`` (Nocedal & Wright, Eq. 6.20): the standard scaling, which
    needs no constant."""
    H, started = state["H"], state["started"]
    s, y = x - state["x_prev"], grad - state["g_prev"]
    if rescale_first:
        sy, yy = instance_dot(s, y), instance_dot(y, y)
        first = (started > 0) & (state["pairs"] == 0) & (sy > 0) & (yy > 0)
        gamma = torch.where(first, sy / torch.where(first, yy, torch.ones_like(yy)), torch.ones_like(sy))
        H = H * gamma[:, :, None]
    updated = bfgs_update(H, s, y, eps)
    H = torch.where(started[:, :, None] > 0, updated, H)
    direction = matvec(H, grad)
    return direction, {"H": H, "x_prev": x, "g_prev": grad, "started": torch.ones_like(started),
                       "pairs": state["pairs"] + (started > 0).to(x.dtype)}


def lbfgs_state(x: Tensor, memory: int) -> State:
    """The L-BFGS part of a rule's state: the last ``memory`` pairs ``S, Y`` ``(B, m, n)``
    (newest last), the previous point and gradient, ``started`` and ``pairs`` ``(B, 1)``.
    O(m·n) memory per instance instead of dense BFGS's n²."""
    zeros = x.new_zeros(x.shape[0], 1)
    return {"S": x.new_zeros(x.shape[0], memory, x.shape[1]), "Y": x.new_zeros(x.shape[0], memory, x.shape[1]),
            "x_prev": torch.zeros_like(x), "g_prev": torch.zeros_like(x), "started": zeros, "pairs": zeros}


def lbfgs_direction(x: Tensor, grad: Tensor, state: State, eps: float,
                    scaling: bool = True) -> tuple[Tensor, State]:
    """Store the last (s, y) pair (skipped where ``yᵀs <= ε ||s|| ||y||``, as in
    :func:`bfgs_update`) and return ``d = H g`` by the two-loop recursion (Nocedal & Wright,
    Algorithm 7.4) with ``H_0 = γ I``, ``γ = sᵀy / yᵀy`` of the newest pair (``scaling``;
    else γ = 1, when d equals dense BFGS's from H_0 = I while no pair has been dropped)."""
    S, Y, started = state["S"], state["Y"], state["started"]
    memory = S.shape[1]
    s, y = x - state["x_prev"], grad - state["g_prev"]
    sy = instance_dot(s, y)
    accept = (started > 0) & (sy > eps * instance_norm(s) * instance_norm(y))
    S = torch.where(accept[:, :, None], torch.cat([S[:, 1:], s[:, None]], dim=1), S)
    Y = torch.where(accept[:, :, None], torch.cat([Y[:, 1:], y[:, None]], dim=1), Y)
    pairs = torch.clamp(state["pairs"] + accept.to(x.dtype), max=memory)
    sy_all, yy_all = (S * Y).sum(-1), (Y * Y).sum(-1)  # (B, m)
    valid = torch.arange(memory, device=x.device)[None, :] >= memory - pairs  # the newest `pairs` slots
    rho = torch.where(valid, 1.0 / torch.where(valid, sy_all, torch.ones_like(sy_all)), torch.zeros_like(sy_all))
    q, alphas = grad, [None] * memory
    for i in reversed(range(memory)):
        alphas[i] = rho[:, i : i + 1] * instance_dot(S[:, i], q)
        q = q - alphas[i] * Y[:, i]
    gamma = torch.ones_like(sy)
    if scaling:
        newest = pairs > 0
        gamma = torch.where(newest, sy_all[:, -1:] / torch.where(newest, yy_all[:, -1:], torch.ones_like(sy)), gamma)
    r = gamma * q
    for i in range(memory):
        beta = rho[:, i : i + 1] * instance_dot(Y[:, i], r)
        r = r + (alphas[i] - beta) * S[:, i]
    return r, {"S": S, "Y": Y, "x_prev": x, "g_prev": grad, "started": torch.ones_like(started), "pairs": pairs}


def armijo_step(x: Tensor, direction: Tensor, grad: Tensor, ctx: StepContext, initial: float = 1.0,
                c1: float = 1e-4, shrink: float = 0.5, max_backtracks: int = 40, or_stay: bool = False) -> Tensor:
    """Backtracking: the first ``α = initial · shrinkʲ`` with
    ``F(x - α d) <= F(x) - c1 α gᵀd``, per instance ``(B, 1)`` (needs ``ctx.objective``).
    With ``or_stay``, an instance that finds no such α within ``max_backtracks`` gets α = 0
    (it stays), so no accepted step ever increases F."""
    if ctx.objective is None:
        raise ValueError("the Armijo line search needs the objective (problem instances or a closure)")
    slope = instance_dot(grad, direction)
    value = ctx.objective(x)[:, None]
    alpha = torch.full_like(slope, initial)
    for _ in range(max_backtracks):
        trial = ctx.objective(x - alpha * direction)[:, None]
        accepted = torch.isfinite(trial) & (trial <= value - c1 * alpha * slope)
        if bool(accepted.all()):
            break
        alpha = torch.where(accepted, alpha, shrink * alpha)
    else:
        if or_stay:
            trial = ctx.objective(x - alpha * direction)[:, None]
            alpha = torch.where(torch.isfinite(trial) & (trial <= value - c1 * alpha * slope), alpha, 0.0)
    return alpha


def exact_quadratic_step(x: Tensor, direction: Tensor, grad: Tensor, ctx: StepContext) -> Tensor:
    """The exact minimizer along ``-d`` of a quadratic: ``α = gᵀd / dᵀ∇²f d``, with the
    curvature from one extra gradient, ``∇²f d = ∇f(x + d) - ∇f(x)`` (exact for quadratics)."""
    if ctx.gradient is None:
        raise ValueError("the exact step needs the gradient function (problem instances)")
    curvature = instance_dot(direction, ctx.gradient(x + direction) - grad)
    positive = curvature > 0  # else d is numerically zero (at the optimum): stay
    return torch.where(positive, instance_dot(grad, direction) / torch.where(positive, curvature, 1.0), 0.0)


class BFGSRule(UpdateRule):
    """BFGS with a scalar step ``α_k`` (module docstring).

    Args:
        step: ``"constant"`` (α = ``lr``), ``"armijo"`` (backtracking from ``lr``),
            ``"exact"`` (exact on quadratics), ``"hypergradient"`` (α adapted online:
            ``α_k = α_{k-1} + β g_kᵀ d_{k-1}``, the derivative of f(x_k) w.r.t. α_{k-1}).
        lr: the constant step / the first trial step / α_0 (default 1).
        hypergrad_lr: β, for ``step="hypergradient"``.
        initial: ``"identity"``, ``"lipschitz"`` (H_0 = I / L) or ``"curvature"`` (H_0 = I
            rescaled by its first pair to ``(sᵀy / yᵀy) I``: no constant needed).
        eps: the curvature-safeguard ε.
    """

    def __init__(self, step: str = "armijo", lr: float = 1.0, hypergrad_lr: float = 1e-3,
                 initial: str = "identity", eps: float = 1e-8) -> None:
        super().__init__()
        if step not in STEPS:
            raise ValueError(f"Invalid step: {step!r}; choose from {STEPS}")
        if initial not in INITIALS:
            raise ValueError(f"Invalid initial: {initial!r}; choose from {INITIALS}")
        validate_lr(lr, allow_none=False)
        validate_lr(hypergrad_lr, allow_none=False)
        if not eps > 0:
            raise ValueError(f"Invalid eps: {eps}")
        self.step_rule, self.lr, self.hypergrad_lr, self.initial, self.eps = step, lr, hypergrad_lr, initial, eps

    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        state = bfgs_state(x, ctx, self.initial)
        if self.step_rule == "hypergradient":
            state |= {"alpha": torch.full_like(x[:, :1], float(self.lr)), "d_prev": torch.zeros_like(x)}
        return state

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        direction, new_state = bfgs_direction(x, grad, state, self.eps, rescale_first=self.initial == "curvature")
        if self.step_rule == "constant":
            alpha: Tensor | float = self.lr
        elif self.step_rule == "armijo":
            alpha = armijo_step(x, direction, grad, ctx, initial=self.lr)
        elif self.step_rule == "exact":
            alpha = exact_quadratic_step(x, direction, grad, ctx)
        else:
            alpha = state["alpha"] + self.hypergrad_lr * instance_dot(grad, state["d_prev"])
            new_state |= {"alpha": alpha, "d_prev": direction}
        return x - alpha * direction, new_state

    lipschitz_at_init_only = True

    def needs_lipschitz(self) -> bool:
        return self.initial == "lipschitz" or super().needs_lipschitz()

    def extra_repr(self) -> str:
        return f"step={self.step_rule}, lr={self.lr}, initial={self.initial}"


def descent_cosine(grad: Tensor, direction: Tensor) -> Tensor:
    """``τ = gᵀd / (||g|| ||d||)``: ``(B, n), (B, n) -> (B, 1)`` (0 where either is 0)."""
    tiny = torch.finfo(grad.dtype).tiny
    return instance_dot(grad / instance_norm(grad, tiny), direction / instance_norm(direction, tiny))


def coordinate_step_sizes(direction_logits: Tensor, scale_logit: Tensor, grad: Tensor,
                          direction: Tensor, p_max: float, c: float) -> Tensor:
    """Squash raw outputs into the convergence bounds (:class:`LearnedBFGSRule`):

    ``p_i = p̄ (1 + r tanh(o_i))``, ``p̄ = p_max σ(s)``, ``r = c τ``, ``τ = gᵀd / (||g|| ||d||)``.

    Args: ``direction_logits`` o ``(B, n)``; ``scale_logit`` s ``(B, 1)``; ``grad``, ``direction``
    ``(B, n)``. Returns ``p: (B, n)``.
    """
    tau = descent_cosine(grad, direction).clamp(0.0, 1.0)
    center = p_max * torch.sigmoid(scale_logit)
    return center * (1.0 + c * tau * torch.tanh(direction_logits))


class LearnedBFGSRule(CoordinateLSTMRule):
    """BFGS with an LSTM-predicted diagonal step-size matrix ``P_k = diag(p_k)``.

    **Bounds.** With ``d = H g`` (H symmetric positive definite, so ``gᵀd > 0`` for g ≠ 0)
    and ``τ = gᵀd / (||g|| ||d||) ∈ (0, 1]``, every emitted step size satisfies

        p̄ (1 - c τ) <= p_i <= p̄ (1 + c τ),   0 < p̄ < p_max,   c ∈ (0, 1),

    for a per-instance centre ``p̄``. **Derivation.** Write ``P = p̄ (I + E)``,
    ``E = diag(e)``, ``|e_i| <= r := c τ``. Then, by Cauchy–Schwarz,
    ``|gᵀ E d| <= r Σ |g_i d_i| <= r ||g|| ||d|| = c gᵀd``, so

        gᵀ P H g = p̄ (gᵀd + gᵀ E d) >= p̄ (1 - c) gᵀd > 0:

    ``-P H g`` is always a descent direction, with ``cos∠(g, PHg) >= (1 - c) τ / (1 + c τ)``
    (as ``||P d|| <= p̄ (1 + cτ) ||d||``), i.e. the learned scaling can lose at most a
    factor (1 - c)/(1 + c) of BFGS's own angle with the gradient, and the step is bounded,
    ``||x_{k+1} - x_k|| <= p_max (1 + c) ||H g||``. With H's condition number bounded (the
    curvature safeguard) the angle is bounded away from 90°, which is the Zoutendijk
    condition: together with a sufficient-decrease test (``LearnedOptimizer(...,
    safeguard=True)`` / :class:`~l2o.rules.SafeguardedRule`) the iteration converges
    (``g_k → 0``) on L-smooth functions bounded below. The bound is sufficient, not
    necessary: it holds for every sign pattern of E, using only ``τ``, which costs O(n).

    **Network.** Coordinate-wise LSTM (shared with GoMathL2O) over 6 features per coordinate:
    ``g, d, s_{k-1}, y_{k-1}`` each divided by its instance norm, the previous ``p / p_max``,
    and ``τ``. Heads: ``o`` (per coordinate) and ``s`` (its mean over coordinates is the
    instance's scale logit). The output layer starts at **zero**: the untrained rule is BFGS
    with the constant step ``p_max / 2`` (1 by default).

    **Line search (a guarantee on the step length).** With ``line_search=True`` the learned
    step ``P d`` is the first trial of an Armijo search: ``x_{k+1} = x_k − α P d`` with the
    first ``α ∈ {1, ½, ¼, …}`` such that ``F(x_k − α P d) <= F(x_k) − 10⁻⁴ α gᵀP d``. Since
    ``gᵀ P d >= p̄ (1 − c) gᵀd > 0`` (above), ``φ(α) = F(x_k − α P d)`` has
    ``φ'(0) = −gᵀPd < 0`` and the test holds for all small α, so the search ends (after
    40 halvings it stays put, α = 0): **every step decreases F**, or leaves x unchanged;
    on a convex quadratic the iteration cannot diverge. Needs ``ctx.objective`` (problem
    instances, or ``step(closure)`` in a drop-in optimizer); an accepted full step (α = 1)
    is exactly the learned step, so where the learned step is good it costs one objective
    evaluation.

    Args: ``hidden_size``, ``num_layers``; ``p_max`` (2); ``c`` (0.5); ``initial`` H_0
    (default ``"lipschitz"``); ``eps`` the curvature safeguard; ``state_init`` of the
    LSTM (``"zeros"``: this is l2o's own method, with no official code to follow);
    ``line_search`` (default False: the step as trained); ``memory``: 0 for dense BFGS
    (H is n × n), or m > 0 for the **learned L-BFGS**: the same network and bounds on the
    two-loop-recursion direction of the last m pairs (:func:`lbfgs_direction`, H_0 from the
    newest pair, so no L), O(m·n) memory: usable on networks. The bounds' proof only needs
    ``d = H g`` with H positive definite, which the two-loop recursion's H is.
    """

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, p_max: float = 2.0, c: float = 0.5,
                 initial: str = "lipschitz", eps: float = 1e-8, state_init: str = "zeros",
                 line_search: bool = False, memory: int = 0) -> None:
        super().__init__(num_features=6, hidden_size=hidden_size, num_layers=num_layers,
                         heads=("direction", "scale"), state_init=state_init)
        self.line_search = bool(line_search)
        if not isinstance(memory, int) or memory < 0:
            raise ValueError(f"Invalid memory: {memory!r} (0 for dense BFGS, or the number of L-BFGS pairs)")
        self.memory = memory
        if not p_max > 0 or not 0 < c < 1:
            raise ValueError(f"Invalid bounds: need p_max > 0 and 0 < c < 1, got p_max={p_max}, c={c}")
        if initial not in INITIALS:
            raise ValueError(f"Invalid initial: {initial!r}; choose from {INITIALS}")
        self.p_max, self.c, self.initial, self.eps = float(p_max), float(c), initial, float(eps)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    lipschitz_at_init_only = True

    def needs_lipschitz(self) -> bool:
        return self.initial == "lipschitz" and not self.memory

    def config(self) -> dict[str, Any]:
        config = {**super().config(), "p_max": self.p_max, "c": self.c, "initial": self.initial, "eps": self.eps,
                  "line_search": self.line_search}
        return {**config, "memory": self.memory} if self.memory else config

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        quasi_newton = lbfgs_state(x, self.memory) if self.memory else bfgs_state(x, ctx, self.initial)
        return {**quasi_newton, "p": torch.full_like(x, self.p_max / 2), "direction": torch.zeros_like(x)}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        if self.memory:
            direction, bfgs = lbfgs_direction(x, grad, {k: state[k] for k in ("S", "Y", "x_prev", "g_prev", "started",
                                                                               "pairs")}, self.eps)
        else:
            direction, bfgs = bfgs_direction(x, grad, state, self.eps, rescale_first=self.initial == "curvature")
        tiny = torch.finfo(x.dtype).tiny
        started = state["started"]  # no (s, y) pair before the first step: zeros, not x
        s, y = started * (x - state["x_prev"]), started * (grad - state["g_prev"])
        unit = [v / instance_norm(v, tiny) for v in (grad, direction, s, y)]
        tau = descent_cosine(grad, direction).expand_as(x)
        features = torch.stack([*unit, state["p"] / self.p_max, tau], dim=-1)
        return features, {**bfgs, "direction": direction}

    def update(self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State,
               ctx: StepContext) -> tuple[Tensor, State]:
        p = coordinate_step_sizes(outputs["direction"], outputs["scale"].mean(-1, keepdim=True), grad,
                                  state["direction"], self.p_max, self.c)
        step = p * state["direction"]
        if self.line_search:
            if ctx.objective is None:
                raise ValueError("learned BFGS with line_search=True needs the objective: call step(closure)")
            alpha = armijo_step(x, step, grad, ctx, or_stay=True)
            step = torch.where(alpha > 0, alpha * step, 0.0)  # staying is exact, even where the direction overflowed
        return x - step, {"p": p}
