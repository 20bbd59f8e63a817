"""Batches of problem instances and the families that sample them.

A problem is ``F(x) = f(x) + r(x)`` with ``f`` smooth (L-Lipschitz gradient) and
``r(x) = λ ||x||_1`` (λ = 0 for smooth problems). An :class:`Instances` object holds B
instances of the same dimension n as stacked tensors, so every method is batched:
``x: (B, n)`` in, ``(B,)`` or ``(B, n)`` out.

A :class:`ProblemFamily` is a frozen dataclass of named parameters (sizes, conditioning,
sparsity, λ, noise, initial-point distribution). ``family.sample(batch, seed)``
reproduces the same instances from ``(parameters, seed)`` alone on any device: data are
generated on the CPU in float64 with a private ``torch.Generator`` and then moved.
Out-of-distribution (OOD) variants are ``family.shifted(name=value, ...)``; the
GoMathL2O paper's objective shift ``F(x) = F₀(x + t)`` is ``family.shifted(objective_shift=t)``
(:class:`ShiftedInstances`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, TypeVar

import torch
from torch import Tensor

from problems.proximal import soft_threshold
from problems.solvers import solve_fista

FamilyT = TypeVar("FamilyT", bound="ProblemFamily")


def check_finite(name: str, value: Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` if ``value`` holds NaN or inf."""
    if not torch.isfinite(value).all():
        raise ValueError(f"{name} contains NaN or inf values")


def squared_spectral_norm(A: Tensor) -> Tensor:
    """``||A_b||_2²`` for ``A: (B, m, n)`` -> ``(B,)``: the largest eigenvalue of the smaller
    Gram matrix (``A Aᵀ`` or ``Aᵀ A``), equal to the squared largest singular value up to
    rounding and 2-3× faster than an SVD."""
    gram = A @ A.mT if A.shape[-2] <= A.shape[-1] else A.mT @ A
    return torch.linalg.eigvalsh(gram)[..., -1]


