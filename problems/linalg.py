"""Batched matrix-vector products, in the form torch's CPU kernels run fastest.

``torch.bmm(A, x[..., None])`` (and ``einsum("bmn,bn->bm")``, which lowers to it) runs
at about a tenth of the speed of the same product written as row vectors,
``torch.bmm(x[:, None, :], Aᵀ)``: measured 1.42 ms against 0.12 ms for ``A x`` with 32
float32 matrices of 250×500 on a 2-core AMD EPYC, Zen 5 (torch 2.13; 0.10 ms for ``Aᵀ r``; 2.4×
and 4.7× faster in float64). The results are equal to rounding, and autograd's backward
of the row form is again a row-form product.

Under ``torch.compile`` a product of matrices of at least ``OPAQUE_PRODUCT_ELEMENTS``
entries runs as an opaque custom op (``l2o::matvec``, ``l2o::rmatvec``, whose backward is
again those ops): Inductor lowers a CPU ``bmm`` with one row to a multiply and a sum and fuses
it with its neighbours, which for the paper's 32 matrices of 250×500 (16 MB a product, memory-
bound) made fused backward kernels of 5.6–7 ms a call; kept opaque, a compiled paper-size
GoMathL2O training batch ran 1.146× faster (1.08–1.17 over 8 alternating pairs in one process,
2-core Intel Xeon), while at the toy size (20×40) Inductor's fusion is faster (opaque 0.88×),
hence the threshold. Eager calls run the same row-form product either way.

:func:`normal_product` gives ``r = A x + c`` and ``Aᵀ r`` together (a least-squares gradient
``Aᵀ (A x − b)``), and its backward is again one such product. On CPUs with a native kernel
(:mod:`problems.native`) it reads each instance's ``A`` once, row by row, where the two products
read it twice: for the paper's 32 float32 matrices of 250×500 it took 0.58–0.66 ms against
0.99–1.00 ms for the two row-form products (2-core Intel Xeon, scratch timing). A compiled
paper-size GoMathL2O training batch that takes each step's objective and next gradient from one
such product (:func:`l2o.eval.rollout.unroll_objectives`) ran 0.869× the time of the same batch
on the two products with the objective apart (0.839–0.917 over 6 alternating pairs in one
process, same machine); at the toy size, whose products stay traced, 0.993× (0.840–1.057, 16
pairs), and eager paper batches 1.02× (0.95–1.09, 6 pairs: noise).

:class:`LastProduct` keeps the last ``A x`` so that an objective and a gradient at the same
point (meta-training evaluates ``F(x_k)`` and then ``∇f(x_k)``) read the data once; under
``torch.compile`` it steps aside, since the traced graph computes the product once anyway.
"""

from __future__ import annotations

import ctypes
import functools
import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from problems.native import InstructionSet, compile_library, instruction_set


OPAQUE_PRODUCT_ELEMENTS = 1 << 14  # m·n from which a traced product stays an opaque op (see above)


def _row_matvec(A: Tensor, x: Tensor) -> Tensor:
    return torch.bmm(x[:, None, :], A.transpose(1, 2)).squeeze(1)


def _row_rmatvec(A: Tensor, r: Tensor) -> Tensor:
    return torch.bmm(r[:, None, :], A).squeeze(1)


@torch.library.custom_op("l2o::matvec", mutates_args=())
def opaque_matvec(A: Tensor, x: Tensor) -> Tensor:
    """:func:`matvec` as one op that ``torch.compile`` does not trace into."""
    return _row_matvec(A, x)


@torch.library.custom_op("l2o::rmatvec", mutates_args=())
def opaque_rmatvec(A: Tensor, r: Tensor) -> Tensor:
    """:func:`rmatvec` as one op that ``torch.compile`` does not trace into."""
    return _row_rmatvec(A, r)


@opaque_matvec.register_fake
def _(A: Tensor, x: Tensor) -> Tensor:
    return x.new_empty(A.shape[0], A.shape[1])


