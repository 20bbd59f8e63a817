"""Logistic regression ``F(x) = (1/m) Σ_i log(1 + exp(-y_i a_iᵀ x)) + ρ/2 ||x||² + λ ||x||_1``.

* :class:`LogisticL1Family` — sparse logistic regression (ρ = 0, λ > 0) as in GoMathL2O.
* :class:`LogisticFamily` — smooth, ρ-strongly convex logistic regression (λ = 0) for
  the BFGS work.

Labels are ±1. A batch has either λ = 0 (smooth; F* by Newton) or ρ = 0 (sparse; F* by
FISTA with a duality-gap certificate); both at once is rejected.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor
from torch.nn.functional import softplus

from problems.base import Instances, ProblemFamily, require, sparse_gaussian, squared_spectral_norm
from problems.linalg import LastProduct, matvec, rmatvec
from problems.solvers import solve_newton


@dataclasses.dataclass(eq=False, kw_only=True)
class LogisticInstances(Instances):
    """Attributes:
    A: ``(B, m, n)`` features (rows a_i).
    y: ``(B, m)`` labels in {-1, +1}.
    ridge: ``(B,)`` ρ >= 0.
    lipschitz_scale: c in the reported constant ``c ||A||_2² / m + ρ``: 1/4 is the
        tight bound; the official GoMathL2O code uses 1 (``||AᵀA|| / m``, 4× larger).
    """

    A: Tensor
    y: Tensor
    ridge: Tensor
    lipschitz_scale: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_design(self.A, self.y, "y")
        if not bool((self.y.abs() == 1).all()):
            raise ValueError("labels y must be -1 or +1")
        if self.ridge.shape != (self.batch_size,) or (self.ridge < 0).any():
            raise ValueError("ridge must be a non-negative (B,) tensor")
        if bool(((self.ridge > 0) & (self.l1 > 0)).any()):
            raise ValueError("an instance cannot have both ridge > 0 and l1 > 0")
        self._last_margins = LastProduct()

    def margins(self, x: Tensor) -> Tensor:
        """``z_i = y_i a_iᵀ x``: ``(B, n) -> (B, m)`` (kept for the next call at the same ``x``)."""
        self.check_point(x)
        return self._last_margins(x, lambda point: self.y * matvec(self.A, point))

    def f(self, x: Tensor) -> Tensor:
        loss = softplus(-self.margins(x)).mean(-1)
        return loss + 0.5 * self.ridge * x.pow(2).sum(-1)

    def grad(self, x: Tensor) -> Tensor:
        """``-(1/m) Aᵀ (y ⊙ σ(-z)) + ρ x``."""
        weights = self.y * torch.sigmoid(-self.margins(x)) / self.A.shape[1]
        return -rmatvec(self.A, weights) + self.ridge[:, None] * x

    def hessian(self, x: Tensor) -> Tensor:
        """``(1/m) Aᵀ diag(σ(z) σ(-z)) A + ρ I``: ``(B, n) -> (B, n, n)``."""
        z = self.margins(x)
        curvature = torch.sigmoid(z) * torch.sigmoid(-z) / self.A.shape[1]
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return torch.einsum("bmi,bm,bmj->bij", self.A, curvature, self.A) + self.ridge[:, None, None] * eye

    def lipschitz(self) -> Tensor:
        """``c ||A||_2² / m + ρ`` with ``c = lipschitz_scale`` (tight: c = 1/4)."""
        return self.lipschitz_scale * squared_spectral_norm(self.A) / self.A.shape[1] + self.ridge

    def duality_gap(self, x: Tensor) -> Tensor:
        """Gap to the dual ``D(θ) = (1/m) Σ H(θ_i)`` (binary entropy, nats) at
        ``θ = s σ(-z)`` scaled so that ``||(1/m) Aᵀ (y ⊙ θ)||_∞ <= λ``. Needs ρ = 0, λ > 0."""
        theta = torch.sigmoid(-self.margins(x))
        correlation = rmatvec(self.A, self.y * theta).abs().amax(-1)
        correlation = correlation / self.A.shape[1]
        scale = torch.clamp(self.l1 / correlation.clamp_min(torch.finfo(x.dtype).tiny), max=1.0)
        theta = scale[:, None] * theta
        entropy = -(torch.xlogy(theta, theta) + torch.xlogy(1 - theta, 1 - theta)).mean(-1)
        return self.objective(x) - entropy

    def _solve(self) -> tuple[Tensor, Tensor, Tensor]:
        problem = self.to(dtype=torch.float64)
        if bool((problem.l1 > 0).all()):
            return problem._solve_l1()
        if bool((problem.ridge > 0).all()):
            zeros = torch.zeros_like(problem.start)
            return solve_newton(problem.f, problem.grad, problem.hessian, problem.ridge, zeros)
        raise ValueError(
            "F* needs every instance of a batch to have l1 > 0 (sparse) or ridge > 0 (smooth)"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassificationFamily(ProblemFamily):
    """Shared generator of the logistic families: Gaussian features
    ``A ~ N(0, data_scale²)``, labels ``y = sign(A x_true)`` from a ``sparsity``-sparse
    ``x_true``, each flipped with probability ``label_noise``; weights ``l1`` (λ) and
    ``ridge`` (ρ), of which a subclass makes exactly one positive."""

    m: int = 200
    n: int = 50
    sparsity: int = 10
    l1: float = 0.0
    ridge: float = 0.0
    label_noise: float = 0.1
    data_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.m >= 1, "m", self.m, "must be >= 1")
        require(self.n >= 1, "n", self.n, "must be >= 1")
        require(1 <= self.sparsity <= self.n, "sparsity", self.sparsity, f"must be in [1, n={self.n}]")
        require(0 <= self.label_noise < 0.5, "label_noise", self.label_noise, "must be in [0, 0.5)")
        require(self.data_scale > 0, "data_scale", self.data_scale, "must be > 0")

    def _generate(self, batch: int, generator: torch.Generator) -> LogisticInstances:
        A = self.data_scale * torch.randn(batch, self.m, self.n, generator=generator, dtype=torch.float64)
        x_true = sparse_gaussian(batch, self.n, self.sparsity, generator)
        y = torch.sign(torch.einsum("bmn,bn->bm", A, x_true))
        y = torch.where(y == 0, torch.ones_like(y), y)
        flips = torch.rand(batch, self.m, generator=generator, dtype=torch.float64) < self.label_noise
        return LogisticInstances(
            A=A,
            y=torch.where(flips, -y, y),
            ridge=torch.full((batch,), float(self.ridge), dtype=torch.float64),
            l1=torch.full((batch,), float(self.l1), dtype=torch.float64),
            start=self._initial_points(batch, self.n, generator),
            lipschitz_scale=self._lipschitz_scale(),
        )

    def _lipschitz_scale(self) -> float:
        """c of the reported Lipschitz constant (see :class:`LogisticInstances`)."""
        return 0.25


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogisticL1Family(ClassificationFamily):
    """Sparse logistic regression (ρ = 0, λ = ``l1``) on synthetic Gaussian data, as the
    official GoMathL2O code generates it (``optimizees/logistic_l1.py``): m = 1000 samples,
    n = 50 features, 20 nonzeros, λ = 0.1, labels ``sign(A x_true)`` without noise,
    x0 = ``x0_shift + x0_std · N(0, I)`` (InD: x0_std = 1), and the Lipschitz constant it
    reports, ``||AᵀA|| / m`` (``lipschitz_bound="official"``; 4× the tight ``||A||² / (4m)``,
    ``"tight"``): the step size of a model trained on it depends on that choice.
    """

    m: int = 1000
    n: int = 50
    sparsity: int = 20
    l1: float = 0.1
    label_noise: float = 0.0
    x0_std: float = 1.0
    lipschitz_bound: str = "official"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.l1 > 0, "l1", self.l1, "sparse logistic regression needs λ > 0")
        require(self.ridge == 0, "ridge", self.ridge, "sparse logistic regression has ρ = 0")
        require(self.lipschitz_bound in ("official", "tight"), "lipschitz_bound", self.lipschitz_bound,
                "must be 'official' (||AᵀA||/m) or 'tight' (||A||²/(4m))")

    def _lipschitz_scale(self) -> float:
        return 1.0 if self.lipschitz_bound == "official" else 0.25


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogisticFamily(ClassificationFamily):
    """Smooth ρ-strongly convex logistic regression (λ = 0, ρ = ``ridge``), dense truth."""

    sparsity: int = 50
    ridge: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.ridge > 0, "ridge", self.ridge, "must be > 0 (strong convexity)")
        require(self.l1 == 0, "l1", self.l1, "smooth logistic regression has λ = 0")
