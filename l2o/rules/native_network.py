"""The coordinate-wise LSTM network's deployment forward as one native kernel (CPU, float32).

A step without autograd evaluates, per row (a coordinate),

``h'_l, c'_l = LSTMCell_l([h'_{l-1} | h_l], c_l)`` for l = 1 … L (``h'_0`` = the features),
``raw = W_o ReLU(W_h h'_L + b_h) + b_o`` (the hidden layer when the rule has one),

which torch runs as a dozen passes per layer over a chunk's ``(rows, 4H)`` gates
(:func:`l2o.rules.kernels.stacked_lstm`). ``native_network.cpp`` runs the whole network for a
group of V/4 rows at a time in vector registers of V float32 lanes: 4 rows in AVX-512's (V = 16),
2 in AVX2's (V = 8; :class:`InstructionSet`). The gate products run as broadcast FMAs over the
transposed weights, with the 4 gates of each block of V hidden units in 4 vectors and the last 4
units of all 4 gates in 16/V more, so ``c'``, ``h'`` need no shuffles but one (V/4) × 4 block
transpose for those last units. On AVX-512, σ is ``1 / (1 + 2^t)`` from the exponent ``t = −x log₂e`` that the gate weights, scaled
by ``−log₂e``, give directly: ``2^t = 2^(j/16) 2^⌊q⌋ 2^s`` for ``t`` rounded to a multiple ``q``
of 1/16 (by adding 1.5 · 2^19), a 16-entry table read by ``permutexvar``, ``scalef`` and a
degree-3 polynomial of ``s = t − q`` (``reduce``), the reciprocal by ``rcp14`` and one Newton
step: 13 vector operations, 2 of them additions, off the FMA ports that the products and a
degree-6 polynomial of ``t − ⌊t⌋`` had shared (a 1M-row call 3 ms faster; at most 3.1 ulp from
the exact ``1 / (1 + 2^t)``, 0.46 on average; the scaled weights round once more, which costs
what rounding each weight once more would: over 4096 rows the network's outputs are as close to
a float64 evaluation as the torch path's, and agree with it to rtol 1e-5 for the paper's
networks: tested). AVX2 has neither ``scalef`` nor ``reduce`` nor a 16-entry permute: t is
rounded to a multiple of 1/8 (8-entry table by ``permutevar8x32``), ``⌊q⌋`` is added to the
entry's exponent bits as an integer, t is clamped to [−126, 127], and the reciprocal takes two
Newton steps after ``rcp`` (12 bits), since with one σ(∞) was 1 − 2^−24 and an open forget gate
shrank ``c``: within 2.7 ulp of the exact σ (0.31 on average). ``tanh(c') = 2σ(2c') − 1`` as in
the torch path, and the heads, writing only ``h'``, ``c'`` and ``raw``. The heads (at most 4) and
the hidden layer's last 4 units run on blocks of V/4 rows × 4 units, one vector for the group (each input lane broadcast within its block by ``permute``)
where a vector per row had been 13 (heads) and 12 (hidden) lanes of padding: the same sums in
the same order, so the same bits, and a 1M-row call 2–4 ms faster (58.1 against 61.0, 71.0
against 72.5 ms, alternating builds). It runs with denormals flushed to zero (MXCSR FTZ and DAZ, set in each of its threads
and restored): saturated cells made denormal operands, each a microcode assist (a 1M-parameter
``gomath-lasso-toy`` step: 101 against 79 ms), and a flushed value moves no output by more than
1.2e-38 (tested). Rows are independent and each row's arithmetic is the same wherever it falls, so
any split into chunks or threads gives the same numbers. The groups of rows run in OpenMP
threads: the ``libgomp`` that torch has loaded, so torch's own pool (``torch.set_num_threads``);
a pool of the kernel's own competed with torch's spinning workers for the cores (a
1M-parameter step's network took 137 ms in two Python threads, against 84 ms alone).

For GoMathL2O's shape (3 features, 3 heads) the kernel also runs the rule's whole drop-in step,
``l2o_gomath_rows`` (:func:`gomath_rows`): each group of 4 rows computes its features from
``x`` and ``∇f``, runs the network, and applies the update to ``x`` and the history ``V`` from
the heads' σ, so a step reads ``x``, ``∇f``, ``V`` and the states once and writes only its
outputs, on the group's V/4 rows per vector: the fused call costs what the network alone does, and a
1M-parameter step took 65.9 against 76.1 ms for the chunked one (alternating runs, contended
machine).

It is compiled on first use by :func:`problems.native.compile_library` (the system's C++
compiler, cached in ``$L2O_CACHE_DIR``) for the network's shape (``-DF0 -DH -DL -DK -DHIDDEN``)
and the instruction set (:mod:`problems.native`). It applies to float32 CPU rows without autograd, on CPUs
where torch dispatches AVX-512 or AVX2 (``torch.backends.cpu.get_cpu_capability()``; the widest
runs, ``L2O_NATIVE=avx2`` picks AVX2 on an AVX-512 CPU and ``L2O_NATIVE=0`` none), to
``H = Vq + 4`` (H = 20 in every paper's rule, which both take), with at most 4 heads (3 in every
rule). Weights are packed for one lane count (:attr:`PackedWeights.vector`) and refused by a
kernel of another. Where it does not apply, or the compiler is missing or fails (one warning), the
torch path runs.
"""

