"""The row-form batched products equal the plain ones, in value and gradient."""

from __future__ import annotations

import pytest
import torch

from problems.linalg import matvec, rmatvec


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 8), (2, 40, 7)])
def test_matvec_and_rmatvec_equal_einsum(shape, dtype):
    torch.manual_seed(0)
    batch, m, n = shape
    A = torch.randn(batch, m, n, dtype=dtype, requires_grad=True)
    x = torch.randn(batch, n, dtype=dtype, requires_grad=True)
    r = torch.randn(batch, m, dtype=dtype, requires_grad=True)
    pairs = [(matvec(A, x), torch.einsum("bmn,bn->bm", A, x)), (rmatvec(A, r), torch.einsum("bmn,bm->bn", A, r))]
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for fast, plain in pairs:
        assert fast.shape == plain.shape
        torch.testing.assert_close(fast, plain, rtol=tolerance, atol=tolerance)
        probe = torch.randn_like(plain)
        for g_fast, g_plain in zip(torch.autograd.grad((fast * probe).sum(), (A, x, r), allow_unused=True),
                                   torch.autograd.grad((plain * probe).sum(), (A, x, r), allow_unused=True)):
            if g_plain is None:
                assert g_fast is None
            else:
                torch.testing.assert_close(g_fast, g_plain, rtol=tolerance, atol=tolerance)


def test_objective_then_gradient_at_the_same_point_reads_the_data_once(monkeypatch):
    """F(x) then ∇f(x) share A x (what meta-training evaluates each step), values and
    meta-gradients unchanged; a new point, an in-place change or another grad mode recompute."""
    import copy
    import pickle

    import problems.least_squares as least_squares
    from problems import LassoFamily

    instances = LassoFamily.toy().sample(3, seed=0, dtype=torch.float64)
    calls = []
    real = least_squares.matvec
    monkeypatch.setattr(least_squares, "matvec", lambda A, x: calls.append(1) or real(A, x))
    x = instances.x0().requires_grad_(True)
    y = x * 1.0
    (instances.objective(y).sum() + instances.grad(y).square().sum()).backward()
    assert len(calls) == 1
    shared = x.grad.clone()
    x.grad = None
    fresh = y.detach().clone().requires_grad_(True)
    plain = 0.5 * (real(instances.A, fresh) - instances.b).pow(2).sum(-1) + instances.l1 * fresh.abs().sum(-1)
    direct_grad = torch.einsum("bmn,bm->bn", instances.A, real(instances.A, fresh) - instances.b)
    (plain.sum() + direct_grad.square().sum()).backward()
    torch.testing.assert_close(shared, fresh.grad, rtol=1e-12, atol=1e-12)
    z = y.detach().clone()
    instances.f(z)
    z.add_(1.0)  # in place: a new value at the same tensor
    torch.testing.assert_close(instances.f(z), 0.5 * (real(instances.A, z) - instances.b).pow(2).sum(-1))
    with torch.no_grad():
        instances.f(z)
    assert len(calls) == 4  # y once, z before and after the change, z again without grad
    copy.deepcopy(instances), pickle.loads(pickle.dumps(instances))  # the memo is neither copied nor pickled
