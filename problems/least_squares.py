"""Least-squares problems ``F(x) = ½ ||A x - b||² + λ ||x||_1`` and their families.

* :class:`QuadraticFamily` — the unconstrained convex QPs of the NTK/GD paper
  (Gaussian ``A``, ``b``; sizes "m n" = 32×20, 512×400).
* :class:`LeastSquaresFamily` — smooth least squares with a prescribed condition number
  and a planted solution (the BFGS work).
* :class:`LassoFamily` — LASSO as in Math-L2O / GoMathL2O: columns of ``A`` of unit
  norm, a sparse Gaussian ground truth, ``b = A x_true + noise``, λ = 0.1,
  ``x0 ~ N(0, I)``; paper size 250×500 with 50 nonzeros, toy size 20×40 with 5.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from problems.base import (Instances, ProblemFamily, require, sparse_gaussian, squared_spectral_norm,
                           toeplitz_correlation_root)
from problems.linalg import LastProduct, matvec, normal_product, rmatvec


@dataclasses.dataclass(eq=False, kw_only=True)
class LeastSquaresInstances(Instances):
    """``F(x) = ½ ||A x - b||² + λ ||x||_1`` for a batch.

    Attributes:
        A: ``(B, m, n)`` data matrices.
        b: ``(B, m)`` targets.
    """

    A: Tensor
    b: Tensor

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_design(self.A, self.b, "b")
        self._last_residual = LastProduct()

    def residual(self, x: Tensor) -> Tensor:
        """``A x - b``: ``(B, n) -> (B, m)`` (kept for the next call at the same ``x``:
        ``F(x_k)`` then ``∇f(x_k)`` read ``A`` once)."""
        self.check_point(x)
        return self._last_residual(x, lambda point: matvec(self.A, point) - self.b)

    def f(self, x: Tensor) -> Tensor:
        return 0.5 * self.residual(x).pow(2).sum(-1)

    def grad(self, x: Tensor) -> Tensor:
        """``Aᵀ (A x - b)``: from the kept residual at ``x``, else one :func:`normal_product`."""
        if self._last_residual.holds(x):
            return rmatvec(self.A, self.residual(x))
        return self._residual_and_grad(x)[1]

    def f_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``½ ||A x - b||²`` and ``Aᵀ (A x - b)`` from one :func:`normal_product`."""
        residual, grad = self._residual_and_grad(x)
        return 0.5 * residual.pow(2).sum(-1), grad

    def _residual_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``A x - b`` (kept for the next call at ``x``) and ``Aᵀ (A x - b)``, reading ``A`` once."""
        self.check_point(x)
        residual, grad = normal_product(self.A, x, -self.b)
        self._last_residual.put(x, residual)
        return residual, grad

    def lipschitz(self) -> Tensor:
        """``||A||_2²`` (largest squared singular value)."""
        return squared_spectral_norm(self.A)

    def duality_gap(self, x: Tensor) -> Tensor:
        """``F(x) - D(ν)`` with ``D(ν) = -½||ν||² - bᵀν``, ``ν = s (A x - b)`` scaled so
        that ``||Aᵀ ν||_∞ <= λ``. Upper-bounds ``F(x) - F*``. Needs λ > 0."""
        residual = self.residual(x)
        correlation = rmatvec(self.A, residual).abs().amax(-1)
        scale = torch.clamp(self.l1 / correlation.clamp_min(torch.finfo(x.dtype).tiny), max=1.0)
        nu = scale[:, None] * residual
        dual = -0.5 * nu.pow(2).sum(-1) - (self.b * nu).sum(-1)
        return self.objective(x) - dual

    def _solve(self) -> tuple[Tensor, Tensor, Tensor]:
        problem = self.to(dtype=torch.float64)
        if not problem.is_composite:
            x = torch.linalg.lstsq(problem.A.cpu(), problem.b.cpu().unsqueeze(-1), driver="gelsd")
            x = x.solution.squeeze(-1).to(self.device)
            return x, problem.objective(x), torch.zeros_like(problem.l1)
        return problem._solve_l1()


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuadraticFamily(ProblemFamily):
    """``f(x) = ½ ||A x - b||²`` as the official NTK-GD code generates it
    (``optimizees/qp.py`` of NetX-lab/MathL2OProof-Official): Gaussian ``A`` with columns
    scaled to norm ``data_scale``, ``b = A x_true`` with dense ``x_true ~ N(0, I)`` (consistent:
    F* = 0 when m <= n), x0 = 0. The paper's size is m = 20, n = 32 (underdetermined).

    Parameters: ``m`` rows, ``n`` unknowns, ``data_scale`` (objective OOD), the x0
    distribution (default x0 = 0).
    """

    m: int = 20
    n: int = 32
    data_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.m >= 1, "m", self.m, "must be >= 1")
        require(self.n >= 1, "n", self.n, "must be >= 1")
        require(self.data_scale > 0, "data_scale", self.data_scale, "must be > 0")

    def _generate(self, batch: int, generator: torch.Generator) -> LeastSquaresInstances:
        A = torch.randn(batch, self.m, self.n, generator=generator, dtype=torch.float64)
        A = self.data_scale * A / A.norm(dim=1, keepdim=True)
        x_true = torch.randn(batch, self.n, generator=generator, dtype=torch.float64)
        b = torch.einsum("bmn,bn->bm", A, x_true)
        start = self._initial_points(batch, self.n, generator)
        return LeastSquaresInstances(
            A=A, b=b, l1=torch.zeros(batch, dtype=torch.float64), start=start
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeastSquaresFamily(ProblemFamily):
    """``f(x) = ½ ||A x - b||²`` with condition number κ(AᵀA) = ``condition_number``.

    ``A = U diag(σ) Vᵀ`` with Haar-random ``U``, ``V`` and singular values log-spaced
    from ``data_scale`` down to ``data_scale / sqrt(condition_number)``;
    ``b = A x_true + noise_std · N(0, I)`` with ``x_true ~ N(0, I)``. Needs m >= n.
    """

    m: int = 100
    n: int = 50
    condition_number: float = 100.0
    noise_std: float = 0.1
    data_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.n >= 1, "n", self.n, "must be >= 1")
        require(self.m >= self.n, "m", self.m, f"must be >= n = {self.n}")
        require(self.condition_number >= 1, "condition_number", self.condition_number, ">= 1")
        require(self.noise_std >= 0, "noise_std", self.noise_std, "must be >= 0")
        require(self.data_scale > 0, "data_scale", self.data_scale, "must be > 0")

    def _generate(self, batch: int, generator: torch.Generator) -> LeastSquaresInstances:
        def haar(size: int) -> Tensor:
            gauss = torch.randn(batch, size, size, generator=generator, dtype=torch.float64)
            q, r = torch.linalg.qr(gauss)
            return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]

        u = haar(self.m)[:, :, : self.n]
        v = haar(self.n)
        exponents = torch.linspace(0.0, -0.5, self.n, dtype=torch.float64)
        sigma = self.data_scale * self.condition_number**exponents
        A = (u * sigma) @ v.transpose(-1, -2)
        x_true = torch.randn(batch, self.n, generator=generator, dtype=torch.float64)
        noise = torch.randn(batch, self.m, generator=generator, dtype=torch.float64)
        b = torch.einsum("bmn,bn->bm", A, x_true) + self.noise_std * noise
        start = self._initial_points(batch, self.n, generator)
        return LeastSquaresInstances(
            A=A, b=b, l1=torch.zeros(batch, dtype=torch.float64), start=start
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class LassoFamily(ProblemFamily):
    """LASSO ``½ ||A x - b||² + λ ||x||_1`` with the Math-L2O / GoMathL2O generator.

    ``A``: Gaussian with columns scaled to norm ``data_scale``; ``x_true``: Gaussian on
    ``sparsity`` random coordinates; ``b = A x_true + noise_std · N(0, I)``;
    ``x0 = x0_shift + x0_std · N(0, I)`` (InD: x0_std = 1, x0_shift = 0).
    Defaults are the paper's size (250×500, 50 nonzeros, λ = 0.1);
    ``LassoFamily.toy()`` is the 20×40 setting with 5 nonzeros.

    ``correlation = ρ`` > 0 draws the rows of A from ``N(0, Σ)``, ``Σ_jk = ρ^|j−k|``, before
    the column scaling (the correlated design of the LASSO literature, e.g. Friedman,
    Hastie & Tibshirani 2010): neighbouring columns correlate and the problem becomes
    harder for first-order methods. The papers' families have ρ = 0, whose draws are
    unchanged by the parameter.
    """

    m: int = 250
    n: int = 500
    sparsity: int = 50
    l1: float = 0.1
    noise_std: float = 0.0
    data_scale: float = 1.0
    correlation: float = 0.0
    x0_std: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.m >= 1, "m", self.m, "must be >= 1")
        require(self.n >= 1, "n", self.n, "must be >= 1")
        require(0 <= self.sparsity <= self.n, "sparsity", self.sparsity, f"must be in [0, n={self.n}]")
        require(self.l1 > 0, "l1", self.l1, "LASSO needs λ > 0")
        require(self.noise_std >= 0, "noise_std", self.noise_std, "must be >= 0")
        require(self.data_scale > 0, "data_scale", self.data_scale, "must be > 0")
        require(0 <= self.correlation < 1, "correlation", self.correlation, "must be in [0, 1)")

    @classmethod
    def toy(cls, **params) -> "LassoFamily":
        """The papers' toy size: 20×40 with 5 nonzeros."""
        return cls(**{"m": 20, "n": 40, "sparsity": 5, **params})

    def _generate(self, batch: int, generator: torch.Generator) -> LeastSquaresInstances:
        A = torch.randn(batch, self.m, self.n, generator=generator, dtype=torch.float64)
        if self.correlation > 0:
            A = A @ toeplitz_correlation_root(self.n, self.correlation).T
        A = self.data_scale * A / A.norm(dim=1, keepdim=True)
        x_true = sparse_gaussian(batch, self.n, self.sparsity, generator)
        noise = torch.randn(batch, self.m, generator=generator, dtype=torch.float64)
        b = torch.einsum("bmn,bn->bm", A, x_true) + self.noise_std * noise
        start = self._initial_points(batch, self.n, generator)
        l1 = torch.full((batch,), float(self.l1), dtype=torch.float64)
        return LeastSquaresInstances(A=A, b=b, l1=l1, start=start)