@dataclasses.dataclass(eq=False)
class Instances(ABC):
    """A batch of B problem instances ``F(x) = f(x) + λ ||x||_1`` over ``x: (B, n)``.

    Subclasses are dataclasses whose tensor fields all have leading dimension B; they
    implement the smooth part (:meth:`f`, :meth:`grad`, :meth:`lipschitz`) and
    :meth:`_solve`, which returns a certified solution in float64.

    Attributes:
        l1: ``(B,)`` L1 weights λ (zeros for smooth problems).
        start: ``(B, n)`` initial points x0.
    """

    l1: Tensor
    start: Tensor

    def __post_init__(self) -> None:
        if self.start.dim() != 2:
            raise ValueError(f"start must have shape (B, n), got {tuple(self.start.shape)}")
        if self.l1.shape != (self.batch_size,):
            raise ValueError(
                f"l1 must have shape (B,) = ({self.batch_size},), got {tuple(self.l1.shape)}"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Tensor):
                if value.shape[:1] != (self.batch_size,):
                    raise ValueError(
                        f"{field.name} must have leading batch dimension {self.batch_size}, "
                        f"got shape {tuple(value.shape)}"
                    )
                check_finite(field.name, value)
        if (self.l1 < 0).any():
            raise ValueError("l1 must be non-negative")
        self._solution: tuple[Tensor, Tensor, Tensor] | None = None

    # ----------------------------------------------------------------- layout
    @property
    def batch_size(self) -> int:
        return self.start.shape[0]

    @property
    def dim(self) -> int:
        return self.start.shape[1]

    @property
    def device(self) -> torch.device:
        return self.start.device

    @property
    def dtype(self) -> torch.dtype:
        return self.start.dtype

    @property
    def objective_shift(self) -> Tensor | None:
        """``(B,)`` the shift t of ``F(x) = F₀(x + t)`` (:class:`ShiftedInstances`); None here."""
        return None

    @property
    def is_composite(self) -> bool:
        """Whether any instance has a nonsmooth part (λ > 0)."""
        return bool((self.l1 > 0).any())

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A copy with every tensor moved to ``device`` / cast to floating ``dtype``."""
        moved = {
            f.name: getattr(self, f.name).to(device=device, dtype=dtype)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        copy = dataclasses.replace(self, **moved)
        if self._solution is not None:
            copy._solution = tuple(v.to(device=device) for v in self._solution)  # type: ignore[assignment]
        return copy

    def select(self, index: int):
        """Instance ``index`` as a batch of one: every tensor field sliced to
        ``[index : index + 1]`` (nested batches too), the cached solution with it."""

        def pick(value: Any) -> Any:
            if isinstance(value, Tensor):
                return value[index : index + 1]
            return value.select(index) if isinstance(value, Instances) else value
        if not -self.batch_size <= index < self.batch_size:
            raise IndexError(f"instance {index} of a batch of {self.batch_size}")
        index %= self.batch_size
        copy = dataclasses.replace(self, **{f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self)})
        if self._solution is not None:
            copy._solution = tuple(v[index : index + 1] for v in self._solution)  # type: ignore[assignment]
        return copy

    def check_design(self, A: Tensor, targets: Tensor, name: str) -> None:
        """Raise ``ValueError`` unless ``A: (B, m, n)`` and ``targets: (B, m)`` fit."""
        if A.dim() != 3 or A.shape[2] != self.dim:
            raise ValueError(f"A must have shape (B, m, n) with n = {self.dim}, got {tuple(A.shape)}")
        if targets.shape != A.shape[:2]:
            raise ValueError(
                f"{name} must have shape (B, m) = {tuple(A.shape[:2])}, got {tuple(targets.shape)}"
            )

    def check_point(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``(B, n)`` matching this batch."""
        if x.shape != (self.batch_size, self.dim):
            raise ValueError(
                f"x must have shape (B, n) = ({self.batch_size}, {self.dim}), "
                f"got {tuple(x.shape)}"
            )

    # ------------------------------------------------------------- objective
    @abstractmethod
    def f(self, x: Tensor) -> Tensor:
        """Smooth part ``f(x)``: ``(B, n) -> (B,)``."""

    @abstractmethod
    def grad(self, x: Tensor) -> Tensor:
        """Analytic gradient of the smooth part: ``(B, n) -> (B, n)``."""

    @abstractmethod
    def lipschitz(self) -> Tensor:
        """``(B,)`` Lipschitz constants L of ``grad``."""

    def r(self, x: Tensor) -> Tensor:
        """Nonsmooth part ``λ ||x||_1``: ``(B, n) -> (B,)``."""
        self.check_point(x)
        return self.l1 * x.abs().sum(dim=-1)

    def prox(self, x: Tensor, step: Tensor | float) -> Tensor:
        """``prox_{step * r}(x)``: soft-thresholding at ``step * λ``.

        ``step`` is a scalar, ``(B,)``, ``(B, 1)`` or ``(B, n)`` (per-coordinate steps).
        """
        self.check_point(x)
        if isinstance(step, Tensor) and step.shape == (self.batch_size,):
            step = step[:, None]
        return soft_threshold(x, step * self.l1[:, None])

    def f_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``f(x)`` and ``∇f(x)`` together (``(B,)``, ``(B, n)``), for families that compute them
        from one pass over their data (least squares)."""
        return self.f(x), self.grad(x)

    def objective(self, x: Tensor) -> Tensor:
        """``F(x) = f(x) + r(x)``: ``(B, n) -> (B,)``."""
        return self.f(x) + self.r(x)

    def objective_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``F(x)`` and ``∇f(x)`` from :meth:`f_and_grad`."""
        value, grad = self.f_and_grad(x)
        return value + self.r(x), grad

    def x0(self) -> Tensor:
        """``(B, n)`` initial points (a fresh copy)."""
        return self.start.clone()

    # --------------------------------------------------------------- optimum
    def duality_gap(self, x: Tensor) -> Tensor:
        """``(B,)`` an upper bound on ``F(x) - F*`` from a dual feasible point (L1 problems)."""
        raise NotImplementedError(f"{type(self).__name__} has no duality gap")

    def _solve_l1(self) -> tuple[Tensor, Tensor, Tensor]:
        """Certified solve of a float64 batch with λ > 0 everywhere: FISTA with restart,
        stopped on the duality gap."""
        if not bool((self.l1 > 0).all()):
            raise ValueError("a batch must have λ > 0 for every instance or for none")
        return solve_fista(
            self.objective, self.grad, self.duality_gap, self.lipschitz(), self.l1,
            torch.zeros_like(self.start),
        )

    @abstractmethod
    def _solve(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(x*, F*, certificate)`` in float64, where ``F(x*) - F* <= certificate``."""

    def _solved(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._solution is None:
            self._solution = self._solve()
        return self._solution

    def optimum(self) -> Tensor:
        """``(B,)`` optimal values F*, solved once per batch in float64 and cached."""
        return self._solved()[1].to(self.dtype)

    def solution(self) -> Tensor:
        """``(B, n)`` a minimizer x* (the one the solver found)."""
        return self._solved()[0].to(self.dtype)

    def optimality_certificate(self) -> Tensor:
        """``(B,)`` an upper bound on ``F(x*) - F*`` for the cached solution (float64):
        a duality gap for L1 problems, 0 for closed forms, a strong-convexity bound for
        Newton solves."""
        return self._solved()[2]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProblemFamily(ABC):
    """A distribution over problem instances, given by named parameters.

    Common parameters (every family): the initial point is
    ``x0 = x0_shift + x0_std * N(0, I)``, and ``objective_shift = t`` replaces each sampled
    objective F₀ by ``F(x) = F₀(x + t)`` (the official code's ``ood_t``: the minimizer moves
    to ``x₀* − t``, F* and L stay). Subclasses add their own parameters and validate them
    in ``__post_init__``; invalid values raise ``ValueError`` naming the parameter.
    """

    x0_std: float = 0.0
    x0_shift: float = 0.0
    objective_shift: float = 0.0

    def __post_init__(self) -> None:
        require(self.x0_std >= 0, "x0_std", self.x0_std, "must be >= 0")
        for name in ("x0_shift", "objective_shift"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and abs(value) < float("inf"), name, value,
                    "must be a finite number")

    def sample(
        self,
        batch: int,
        seed: int = 0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Instances:
        """Draw ``batch`` instances, reproducibly from ``(self, seed)``.

        Generation runs on the CPU in float64 with its own generator, so the same seed
        gives the same instances on every device and for every ``dtype`` (up to rounding).
        """
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        instances = self._generate(batch, generator)
        if self.objective_shift:
            instances = ShiftedInstances.of(instances, self.objective_shift)
        return instances.to(device=device, dtype=dtype)

    @abstractmethod
    def _generate(self, batch: int, generator: torch.Generator) -> Instances:
        """Draw a float64 CPU batch with ``generator``."""

    def _initial_points(self, batch: int, dim: int, generator: torch.Generator) -> Tensor:
        noise = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
        return self.x0_shift + self.x0_std * noise

    def shifted(self: FamilyT, **params: Any) -> FamilyT:
        """The same family with the named parameters replaced (an OOD variant).

        Raises ``TypeError`` for a name the family does not have.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no parameter(s) {unknown}; valid: {sorted(names)}"
            )
        return dataclasses.replace(self, **params)

    def parameters(self) -> dict[str, Any]:
        """The family's parameters as a plain dict (for model cards and reports)."""
        return dataclasses.asdict(self)