from __future__ import annotations

import ctypes
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from l2o.rules import kernels
from problems.native import (AVX2, AVX512, INSTRUCTION_SETS, InstructionSet, available,  # noqa: F401 (re-exported)
                             compile_library, instruction_set)

SOURCE = Path(__file__).with_name("native_network.cpp")
EXPONENT_SCALE = -math.log2(math.e)  # the gates' weights give t = −x log₂e, whose σ is 1 / (1 + 2^t)


@dataclass(frozen=True)
class NetworkShape:
    """What the kernel is compiled for: the LSTM's input width F0, hidden size H, layers L, heads
    K, and whether a ``Linear(H, H) + ReLU`` hidden layer precedes the heads."""

    inputs: int
    hidden: int
    layers: int
    heads: int
    hidden_layer: bool

    def defines(self) -> list[str]:
        return [f"-DF0={self.inputs}", f"-DH={self.hidden}", f"-DL={self.layers}", f"-DK={self.heads}",
                f"-DHIDDEN={int(self.hidden_layer)}"]


def supported(shape: NetworkShape, isa: InstructionSet | None = None) -> bool:
    """Whether the kernel takes ``shape`` (``H = Vq + 4`` for V lanes, at most 4 heads) on ``isa``
    (default :func:`instruction_set`; False where there is none)."""
    isa = instruction_set() if isa is None else isa
    return isa is not None and shape.hidden % isa.vector == 4 and 1 <= shape.heads <= 4


