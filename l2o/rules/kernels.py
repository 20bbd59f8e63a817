"""Compute kernels of the learned rules: exact, faster evaluations of their networks.

Pure functions of tensors (differentiable wherever the network they replace is):

* :func:`stacked_lstm`: one time step of a multi-layer LSTM over rows (the coordinate-wise
  LSTM of every :class:`~l2o.rules.CoordinateLSTMRule`), equal to ``torch.nn.LSTM`` with
  sequence length 1, each layer a :class:`FusedLSTMLayer`: one matrix product for both
  weight matrices, σ in place of ``tanh``, and a hand-derived backward.
* :func:`dense`: ``activation(x Wᵀ + b)`` without autograd, through oneDNN's matmul (with
  the activation in its epilogue) on CPUs where torch's MKL can run at half its rate (AMD),
  through torch's BLAS on Intel CPUs (:func:`products_library`).
* :func:`planar_relu_network`: ``w3ᵀ ReLU(W2 z) + b3`` for 2-dimensional inputs ``z`` in
  ``O(log H)`` per row instead of ``O(H)`` (the NTK-GD rule's wide hidden layer).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: Rows per chunk of the CPU no-autograd LSTM path: keeps a chunk's gates (rows × 4H) in cache.
LSTM_CHUNK_ROWS = 1 << 14

#: Coordinates per chunk of a large drop-in step's update (``CoordinateLSTMRule``): each of its
#: temporaries (1 MB of float32) stays in cache and in memory the allocator reuses, where
#: full-size ones at 10M parameters are fresh pages every step; larger than
#: :data:`LSTM_CHUNK_ROWS`, since the update's per-operator overhead is paid once per chunk.
STEP_CHUNK_ROWS = 1 << 18


def tanh_by_sigmoid(x: Tensor, out: Tensor | None = None) -> Tensor:
    """``tanh(x) = 2σ(2x) − 1``, a new tensor (or written into ``out``). On CPUs torch's
    vectorized ``tanh`` costs several times its ``sigmoid`` (9× for 1.3M float32 on a 2-core
    AMD EPYC (Zen 5), torch 2.13), and the identity is exact up to rounding (absolute error
    ≤ 2 ulp(1))."""
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


#: The fused layer's matrix products run fastest when their inner dimension is a multiple of
#: this (8 float32 = one 256-bit register; measured 1.3-1.8x faster at 24 than at 23).
ALIGNMENT = 8


def scaled_gates(w_ih: Tensor, w_hh: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """One layer's ``W = [W_ih | W_hh]`` ``(4H, F + H)`` and ``b`` ``(4H,)`` with the g rows (the
    third quarter, in ``nn.LSTM``'s gate order i, f, g, o) doubled, so one σ over all gates gives
    σ(i), σ(f), σ(o) and, through ``tanh(g) = 2σ(2g) − 1``, tanh(g): what both the fused layers
    (:func:`gate_weights`) and the native kernel (:mod:`~l2o.rules.native_network`) compute
    with. Differentiable."""
    hidden = w_hh.shape[1]
    scale = torch.ones(4 * hidden, dtype=w_ih.dtype, device=w_ih.device)
    scale[2 * hidden : 3 * hidden] = 2.0
    return torch.cat([w_ih, w_hh], dim=1) * scale[:, None], bias * scale


def gate_weights(w_ih: Tensor, w_hh: Tensor, bias: Tensor) -> tuple[Tensor, Tensor | None]:
    """One layer's ``nn.LSTM`` weights as the fused layer takes them: :func:`scaled_gates`' ``W``,
    ``b``. When ``F + H`` is not a multiple of :data:`ALIGNMENT`, the bias becomes a column of
    ``W`` instead, padded with zero columns to the next multiple (``W = [W_ih | W_hh | b | 0 …]``,
    returned bias None; the layer's input then ends in a column of ones, :func:`stacked_lstm`):
    the padding the matrix products want anyway also adds the bias, and its gradient comes out
    of ``dW``. Differentiable (concatenations and a scaling; gradients flow back to
    ``nn.LSTM``'s).
    """
    weight, bias = scaled_gates(w_ih, w_hh, bias)
    if weight.shape[1] % ALIGNMENT == 0:
        return weight, bias
    zeros = weight.new_zeros(weight.shape[0], -(weight.shape[1] + 1) % ALIGNMENT)
    return torch.cat([weight, bias[:, None], zeros], dim=1), None


def layer_parameters(lstm: torch.nn.LSTM) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Each layer's ``W_ih``, ``W_hh`` and ``b_ih + b_hh`` of ``lstm``."""
    return [(getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}"),
             getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")) for k in range(lstm.num_layers)]


def lstm_gate_weights(lstm: torch.nn.LSTM) -> list[tuple[Tensor, Tensor | None]]:
    """:func:`gate_weights` of every layer of ``lstm`` (its two biases summed)."""
    return [gate_weights(*parameters) for parameters in layer_parameters(lstm)]


def cell_forward(s: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The elementwise part of :class:`FusedLSTMLayer`'s forward after the gates' σ.

    ``s`` ``(R, 4H)``: σ of the gates' pre-activations with the g rows doubled
    (:func:`dense` with ``"sigmoid"``); ``c`` ``(R, H)``. Returns ``h'``, ``c'`` and what
    backward needs: ``s``, ``g = 2 s_g − 1`` and ``tanh(c')``.
    """
    hidden = c.shape[1]
    s_i, s_f, s_g, s_o = s.split(hidden, dim=1)
    g = s_g.mul(2).sub_(1)
    c_next = torch.addcmul(s_f * c, s_i, g)
    tanh_c = tanh_by_sigmoid(c_next)
    return s_o * tanh_c, c_next, s, g, tanh_c


def cell_forward_into(s: Tensor, c: Tensor, h_out: Tensor, c_out: Tensor) -> None:
    """:func:`cell_forward` without autograd, writing ``h'`` and ``c'`` into ``h_out``,
    ``c_out`` ``(R, H)`` and keeping nothing for a backward: ``s``'s g block becomes ``g`` in
    place, and ``tanh(c')`` is formed in ``h_out`` itself. The same operations as
    :func:`cell_forward`, so the same numbers, with three allocations and one pass fewer."""
    hidden = c.shape[1]
    s_i, s_f, s_g, s_o = s.split(hidden, dim=1)
    g = s_g.mul_(2).sub_(1)
    torch.mul(s_f, c, out=c_out).addcmul_(s_i, g)
    tanh_by_sigmoid(c_out, out=h_out).mul_(s_o)


def cell_backward(dh: Tensor, dc_next: Tensor, c: Tensor, s: Tensor, g: Tensor, tanh_c: Tensor) -> tuple[Tensor, Tensor]:
    """The elementwise part of :class:`FusedLSTMLayer`'s backward: ``dz`` ``(R, 4H)`` (the
    pre-activations' gradient) and ``dc`` ``(R, H)`` (the previous cell state's)."""
    hidden = c.shape[1]
    s_i, s_f, _, s_o = s.split(hidden, dim=1)
    dc = torch.ops.aten.tanh_backward(dh * s_o, tanh_c).add_(dc_next)
    if torch.compiler.is_compiling():  # traced: Inductor writes each block's dz into its columns
        blocks = [dc * g, dc * c, 2 * dc * s_i, dh * tanh_c]  # (σ' per block: no second pass)
        return torch.cat([torch.ops.aten.sigmoid_backward(block, s_k)
                          for block, s_k in zip(blocks, s.split(hidden, dim=1))], dim=1), dc * s_f
    blocks = torch.empty_like(s)  # written block by block: no concatenation
    torch.mul(dc, g, out=blocks[:, :hidden])
    torch.mul(dc, c, out=blocks[:, hidden : 2 * hidden])
    torch.mul(dc, s_i, out=blocks[:, 2 * hidden : 3 * hidden]).mul_(2)
    torch.mul(dh, tanh_c, out=blocks[:, 3 * hidden :])
    return torch.ops.aten.sigmoid_backward(blocks, s), dc * s_f


def output_affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x Wᵀ + b`` for an output layer of a few units (the heads): ``(R, K), (N, K), (N,) ->
    (R, N)``, as ``nn.Linear`` computes it. Under ``torch.compile`` a broadcast product and a
    sum over K, which Inductor fuses with ``x``'s producer and the heads' consumers: a GEMM
    with N = 3 runs at a quarter of the GEMM rate, and this saves 4% of a compiled training
    batch at the toy LASSO size (1.5% at the paper's). Eagerly ``F.linear``."""
    if not torch.compiler.is_compiling():
        return torch.nn.functional.linear(x, weight, bias)
    out = (x[:, None, :] * weight).sum(-1)
    return out if bias is None else out + bias


#: Whether this torch has oneDNN (read once: dynamo does not trace the query).
ONEDNN_BUILT = torch.backends.mkldnn.is_available()

#: Activations :func:`dense` applies after its product.
ACTIVATIONS = {"none": lambda out: out, "relu": torch.relu_, "sigmoid": torch.sigmoid_}

#: Values of ``L2O_PRODUCTS``, the library that runs the LSTM layers' float32 CPU products.
PRODUCT_LIBRARIES = ("auto", "onednn", "blas")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (``vendor_id``, ``model name``, ``cpu
    family``, ``model``, …); empty where there is no such file (not Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the blank line after the first processor's block
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_vendor() -> str:
    """The CPU's vendor identifier (``GenuineIntel``, ``AuthenticAMD``, …): ``vendor_id`` of
    :func:`cpuinfo` on Linux, else the last word of ``platform.processor()`` (Windows writes
    the vendor there); ``""`` where neither says."""
    if "vendor_id" in (fields := cpuinfo()):
        return fields["vendor_id"]
    words = platform.processor().split()
    return words[-1] if words else ""


def products_library(vendor: str | None = None) -> str:
    """Which library runs :func:`dense`'s float32 CPU products, from ``L2O_PRODUCTS``:
    ``onednn``, ``blas`` (torch's ``mm``: MKL in the x86 wheels), or ``auto`` (the default):
    ``blas`` on an Intel CPU (``vendor``, by default :func:`cpu_vendor`) where torch has MKL,
    else ``onednn``. Measured per CPU: on the AMD Zen 5 MKL's ``sgemm`` takes its AVX2 path
    and oneDNN ran a 2048³ product at 2.2× its rate (459 against 207 GFLOP/s); on the Intel
    Xeon (AVX-512) MKL ran the layers' skinny products faster than oneDNN (2,560 rows, N = 80:
    ``dz W`` 75 against 112 µs) and a compiled toy training batch 1.11× faster per repetition
    (``scripts/compare_official.py --products onednn blas``; the paper size equal within 2%).
    Chosen by vendor, not by a timing probe, so that a machine always runs the same arithmetic.
    Any other value is a ValueError; without oneDNN in torch, ``blas``."""
    choice = os.environ.get("L2O_PRODUCTS", "auto").lower()
    if choice not in PRODUCT_LIBRARIES:
        raise ValueError(f"L2O_PRODUCTS={choice!r}: expected one of {', '.join(PRODUCT_LIBRARIES)}")
    if not ONEDNN_BUILT:
        return "blas"
    if choice == "auto":
        intel = (cpu_vendor() if vendor is None else vendor) == "GenuineIntel"
        return "blas" if intel and torch.backends.mkl.is_available() else "onednn"
    return choice


#: Whether :func:`dense` may run float32 CPU products through oneDNN (:func:`products_library`,
#: read once at import: dynamo does not trace it; :func:`products` changes it for a block).
ONEDNN_PRODUCTS = products_library() == "onednn"


@contextlib.contextmanager
def products(library: str) -> Iterator[None]:
    """Run :func:`dense`'s float32 CPU products through ``library`` (``onednn`` or ``blas``)
    inside the block, whatever :func:`products_library` chose: to time or test both on one
    CPU. A traced graph guards on the choice, so each library's graphs compile once."""
    if library not in PRODUCT_LIBRARIES[1:]:
        raise ValueError(f"products({library!r}): expected onednn or blas")
    if library == "onednn" and not ONEDNN_BUILT:
        raise ValueError("products('onednn'): this torch was built without oneDNN")
    global ONEDNN_PRODUCTS
    chosen, ONEDNN_PRODUCTS = ONEDNN_PRODUCTS, library == "onednn"
    try:
        yield
    finally:
        ONEDNN_PRODUCTS = chosen


def onednn_applies(x: Tensor) -> bool:
    """Whether :func:`dense` runs ``x``'s product through oneDNN: float32 on the CPU, without
    autograd (eagerly, or traced inside :class:`FusedLSTMLayer`), where
    :data:`ONEDNN_PRODUCTS` chose it and ``torch.backends.mkldnn.flags(enabled=False)`` does
    not turn it off (read when a graph is traced)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and ONEDNN_PRODUCTS and torch.backends.mkldnn.enabled)


# oneDNN's ``activation(x Wᵀ + b)`` as an opaque operator, ``l2o::onednn_linear``, so that a
# traced graph calls it as it is (Inductor lowers oneDNN's own matmul only for frozen weights).
# Defined through ``torch.library.Library`` with a plain CPU kernel, not ``custom_op``, whose
# Python wrapper cost 18 µs per call, 3% of a compiled training batch at the toy LASSO size.
_LIBRARY = torch.library.Library("l2o", "DEF")
_LIBRARY.define("onednn_linear(Tensor x, Tensor weight, Tensor? bias, str activation) -> Tensor")


def _onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], "")


def _onednn_linear_shape(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str) -> Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


_LIBRARY.impl("onednn_linear", _onednn_linear, "CPU")
torch.library.register_fake("l2o::onednn_linear", _onednn_linear_shape, lib=_LIBRARY)
onednn_linear = torch.ops.l2o.onednn_linear


def dense(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str = "none") -> Tensor:
    """``activation(x Wᵀ + b)``: ``(R, K), (N, K), (N,) or None -> (R, N)``, without autograd
    (inside :class:`FusedLSTMLayer`, the drop-in step, or traced).

    Where :func:`onednn_applies`, one oneDNN matmul with the bias and σ in its epilogue
    (:func:`onednn_linear`, which a traced graph calls as it is; a ReLU runs after it, since
    oneDNN's maps NaN to 0 where ``torch.relu`` keeps NaN); else a product
    (``addmm`` with a bias) and the activation in place. On AMD Zen CPUs torch's MKL ``sgemm``
    takes its AVX2 code path: on this project's 2-core Zen 5 machine it ran a 2048³ product
    at 207 GFLOP/s where oneDNN ran it at 459, and an LSTM layer's ``σ(xh Wᵀ + b)`` over
    16,384 rows (K = 40, N = 80) in 0.37 against 0.65 ms. ``W`` may be a transposed view (the
    backward's ``dz W``).
    """
    if onednn_applies(x):
        if activation == "relu":  # oneDNN's ReLU maps NaN to 0; torch's, as nn.ReLU, keeps it
            return onednn_linear(x, weight, bias, "none").relu_()
        return onednn_linear(x, weight, bias, activation)
    out = torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
    return ACTIVATIONS[activation](out)


def cell_next_state(s: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`cell_forward`'s ``h'`` and ``c'`` alone, what a step without autograd keeps
    (compiled, one loop that writes nothing else)."""
    h_next, c_next, *_ = cell_forward(s, c)
    return h_next, c_next


@functools.cache
def compiled_cells() -> tuple[Callable, Callable, Callable]:
    """:func:`cell_forward`, :func:`cell_backward` and :func:`cell_next_state` through
    ``torch.compile`` (once per process and shape)."""
    return tuple(torch.compile(cell, dynamic=False) for cell in (cell_forward, cell_backward, cell_next_state))


def saved_rows(x: Tensor) -> tuple[Tensor, bool]:
    """What a layer's backward keeps of its input rows ``x`` ``(R, K)`` for ``dW``: traced,
    where oneDNN applies, ``xᵀ`` (True), else ``x`` (False). oneDNN then runs ``xᵀ dz`` with
    ``dzᵀ`` as a transposed-view weight: 76 against torch's 112 µs for ``dzᵀ x`` at 2,560
    rows, K = 40, and Inductor fuses the transposed copy into its neighbours (eagerly that
    copy, 49 µs, costs what the product saves)."""
    transposed = torch.compiler.is_compiling() and onednn_applies(x)
    return (x.t().contiguous() if transposed else x), transposed


def weight_gradient(dz: Tensor, rows: Tensor, transposed: bool) -> Tensor:
    """``dW = dzᵀ x`` ``(N, K)`` from ``dz`` ``(R, N)`` and :func:`saved_rows`' ``rows``."""
    return dense(rows, dz.t(), None).t() if transposed else dz.t() @ rows


class FusedLSTMLayer(torch.autograd.Function):
    """One LSTM layer, one time step, with a hand-derived backward (first order).

    Forward, for ``xh = [x | h]`` ``(R, F + H)`` (or ``[x | h | 1 | 0 …]`` with the bias in
    ``W``), ``c`` ``(R, H)`` and :func:`gate_weights`' ``W``, ``b``:
    ``s = σ(xh Wᵀ + b)`` ``(R, 4H)``, split into ``s_i, s_f, s_g, s_o``;
    ``g = 2 s_g − 1`` (= tanh of the unscaled g gate);
    ``c' = s_f ⊙ c + s_i ⊙ g``;  ``h' = s_o ⊙ tanh(c')``.

    Backward, from ``dh'`` and ``dc'``:
    ``dc = dc' + dh' ⊙ s_o ⊙ (1 − tanh²(c'))``;
    ``A = [dc ⊙ g, dc ⊙ c, 2 dc ⊙ s_i, dh' ⊙ tanh(c')]``;  ``dz = A ⊙ s ⊙ (1 − s)``
    (σ's derivative for all four blocks: the g block's 2 and the doubled rows make
    ``d tanh(g)``);  ``d xh = dz W``, ``dW = dzᵀ xh`` (traced: ``(xhᵀ dz)ᵀ`` from a saved
    ``xhᵀ``), ``db = Σ_rows dz``, ``d c = dc ⊙ s_f``.

    Against autograd through ``nn.LSTM``'s arithmetic it saves the graph's bookkeeping, one
    of the two matrix products per direction, the gate split's concatenation in backward,
    and both ``tanh`` passes (σ instead). ``compiled`` runs the elementwise parts
    through :func:`compiled_cells`. Equal to ``torch.nn.LSTM`` in values and gradients
    (tested in float32 and float64).
    """

    @staticmethod
    def forward(ctx, xh: Tensor, c: Tensor, weight: Tensor, bias: Tensor | None,
                compiled: bool) -> tuple[Tensor, Tensor]:
        forward_cell = compiled_cells()[0] if compiled else cell_forward
        h_next, c_next, s, g, tanh_c = forward_cell(dense(xh, weight, bias, "sigmoid"), c)
        ctx.has_bias = bias is not None
        rows, ctx.transposed = saved_rows(xh)  # traced: xhᵀ (toy batch 3.5%, paper 5.7%)
        ctx.save_for_backward(rows, c, weight, s, g, tanh_c)
        ctx.compiled = compiled
        return h_next, c_next

    @staticmethod
    @once_differentiable
    def backward(ctx, dh: Tensor | None, dc_next: Tensor | None):
        rows, c, weight, s, g, tanh_c = ctx.saved_tensors
        backward_cell = compiled_cells()[1] if ctx.compiled else cell_backward
        dz, dc = backward_cell(torch.zeros_like(c) if dh is None else dh,
                               torch.zeros_like(c) if dc_next is None else dc_next, c, s, g, tanh_c)
        # dz W through dense (oneDNN: 2x MKL at 16,000 rows)
        return (dense(dz, weight.t(), None), dc, weight_gradient(dz, rows, ctx.transposed),
                dz.sum(0) if ctx.has_bias else None, None)


def layer_rows(inputs: Tensor, h: Tensor, width: int) -> Tensor:
    """A layer's input rows ``[x | h]``, or ``[x | h | 1 | 0 …]`` up to ``width`` columns (the
    bias column of :func:`gate_weights`): ``(R, F), (R, H) -> (R, width)``. Without autograd
    the parts are copied into one new tensor's columns (for a chunk of 16,384 rows with
    F = 3, 34 µs against 95 µs for ``torch.cat``, which copies narrow parts row by row)."""
    features, hidden = inputs.shape[1], h.shape[1]
    padding = width - features - hidden
    if torch.is_grad_enabled():  # one differentiable concatenation
        parts = [inputs, h]
        if padding:
            ones = inputs.new_zeros(inputs.shape[0], padding)
            ones[:, 0] = 1.0
            parts.append(ones)
        return torch.cat(parts, dim=1)
    rows = inputs.new_empty(inputs.shape[0], width)
    rows[:, :features].copy_(inputs)
    rows[:, features : features + hidden].copy_(h)
    if padding:
        rows[:, features + hidden :].zero_()
        rows[:, features + hidden].fill_(1.0)
    return rows


def stacked_lstm(
    inputs: Tensor, h: Tensor, c: Tensor, weights: Sequence[tuple[Tensor, Tensor | None]], compiled: bool = False,
    out: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One time step of an ``L``-layer LSTM (:class:`FusedLSTMLayer` per layer).

    Args:
        inputs: ``(R, F)``; ``h``, ``c``: ``(L, R, H)``.
        weights: per layer :func:`gate_weights`' ``(W (4H, F_l + H), b (4H,))``, or ``W`` with
            the bias and padding columns and ``b = None``.
        compiled: the elementwise parts through ``torch.compile`` (:func:`compiled_cells`).
        out: ``(L, R, H)`` tensors to write the new ``h``, ``c`` into (without autograd: no
            intermediate copies), which are then returned.
    Returns: the last layer's output ``(R, H)`` and the new ``h``, ``c``: ``(L, R, H)``.
    """
    hs, cs = [], []
    layer_input = inputs
    # unbind, not indexing: autograd's backward of per-layer selects sums one zero-filled
    # (L, R, H) gradient per layer, which Inductor evaluates as masked blends computing every
    # layer's gradient for every layer; unbind's backward is one stack (11% of a compiled
    # training batch at the toy LASSO size, 6% at the paper's).
    for layer, ((weight, bias), h_layer, c_layer) in enumerate(zip(weights, h.unbind(0), c.unbind(0))):
        xh = layer_rows(layer_input, h_layer, weight.shape[1])
        if out is not None and not torch.is_grad_enabled():  # straight into the caller's rows
            layer_input, c_next = out[0][layer], out[1][layer]
            gates = dense(xh, weight, bias, "sigmoid")
            if compiled:  # one compiled loop and two copies: 182 against 410 µs for the eager cell
                for target, value in zip((layer_input, c_next), compiled_cells()[2](gates, c_layer)):
                    target.copy_(value)
            else:
                cell_forward_into(gates, c_layer, layer_input, c_next)
        else:
            layer_input, c_next = FusedLSTMLayer.apply(xh, c_layer, weight, bias, compiled)
        hs.append(layer_input)
        cs.append(c_next)
    if out is None:
        return layer_input, torch.stack(hs), torch.stack(cs)
    if torch.is_grad_enabled():
        out[0].copy_(torch.stack(hs))
        out[1].copy_(torch.stack(cs))
    return layer_input, out[0], out[1]


def planar_relu_network(z: Tensor, w2: Tensor, w3: Tensor, b3: Tensor | None = None) -> Tensor:
    """``p = w3ᵀ ReLU(W2 z) + b3`` for ``z: (R, 2)`` with ``z >= 0``, exactly, in ``O(log H)``
    per row.

    ``ReLU(W2 z)`` keeps the neurons ``j`` with ``W2_j · z > 0``, a set that depends only on
    the angle θ of ``z`` in the first quadrant. The ``H`` lines ``W2_j · u(θ) = 0`` cut
    ``[0, π/2]`` into at most ``H + 1`` sectors (a line through 0 crosses the quadrant at
    most once; the table keeps a fixed ``2H + 1`` rows, padded with empty sectors), and on
    sector ``s``

    ``p(z) = v_sᵀ z + b3``,  ``v_s = Σ_{j active on s} w3_j W2_j``.

    So the ``(R, H)`` hidden layer is never formed: θ's sector comes from a sorted search
    and ``v_s`` from a ``(2H + 1) × 2`` table. Where θ lies within rounding of a sector
    boundary, the neuron that switches contributes ``w3_j W2_j · z ≈ 0`` either way, so the
    result differs from the direct evaluation by rounding only. Gradients with respect to
    ``z``, ``W2``, ``w3`` and ``b3`` are the direct network's (the sector table is built from
    detached angles; ReLU's derivative is the same indicator, 0 at 0 as in torch).

    Args: ``z`` ``(R, 2)``, entries ``>= 0`` (a ReLU's output); ``w2`` ``(H, 2)``; ``w3``
    ``(H,)``; ``b3`` ``(1,)`` or None (no output bias). Returns ``(R,)``.
    """
    with torch.no_grad():
        direction = torch.atan2(w2[:, 1], w2[:, 0])
        # θ with W2_j · u(θ) = 0: the direction ± π/2, taken in [0, 2π).
        crossings = torch.cat([direction + math.pi / 2, direction - math.pi / 2]).remainder(2 * math.pi)
        # Crossings outside the quadrant (or of dead neurons) become π/2: empty sectors at the
        # end that no angle reaches. Fixed shapes, so no host-device sync (no masked select).
        inside = (crossings <= math.pi / 2) & (w2.norm(dim=1) > 0).repeat(2)
        boundaries = torch.where(inside, crossings, torch.full_like(crossings, math.pi / 2)).sort().values
        edges = torch.cat([boundaries.new_zeros(1), boundaries, boundaries.new_full((1,), math.pi / 2)])
        middles = (edges[:-1] + edges[1:]) / 2
        active = (w2 @ torch.stack([middles.cos(), middles.sin()])) > 0  # (H, sectors)
        sector = torch.searchsorted(boundaries, torch.atan2(z[:, 1], z[:, 0]).contiguous())
        nonzero = (z != 0).any(-1, keepdim=True)  # at z = 0 no neuron is active (ReLU'(0) = 0)
    table = (active.to(w2.dtype) * w3[:, None]).t() @ w2  # (sectors, 2): v_s
    p = (table[sector] * nonzero * z).sum(-1)
    return p if b3 is None else p + b3
