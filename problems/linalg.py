"""Batched matrix-vector products, in the form torch's CPU kernels run fastest.

``torch.bmm(A, x[..., None])`` (and ``einsum("bmn,bn->bm")``, which lowers to it) runs
at about a tenth of the speed of the same product written as row vectors,
``torch.bmm(x[:, None, :], Aᵀ)``: measured 1.42 ms against 0.12 ms for ``A x`` with 32
float32 matrices of 250×500 on a 2-core AMD EPYC, Zen 5 (torch 2.13; 0.10 ms for ``Aᵀ r``; 2.4×
and 4.7× faster in float64). The results are equal to rounding, and autograd's backward
of the row form is again a row-form product.

:class:`LastProduct` keeps the last ``A x`` so that an objective and a gradient at the same
point (meta-training evaluates ``F(x_k)`` and then ``∇f(x_k)``) read the data once; under
``torch.compile`` it steps aside, since the traced graph computes the product once anyway.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def matvec(A: Tensor, x: Tensor) -> Tensor:
    """``A_b x_b`` for each instance: ``(B, m, n), (B, n) -> (B, m)``."""
    return (x[:, None, :] @ A.transpose(1, 2))[:, 0]


def rmatvec(A: Tensor, r: Tensor) -> Tensor:
    """``A_bᵀ r_b`` for each instance: ``(B, m, n), (B, m) -> (B, n)``."""
    return (r[:, None, :] @ A)[:, 0]


class LastProduct:
    """A one-entry memo of ``compute(x)`` for the very tensor ``x`` it was computed from.

    It hits only when called again with the same tensor object, not modified in place since
    (its version counter), under the same grad mode, so a hit returns exactly what the call
    would compute (with its autograd graph, which both uses then share). It holds one result
    and ``x`` until the next call; copies and pickles start empty.
    """

    def __init__(self) -> None:
        self.key: tuple[Tensor, int, bool] | None = None
        self.value: Tensor | None = None

    def __call__(self, x: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        if torch.compiler.is_compiling():  # a traced graph shares the product itself (CSE)
            return compute(x)
        key = (x, x._version, torch.is_grad_enabled())
        if self.key is not None and self.key[0] is x and self.key[1:] == key[1:]:
            return self.value
        self.key, self.value = key, compute(x)
        return self.value

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
