"""Batched matrix-vector products, in the form torch's CPU kernels run fastest.

``torch.bmm(A, x[..., None])`` (and ``einsum("bmn,bn->bm")``, which lowers to it) runs
at about a tenth of the speed of the same product written as row vectors,
``torch.bmm(x[:, None, :], Aᵀ)``: measured 1.42 ms against 0.12 ms for ``A x`` with 32
float32 matrices of 250×500 on a 2-core AVX2 EPYC (torch 2.13; 0.10 ms for ``Aᵀ r``; 2.4×
and 4.7× faster in float64). The results are equal to rounding, and autograd's backward
of the row form is again a row-form product.
"""

from __future__ import annotations

from torch import Tensor


def matvec(A: Tensor, x: Tensor) -> Tensor:
    """``A_b x_b`` for each instance: ``(B, m, n), (B, n) -> (B, m)``."""
    return (x[:, None, :] @ A.transpose(1, 2))[:, 0]


def rmatvec(A: Tensor, r: Tensor) -> Tensor:
    """``A_bᵀ r_b`` for each instance: ``(B, m, n), (B, m) -> (B, n)``."""
    return (r[:, None, :] @ A)[:, 0]