def require(condition: bool, name: str, value: Any, requirement: str) -> None:
    """Raise ``ValueError("Invalid {name}: {value} ({requirement})")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"Invalid {name}: {value!r} ({requirement})")


def sparse_gaussian(
    batch: int, dim: int, sparsity: int, generator: torch.Generator
) -> Tensor:
    """``(B, n)`` Gaussian vectors with ``sparsity`` nonzeros at uniform random places."""
    values = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    keys = torch.rand(batch, dim, generator=generator, dtype=torch.float64)
    support = keys.argsort(dim=-1)[:, :sparsity]
    mask = torch.zeros(batch, dim, dtype=torch.float64).scatter_(1, support, 1.0)
    return values * mask


def toeplitz_correlation_root(dim: int, correlation: float) -> Tensor:
    """``(n, n)`` lower Cholesky factor ``C`` of ``Σ_jk = ρ^|j−k|`` (float64): a Gaussian
    row ``g`` times ``Cᵀ`` is an ``N(0, Σ)`` draw. Needs ``0 <= ρ < 1``."""
    index = torch.arange(dim, dtype=torch.float64)
    return torch.linalg.cholesky(correlation ** (index[:, None] - index[None, :]).abs())


@dataclasses.dataclass(eq=False)
class ShiftedInstances(Instances):
    """The objective shift of a batch: ``F(x) = F₀(x + t)`` for a batch ``F₀ = base``.

    This is the GoMathL2O paper's objective OOD test (official ``ood_t``): ``f`` and its
    gradient, ``r(x) = λ ||x + t||_1``, ``prox_{s r}(z) = prox_{s r₀}(z + t) − t`` and the
    duality gap are the base batch's at ``x + t``; the minimizer is ``x₀* − t``; F* and L
    are unchanged. The initial points are the base batch's (a shift of x0 is the separate
    ``x0_shift``). Rules see t through :attr:`l2o.rules.StepContext.shift`.

    Attributes:
        base: the unshifted batch F₀.
        shift: ``(B,)`` the shift t per instance.
    """

    base: Instances
    shift: Tensor

    def __post_init__(self) -> None:
        if self.shift.shape != (self.batch_size,):
            raise ValueError(f"shift must have shape (B,) = ({self.batch_size},), got {tuple(self.shift.shape)}")
        super().__post_init__()

    @classmethod
    def of(cls, base: Instances, shift: float | Tensor) -> "ShiftedInstances":
        """``base`` shifted by ``shift`` (a number or a ``(B,)`` tensor)."""
        shift = torch.as_tensor(shift, dtype=base.dtype, device=base.device)
        shift = shift.expand(base.batch_size).clone()
        return cls(l1=base.l1, start=base.start, base=base, shift=shift)

    @property
    def objective_shift(self) -> Tensor:
        return self.shift

    def _moved(self, x: Tensor) -> Tensor:
        self.check_point(x)
        return x + self.shift[:, None].to(x.dtype)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        return ShiftedInstances.of(self.base.to(device=device, dtype=dtype),
                                   self.shift.to(device=device, dtype=dtype))

    def f(self, x: Tensor) -> Tensor:
        return self.base.f(self._moved(x))

    def grad(self, x: Tensor) -> Tensor:
        return self.base.grad(self._moved(x))

    def f_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.f_and_grad(self._moved(x))

    def lipschitz(self) -> Tensor:
        return self.base.lipschitz()

    def r(self, x: Tensor) -> Tensor:
        return self.base.r(self._moved(x))

    def prox(self, x: Tensor, step: Tensor | float) -> Tensor:
        return self.base.prox(self._moved(x), step) - self.shift[:, None].to(x.dtype)

    def duality_gap(self, x: Tensor) -> Tensor:
        return self.base.duality_gap(self._moved(x))

    def _solve(self) -> tuple[Tensor, Tensor, Tensor]:
        x, value, certificate = self.base._solved()
        return x - self.shift[:, None].to(x.dtype), value, certificate