@opaque_rmatvec.register_fake
def _(A: Tensor, r: Tensor) -> Tensor:
    return r.new_empty(A.shape[0], A.shape[2])


def _save_inputs(ctx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _matvec_backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """``y = A x``: ``∂A = g xᵀ``, ``∂x = Aᵀ g``."""
    A, x = ctx.saved_tensors
    return (grad[:, :, None] * x[:, None, :] if ctx.needs_input_grad[0] else None,
            opaque_rmatvec(A, grad) if ctx.needs_input_grad[1] else None)


def _rmatvec_backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """``y = Aᵀ r``: ``∂A = r gᵀ``, ``∂r = A g``."""
    A, r = ctx.saved_tensors
    return (r[:, :, None] * grad[:, None, :] if ctx.needs_input_grad[0] else None,
            opaque_matvec(A, grad) if ctx.needs_input_grad[1] else None)


opaque_matvec.register_autograd(_matvec_backward, setup_context=_save_inputs)
opaque_rmatvec.register_autograd(_rmatvec_backward, setup_context=_save_inputs)


def _opaque(A: Tensor) -> bool:
    return torch.compiler.is_compiling() and A.shape[-2] * A.shape[-1] >= OPAQUE_PRODUCT_ELEMENTS


def matvec(A: Tensor, x: Tensor) -> Tensor:
    """``A_b x_b`` for each instance: ``(B, m, n), (B, n) -> (B, m)``."""
    return opaque_matvec(A, x) if _opaque(A) else _row_matvec(A, x)


def rmatvec(A: Tensor, r: Tensor) -> Tensor:
    """``A_bᵀ r_b`` for each instance: ``(B, m, n), (B, m) -> (B, n)``."""
    return opaque_rmatvec(A, r) if _opaque(A) else _row_rmatvec(A, r)


NORMAL_PRODUCT_SOURCE = Path(__file__).with_name("normal_product.cpp")


@functools.cache
def _normal_product_library(isa: InstructionSet) -> ctypes.CDLL | None:
    kernel = compile_library(NORMAL_PRODUCT_SOURCE, list(isa.flags), "normal-product",
                             "the native normal-product kernel")
    if kernel is None:
        return None
    kernel.l2o_row_block.restype = ctypes.c_int64
    for entry in (kernel.l2o_normal_product_f32, kernel.l2o_normal_product_f64):
        entry.restype = None
        entry.argtypes = [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 6
    return kernel


def native_normal_product(A: Tensor) -> ctypes.CDLL | None:
    """The native kernel for :func:`normal_product` of ``A`` (contiguous float32 or float64 on
    the CPU, where :func:`problems.native.instruction_set` gives one), else None."""
    if A.device.type != "cpu" or A.dtype not in (torch.float32, torch.float64) or not A.is_contiguous():
        return None
    isa = instruction_set()
    return None if isa is None else _normal_product_library(isa)


def _torch_normal_product(A: Tensor, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    r = _row_matvec(A, x) + c
    return r, _row_rmatvec(A, r)


def _native_normal_product(kernel: ctypes.CDLL, A: Tensor, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    x, c = x.to(A.dtype).contiguous(), c.to(A.dtype).contiguous()
    batch, m, n = A.shape
    r, g = A.new_empty(batch, m), A.new_empty(batch, n)
    blocks = math.ceil(m / kernel.l2o_row_block())
    partial = A.new_empty(batch * blocks * n if blocks > 1 else 0)
    entry = kernel.l2o_normal_product_f32 if A.dtype == torch.float32 else kernel.l2o_normal_product_f64
    entry(batch, m, n, *(t.data_ptr() for t in (A, x, c, r, g, partial)))
    return r, g


@torch.library.custom_op("l2o::normal_product", mutates_args=())
def opaque_normal_product(A: Tensor, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`normal_product` as one op: the native kernel where it applies, else two products."""
    kernel = native_normal_product(A)
    return _torch_normal_product(A, x, c) if kernel is None else _native_normal_product(kernel, A, x, c)


@opaque_normal_product.register_fake
def _(A: Tensor, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    return x.new_empty(A.shape[0], A.shape[1]), x.new_empty(A.shape[0], A.shape[2])


def _save_normal_product(ctx, inputs: tuple[Tensor, Tensor, Tensor], output: tuple[Tensor, Tensor]) -> None:
    ctx.save_for_backward(inputs[0], inputs[1], output[0])


def _normal_product_backward(ctx, grad_r: Tensor | None, grad_g: Tensor | None):
    """``r = A x + c``, ``g = Aᵀ r``: with ``t = ∂r + A ∂g`` (one product, ``(t, Aᵀ t)``),
    ``∂x = Aᵀ t``, ``∂c = t``, ``∂A = t xᵀ + r ∂gᵀ``."""
    A, x, r = ctx.saved_tensors
    grad_r = torch.zeros_like(r) if grad_r is None else grad_r
    grad_g = torch.zeros_like(x) if grad_g is None else grad_g
    t, grad_x = opaque_normal_product(A, grad_g, grad_r)
    grad_A = t[:, :, None] * x[:, None, :] + r[:, :, None] * grad_g[:, None, :] if ctx.needs_input_grad[0] else None
    return grad_A, grad_x if ctx.needs_input_grad[1] else None, t if ctx.needs_input_grad[2] else None


opaque_normal_product.register_autograd(_normal_product_backward, setup_context=_save_normal_product)


def normal_product(A: Tensor, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``r = A_b x_b + c_b`` and ``A_bᵀ r_b`` for each instance: ``(B, m, n), (B, n), (B, m) ->
    (B, m), (B, n)``.

    Eagerly and with nothing to differentiate, the native kernel (reading ``A`` once) called
    directly where it applies, at every size: it ran faster than the two products from 2×2 (9
    against 11 µs) to 32 × 250×500 (0.25 against 0.57 ms in float32; scratch timings).
    Otherwise, for matrices of at least ``OPAQUE_PRODUCT_ELEMENTS`` entries, one opaque op with
    its own backward: the native kernel where it applies; under ``torch.compile`` also where it
    does not (then the op runs the two products). Smaller ones run the two row-form products,
    which Inductor fuses, and which in eager mode cost less than the op's dispatch (about 50 µs
    for a 2×2 matrix).
    """
    if not torch.compiler.is_compiling():
        kernel = native_normal_product(A)
        if kernel is None:
            return _torch_normal_product(A, x, c)
        if not (torch.is_grad_enabled() and (A.requires_grad or x.requires_grad or c.requires_grad)):
            return _native_normal_product(kernel, A, x, c)
    if A.shape[-2] * A.shape[-1] >= OPAQUE_PRODUCT_ELEMENTS:
        return opaque_normal_product(A, x, c)
    return _torch_normal_product(A, x, c)


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

    def holds(self, x: Tensor) -> bool:
        """Whether the next call at ``x`` returns the kept value (never inside a trace)."""
        return (not torch.compiler.is_compiling() and self.key is not None and self.key[0] is x
                and self.key[1:] == (x._version, torch.is_grad_enabled()))

    def __call__(self, x: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        if torch.compiler.is_compiling():  # a traced graph shares the product itself (CSE)
            return compute(x)
        if not self.holds(x):
            self.key, self.value = (x, x._version, torch.is_grad_enabled()), compute(x)
        return self.value

    def put(self, x: Tensor, value: Tensor) -> None:
        """Keep ``value`` as ``compute(x)`` for the next call at ``x`` (outside a trace)."""
        if not torch.compiler.is_compiling():
            self.key, self.value = (x, x._version, torch.is_grad_enabled()), value

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()
