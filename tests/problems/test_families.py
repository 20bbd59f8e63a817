"""Problem families: gradients, prox, certified optima vs cvxpy, seeds, OOD shifts, bad input."""

from __future__ import annotations

import dataclasses

import cvxpy as cp
import numpy as np
import pytest
import torch

from problems import FAMILIES, LassoFamily, LeastSquaresInstances, LogisticInstances, QuadraticFamily
from problems.base import squared_spectral_norm
from problems.proximal import l1_subdifferential_bounds, soft_threshold


def test_grad_matches_autograd(small_batch):
    x = torch.randn(small_batch.batch_size, small_batch.dim, dtype=torch.float64, requires_grad=True)
    (autograd,) = torch.autograd.grad(small_batch.f(x).sum(), x)
    torch.testing.assert_close(small_batch.grad(x.detach()), autograd, rtol=1e-10, atol=1e-12)


def test_lipschitz_bounds_gradient_variation(small_batch):
    x, z = (torch.randn(small_batch.batch_size, small_batch.dim, dtype=torch.float64) for _ in range(2))
    ratio = (small_batch.grad(x) - small_batch.grad(z)).norm(dim=-1) / (x - z).norm(dim=-1)
    assert bool((ratio <= small_batch.lipschitz() * (1 + 1e-9)).all())


@pytest.mark.parametrize("shape", [(3, 20, 40), (3, 40, 20), (2, 7, 7)])
def test_squared_spectral_norm_equals_the_largest_squared_singular_value(shape):
    A = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = torch.linalg.svdvals(A)[:, 0].square()
    torch.testing.assert_close(squared_spectral_norm(A), expected, rtol=1e-12, atol=0)


def test_prox_satisfies_its_definition(lasso_batch):
    """z = prox_{t r}(x) minimizes ½||z - x||² + t λ ||z||_1: 0 ∈ z - x + t ∂(λ||z||_1)."""
    x = 0.3 * torch.randn(lasso_batch.batch_size, lasso_batch.dim, dtype=torch.float64)
    step = torch.rand(lasso_batch.batch_size, dtype=torch.float64) + 0.5
    z = lasso_batch.prox(x, step)
    lower, upper = l1_subdifferential_bounds(z, lasso_batch.l1[:, None])
    residual = (x - z) / step[:, None]
    assert bool((residual >= lower - 1e-12).all() and (residual <= upper + 1e-12).all())
    # and nothing nearby does better
    def value(point):
        return 0.5 * (point - x).pow(2).sum(-1) + step * lasso_batch.r(point)
    for _ in range(20):
        assert bool((value(z) <= value(z + 1e-3 * torch.randn_like(z)) + 1e-15).all())


def test_soft_threshold_closed_form():
    x = torch.tensor([[-3.0, -0.5, 0.0, 0.2, 2.0]])
    torch.testing.assert_close(soft_threshold(x, 1.0), torch.tensor([[-2.0, 0.0, 0.0, 0.0, 1.0]]))


def _cvxpy_optimum(instances) -> np.ndarray:
    values = []
    for i in range(instances.batch_size):
        A = instances.A[i].numpy()
        x = cp.Variable(instances.dim)
        if isinstance(instances, LeastSquaresInstances):
            smooth = 0.5 * cp.sum_squares(A @ x - instances.b[i].numpy())
        else:
            margins = cp.multiply(instances.y[i].numpy(), A @ x)
            smooth = cp.sum(cp.logistic(-margins)) / A.shape[0]
            smooth += 0.5 * float(instances.ridge[i]) * cp.sum_squares(x)
        problem = cp.Problem(cp.Minimize(smooth + float(instances.l1[i]) * cp.norm1(x)))
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
        values.append(problem.value)
    return np.array(values)


def test_optimum_matches_cvxpy(small_batch):
    expected = _cvxpy_optimum(small_batch)
    optimum = small_batch.optimum().numpy()
    np.testing.assert_allclose(optimum, expected, rtol=1e-6, atol=1e-12)  # atol: consistent QPs have F* = 0
    # the certificate is a true upper bound on F(x*) - F*, and small
    assert bool((small_batch.optimality_certificate() <= 1e-8 * np.abs(expected).max()).all())
    torch.testing.assert_close(small_batch.objective(small_batch.solution()), small_batch.optimum())


def test_same_seed_same_instances_different_seed_different(family):
    a, b, c = family.sample(3, seed=11), family.sample(3, seed=11), family.sample(3, seed=12)
    for field in dataclasses.fields(a):
        torch.testing.assert_close(getattr(a, field.name), getattr(b, field.name), rtol=0, atol=0)
    assert not torch.equal(a.A, c.A)


def test_dtype_and_device_follow_request(family):
    batch = family.sample(2, seed=0, device="cpu", dtype=torch.float32)
    x = batch.x0()
    assert x.dtype == torch.float32 and batch.f(x).dtype == torch.float32
    assert batch.optimum().dtype == torch.float32
    double = family.sample(2, seed=0, dtype=torch.float64)
    torch.testing.assert_close(double.A.float(), batch.A)


def test_shifted_changes_only_named_parameters(family):
    name = "x0_std"  # every family has it
    shifted = family.shifted(**{name: 7.0}, x0_shift=2.0)
    before, after = family.parameters(), shifted.parameters()
    assert after[name] == 7.0 and after["x0_shift"] == 2.0
    assert {k: v for k, v in before.items() if k not in (name, "x0_shift")} == {
        k: v for k, v in after.items() if k not in (name, "x0_shift")
    }
    assert family.parameters() == before  # the original is untouched (frozen)


