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
