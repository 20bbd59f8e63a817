"""The activation subspace of a linear layer (AGZO: "Activation-Guided Zeroth-Order
Optimization for LLM Fine-Tuning", Lin, Jiang, Song et al. 2026).

For ``y = W x`` with inputs ``x_b`` (rows of ``X: (N, d_in)``) the gradient of any loss is
``∇_W = Σ_b δ_b x_bᵀ``: its rows lie in ``span{x_b}``, the row space of X. A rank-r
orthonormal basis ``V: (d_in, r)`` of that space is found in one pass by a randomized range
finder (Halko, Martinsson & Tropp 2011, Alg. 4.1): the sketch ``Y = Xᵀ Ω`` with Gaussian
``Ω: (N, r)``, then ``V = qr(Y).Q``. Y is accumulated over the calls of one forward
(``Y = Σ_c X_cᵀ Ω_c`` is the sketch of the stacked inputs), so the activations themselves
are never kept. When r >= rank(X), span(V) is the whole row space (with probability 1).

Perturbations of W inside the subspace are ``U = Z Vᵀ`` with ``Z: (d_out, r)`` standard
Gaussian: ``E[vec U vec Uᵀ] = I ⊗ V Vᵀ``, the projection onto the matrices whose rows lie in
span(V), a space of dimension ``d_out · r``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sketch(inputs: Tensor, rank: int, generator: torch.Generator) -> Tensor:
    """``Xᵀ Ω``: ``inputs: (..., d_in)`` flattened to ``X: (N, d_in)``, ``Ω: (N, rank)`` drawn
    from ``generator`` -> ``(d_in, rank)``."""
    rows = inputs.reshape(-1, inputs.shape[-1])
    omega = torch.randn(rows.shape[0], rank, generator=generator, dtype=rows.dtype, device=generator.device)
    return rows.T @ omega.to(rows.device)


def orthonormal_basis(sketched: Tensor) -> Tensor:
    """An orthonormal basis ``(d_in, r)`` of the column space of ``sketched: (d_in, r)``."""
    return torch.linalg.qr(sketched).Q


def subspace_direction(z: Tensor, basis: Tensor) -> Tensor:
    """``Z Vᵀ``: ``z: (rows, r)``, ``basis: (d_in, r)`` -> ``(rows, d_in)``."""
    return z @ basis.T