def test_shifted_scales_data_and_start():
    family = LassoFamily.toy()
    base, scaled = family.sample(2, seed=5), family.shifted(data_scale=10.0).sample(2, seed=5)
    torch.testing.assert_close(scaled.A, 10.0 * base.A)
    moved = family.shifted(x0_shift=3.0).sample(2, seed=5)
    torch.testing.assert_close(moved.x0(), base.x0() + 3.0)


def test_correlated_lasso_design():
    """ρ > 0 correlates neighbouring columns as ρ^|j−k| (before the column scaling) and
    leaves every other draw alone; ρ = 0 is the papers' generator."""
    family = LassoFamily(m=4000, n=6, sparsity=2)
    plain, correlated = family.sample(2, seed=3), family.shifted(correlation=0.8).sample(2, seed=3)
    torch.testing.assert_close(correlated.start, plain.start)
    torch.testing.assert_close(correlated.A.norm(dim=1), plain.A.norm(dim=1))  # unit columns
    gram = (correlated.A.mT @ correlated.A).mean(0).double()
    index = torch.arange(6, dtype=torch.float64)
    torch.testing.assert_close(gram, 0.8 ** (index[:, None] - index[None, :]).abs(), atol=0.04, rtol=0)
    assert (plain.A.mT @ plain.A).mean(0).fill_diagonal_(0).abs().max() < 0.04
    # A harder problem for a first-order method: a larger spread of AᵀA's eigenvalues.
    spread = [torch.linalg.eigvalsh(batch.A.mT @ batch.A).log().std() for batch in (plain, correlated)]
    assert spread[1] > 3 * spread[0]


def test_shifted_rejects_unknown_parameter(family):
    with pytest.raises(TypeError, match="no parameter"):
        family.shifted(not_a_parameter=1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LassoFamily(m=0), "Invalid m"),
        (lambda: LassoFamily.toy(sparsity=41), "Invalid sparsity"),
        (lambda: LassoFamily.toy(l1=-1.0), "Invalid l1"),
        (lambda: LassoFamily.toy(correlation=1.0), "Invalid correlation"),
        (lambda: LassoFamily.toy(correlation=-0.1), "Invalid correlation"),
        (lambda: QuadraticFamily(data_scale=0.0), "Invalid data_scale"),
        (lambda: FAMILIES["least_squares"](m=5, n=10), "Invalid m"),
        (lambda: FAMILIES["logistic_l1"](label_noise=0.7), "Invalid label_noise"),
        (lambda: FAMILIES["logistic"](ridge=0.0), "Invalid ridge"),
        (lambda: QuadraticFamily(x0_std=-1.0), "Invalid x0_std"),
    ],
)
def test_invalid_family_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_invalid_sample_arguments_raise():
    with pytest.raises(ValueError, match="batch"):
        LassoFamily.toy().sample(0)
    with pytest.raises(ValueError, match="floating-point"):
        LassoFamily.toy().sample(2, dtype=torch.int64)


def test_wrong_point_shape_raises(small_batch):
    with pytest.raises(ValueError, match=r"shape \(B, n\)"):
        small_batch.f(torch.zeros(small_batch.batch_size, small_batch.dim + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(B, n\)"):
        small_batch.grad(torch.zeros(small_batch.dim, dtype=torch.float64))


def test_non_finite_data_rejected():
    A = torch.randn(2, 5, 3, dtype=torch.float64)
    A[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="A contains NaN or inf"):
        LeastSquaresInstances(A=A, b=torch.zeros(2, 5), l1=torch.zeros(2), start=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="b must have shape"):
        LeastSquaresInstances(A=torch.ones(2, 5, 3), b=torch.zeros(2, 4), l1=torch.zeros(2), start=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="labels y"):
        LogisticInstances(
            A=torch.ones(1, 4, 2), y=torch.zeros(1, 4), ridge=torch.ones(1), l1=torch.zeros(1),
            start=torch.zeros(1, 2),
        )


def test_mixed_smooth_and_composite_batch_refuses_to_solve():
    A = torch.randn(2, 6, 3, dtype=torch.float64)
    batch = LeastSquaresInstances(
        A=A, b=torch.randn(2, 6, dtype=torch.float64), l1=torch.tensor([0.0, 0.1], dtype=torch.float64),
        start=torch.zeros(2, 3, dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="λ > 0 for every instance or for none"):
        batch.optimum()


def test_select_is_one_instance_of_the_batch_with_its_cached_optimum():
    from problems import ShiftedInstances

    batch = LassoFamily.toy().sample(3, seed=0, dtype=torch.float64)
    optimum = batch.optimum()
    for batch_ in (batch, ShiftedInstances.of(batch, 2.0)):
        one = batch_.select(1)
        assert one.batch_size == 1 and one.dim == batch.dim
        x = torch.randn(3, batch.dim, dtype=torch.float64)
        torch.testing.assert_close(one.objective(x[1:2]), batch_.objective(x)[1:2])
    torch.testing.assert_close(batch.select(-1).optimum(), optimum[2:])
    with pytest.raises(IndexError):
        batch.select(3)
