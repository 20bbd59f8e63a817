"""Compute kernels of the learned rules: exact, faster evaluations of their networks.

Pure functions of tensors (differentiable wherever the network they replace is):

* :func:`stacked_lstm`: one time step of a multi-layer LSTM over rows (the coordinate-wise
  LSTM of every :class:`~l2o.rules.CoordinateLSTMRule`), equal to ``torch.nn.LSTM`` with
  sequence length 1; its elementwise cell can run through ``torch.compile``
  (:func:`compiled_lstm_cell`), which fuses the gate nonlinearities into one pass.
* :func:`planar_relu_network`: ``w3ᵀ ReLU(W2 z) + b3`` for 2-dimensional inputs ``z`` in
  ``O(log H)`` per row instead of ``O(H)`` (the NTK-GD rule's wide hidden layer).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torch import Tensor

#: Rows per chunk of the CPU no-autograd LSTM path: keeps a chunk's gates (rows × 4H) in cache.
LSTM_CHUNK_ROWS = 1 << 14

LSTMCell = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTM cell's elementwise part, in ``torch.nn.LSTM``'s gate order (i, f, g, o).

    Args: ``gates`` ``(R, 4H)`` = ``W_ih x + W_hh h + b``; ``c`` ``(R, H)``.
    Returns ``h' = σ(o) ⊙ tanh(c')`` and ``c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g)``, each ``(R, H)``.
    """
    hidden = c.shape[-1]
    # σ over all gates at once: one contiguous pass beats three strided ones (g's σ unused).
    i, f, _, o = torch.sigmoid(gates).chunk(4, dim=-1)
    c_next = torch.addcmul(f * c, i, torch.tanh(gates[:, 2 * hidden : 3 * hidden]))
    return o * torch.tanh(c_next), c_next


@functools.cache
def compiled_lstm_cell() -> LSTMCell:
    """:func:`lstm_cell` through ``torch.compile`` (compiled once per process and shape)."""
    return torch.compile(lstm_cell, dynamic=None)


def stacked_lstm(
    inputs: Tensor, h: Tensor, c: Tensor, weights: Sequence[tuple[Tensor, Tensor, Tensor]],
    cell: LSTMCell = lstm_cell,
) -> tuple[Tensor, Tensor, Tensor]:
    """One time step of an ``L``-layer LSTM.

    Args:
        inputs: ``(R, F)``; ``h``, ``c``: ``(L, R, H)``.
        weights: per layer ``(W_ih (4H, F_l), W_hh (4H, H), b (4H,))`` with ``b = b_ih + b_hh``.
        cell: :func:`lstm_cell` or :func:`compiled_lstm_cell`'s result.
    Returns: the last layer's output ``(R, H)`` and the new ``h``, ``c``: ``(L, R, H)``.
    """
    hs, cs = [], []
    layer_input = inputs
    for (w_ih, w_hh, bias), h_layer, c_layer in zip(weights, h, c):
        gates = torch.mm(layer_input, w_ih.t()).addmm_(h_layer, w_hh.t()).add_(bias)  # in place: no copies
        layer_input, c_next = cell(gates, c_layer)
        hs.append(layer_input)
        cs.append(c_next)
    return layer_input, torch.stack(hs), torch.stack(cs)


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