@functools.cache
def library(shape: NetworkShape, isa: InstructionSet) -> ctypes.CDLL | None:
    """The kernel compiled for ``shape`` and ``isa`` (:func:`problems.native.compile_library`:
    cached on disk by source, flags and shape), or None after one warning."""
    kernel = compile_library(SOURCE, [*isa.flags, *shape.defines()], "network", "the native network kernel")
    if kernel is None:
        return None
    kernel.l2o_vector_width.restype = ctypes.c_int
    kernel.vector = kernel.l2o_vector_width()  # the lanes the weights are packed for
    kernel.l2o_network_rows.restype = None
    kernel.l2o_network_rows.argtypes = ([ctypes.c_int64] * 2 + [ctypes.c_void_p] * 6 + [ctypes.c_int64]
                                        + [ctypes.c_void_p] * 8)
    if hasattr(kernel, "l2o_gomath_rows"):  # built for GoMathL2O's shape (3 features, 3 heads)
        kernel.l2o_gomath_rows.restype = None
        kernel.l2o_gomath_rows.argtypes = [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 18
    return kernel


@dataclass(frozen=True)
class PackedWeights:
    """The network's weights as the kernel reads them (float32, contiguous, padded)."""

    gates: tuple[Tensor, ...]  # per layer ``(F_l + H, 4H)``: ``−log₂e [W_ih | W_hh]ᵀ``, g rows doubled, columns grouped
    biases: tuple[Tensor, ...]  # per layer ``(4H,)``: ``b_ih + b_hh``, the same scaling and order
    hidden: tuple[Tensor, Tensor, Tensor, Tensor] | None  # ``(H, H − 4)``, ``(H − 4,)``; the last 4 units ``(H, V)``, ``(V,)``
    heads: tuple[Tensor, Tensor]  # ``(H, V)``, ``(V,)``: as :func:`row_blocked` gives them
    outputs: int  # K, the heads that are not padding
    vector: int  # V, the lanes of the instruction set they are packed for


def gate_columns(hidden: int, vector: int) -> Tensor:
    """The kernel's order of the 4H gate columns (``nn.LSTM``'s order i, f, g, o) for ``vector``
    lanes: for each block of ``vector`` hidden units its i, f, g, o, then the last 4 units of i,
    f, g, o."""
    blocks = hidden // vector
    order = [gate * hidden + unit for block in range(blocks) for gate in range(4)
             for unit in range(block * vector, (block + 1) * vector)]
    order += [gate * hidden + unit for gate in range(4) for unit in range(blocks * vector, hidden)]
    return torch.tensor(order)


def row_blocked(weight: Tensor, bias: Tensor, vector: int) -> tuple[Tensor, Tensor]:
    """``(N, K), (N,) -> (K, V), (V,)`` for N ≤ 4 outputs and V = ``vector`` lanes: row k of ``Wᵀ``
    and ``b``, zero-padded to 4, repeated for V/4 rows (``[w_k0 … w_k3] × V/4``): what the
    kernel's ``blocked_product`` multiplies a block of V/4 rows × 4 inputs by."""
    padded = weight.new_zeros(4, weight.shape[1])
    padded[: weight.shape[0]] = weight
    padded_bias = bias.new_zeros(4)
    padded_bias[: bias.shape[0]] = bias
    return padded.t().repeat(1, vector // 4).contiguous(), padded_bias.repeat(vector // 4)


@torch.no_grad()
def pack_weights(lstm: torch.nn.LSTM, hidden_layer: torch.nn.Linear | None, heads: torch.nn.Linear,
                 vector: int) -> PackedWeights:
    """:class:`PackedWeights` of an ``nn.LSTM``, the optional hidden layer and the heads, for a
    kernel of ``vector`` lanes (``kernel.vector``)."""
    size = lstm.hidden_size
    columns = gate_columns(size, vector)
    gates, biases = [], []
    for parameters in kernels.layer_parameters(lstm):
        weight, bias = kernels.scaled_gates(*parameters)  # the g rows doubled: tanh(g) = 2σ(2g) − 1
        gates.append((weight.double() * EXPONENT_SCALE).float()[columns].t().contiguous())
        biases.append((bias.double() * EXPONENT_SCALE).float()[columns].contiguous())
    hidden = None
    if hidden_layer is not None:
        weight, bias, full = hidden_layer.weight.float(), hidden_layer.bias.float(), size - 4
        hidden = (weight[:full].t().contiguous(), bias[:full].contiguous(),
                  *row_blocked(weight[full:], bias[full:], vector))
    return PackedWeights(tuple(gates), tuple(biases), hidden,
                         row_blocked(heads.weight.float(), heads.bias.float(), vector), heads.out_features, vector)


def _check_packing(kernel: ctypes.CDLL, weights: PackedWeights) -> None:
    if weights.vector != kernel.vector:
        raise ValueError(f"weights packed for {weights.vector} lanes, a kernel of {kernel.vector}")


def network_rows(kernel: ctypes.CDLL, weights: PackedWeights, inputs: Tensor, h: Tensor, c: Tensor,
                 h_out: Tensor, c_out: Tensor) -> Tensor:
    """The network's raw outputs ``(R, K)`` for ``inputs`` ``(R, F0)``, writing the new states;
    head-major (a transposed view of ``(K, R)``, so each head's outputs are contiguous).

    ``h``, ``c``, ``h_out``, ``c_out``: ``(L, R, H)`` float32 views whose rows are contiguous
    and whose layers are one common stride apart (e.g. rows of ``(L, N, H)`` states).
    """
    _check_packing(kernel, weights)
    rows, layer_stride = inputs.shape[0], h.stride(0)
    if any(t.stride()[1:] != (t.shape[2], 1) or t.stride(0) != layer_stride for t in (h, c, h_out, c_out)):
        raise ValueError("network_rows needs states with contiguous rows and one layer stride")
    inputs = inputs.contiguous()
    raw = inputs.new_empty(weights.outputs, rows).t()
    if rows == 0:
        return raw
    kernel.l2o_network_rows(rows, layer_stride, inputs.data_ptr(), h.data_ptr(), c.data_ptr(), h_out.data_ptr(),
                            c_out.data_ptr(), raw.data_ptr(), rows, *_weight_pointers(weights))
    return raw


def _weight_pointers(weights: PackedWeights) -> list:
    """The trailing weight arguments of the kernel's entry points."""
    matrices = (ctypes.c_void_p * len(weights.gates))(*(w.data_ptr() for w in weights.gates))
    biases = (ctypes.c_void_p * len(weights.biases))(*(b.data_ptr() for b in weights.biases))
    hidden = (0,) * 4 if weights.hidden is None else tuple(t.data_ptr() for t in weights.hidden)
    return [matrices, biases, *hidden, weights.heads[0].data_ptr(), weights.heads[1].data_ptr()]


def gomath_rows(kernel: ctypes.CDLL, weights: PackedWeights, x: Tensor, grad: Tensor, history: Tensor,
                h: Tensor, c: Tensor, h_out: Tensor, c_out: Tensor, x_out: Tensor, history_out: Tensor,
                constants: list[float]) -> None:
    """GoMathL2O's whole step on the ``N`` coordinates of one instance in one call: its features,
    the network and its update (:meth:`l2o.rules.gomath.GoMathRule.update` for σ-type heads),
    writing ``x_out``, ``history_out`` and the new states.

    ``x``, ``grad``, ``history``, ``x_out``, ``history_out``: contiguous float32 ``(N,)``;
    ``h``, ``c``, ``h_out``, ``c_out``: contiguous ``(L, N, H)``; ``constants``: the features'
    divisors s₀, s₁, s₂, then λ, α and the heads' coefficients ρ_R, ρ_Q, ρ_B (``native_network.cpp``).
    """
    _check_packing(kernel, weights)
    tensors = (x, grad, history, h, c, h_out, c_out, x_out, history_out)
    if not all(t.is_contiguous() and t.dtype == torch.float32 for t in tensors):
        raise ValueError("gomath_rows needs contiguous float32 tensors")
    values = (ctypes.c_float * 8)(*constants)
    kernel.l2o_gomath_rows(x.shape[0], h.stride(0), *(t.data_ptr() for t in tensors), values,
                           *_weight_pointers(weights))
