"""Learned GD step sizes with the NTK initialization of "Learning Provably Improves the
Convergence of Gradient Descent" (Song, Lin, Xu, NeurIPS 2025).

Per coordinate, a ReLU network maps the detached ``z = [∇f(x_k)_i, (x_k)_i]`` to a step
multiplier (the official ``CoordMathDNN`` of NetX-lab/MathL2OProof-Official):

``h1 = ReLU(W1 z)``, ``W1 ∈ R^{2×2}`` (square);  ``h2 = ReLU(W2 h1)``, ``W2 ∈ R^{H×2}``;
``p = w3ᵀ h2``;  ``P = 2σ(p)``;  ``x_{k+1} = x_k - P ⊙ (0.9999 / L) ∇f(x_k)``.

No layer has a bias (the official model's); ``output_bias=True`` adds ``b3`` to ``p``
(l2o's earlier variant, kept so that entries trained with it still load).

**NTK initialization** (``init="ntk"``, the default): ``W1`` and ``W2`` are orthogonal
(full rank — "non-singular") scaled by ``input_scale`` (e = 100), drawn from a fixed seed;
the output layer is exactly zero. Hence ``p ≡ 0``, ``P ≡ 1``,
and the untrained model **is** gradient descent with step 0.9999/L, whatever the input:
meta-training starts from GD, and the well-conditioned wide layers keep the NTK
non-degenerate, which the paper's training-convergence proof needs.

Evaluation: the hidden layer's input ``ReLU(W1 z)`` is 2-dimensional, so the wide layer is
evaluated exactly by :func:`~l2o.rules.kernels.planar_relu_network` in ``O(log H)`` per
coordinate (never forming the ``(B·n, H)`` activations), with autograd and without.

``init="random"``: PyTorch's default initialization of every layer (output included), a
randomly initialized learned step size. It is not the paper's comparator: the paper compares
with the LSTM Math-L2O-P / PA (:class:`~l2o.rules.MathL2ORule`) and ablates the scale e, as
``scripts/reproduce_ntk.py`` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from l2o.rules.base import State, StepContext, UpdateRule
from l2o.rules.gomath import base_step
from l2o.rules.squash import squash
from l2o.rules.kernels import planar_relu_network

INITS = ("ntk", "random")


class NTKGDRule(UpdateRule):
    """Args:
    hidden_size: H, width of the second hidden layer (1024 in the paper).
    input_scale: e, the scale of the orthogonal hidden layers (100 in the paper).
    init: ``"ntk"`` (zero output layer: the model is GD) or ``"random"``.
    seed: the seed of the hidden layers' orthogonal draw (deterministic init).
    lr: base step α (None: 0.9999 / L).
    output_bias: add a learned bias to ``p`` (not in the official model).
    """

    def __init__(self, hidden_size: int = 1024, input_scale: float = 100.0, init: str = "ntk",
                 seed: int = 0, lr: float | None = None, output_bias: bool = False) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"Invalid init: {init!r}; choose from {INITS}")
        if hidden_size < 2 or not input_scale > 0:
            raise ValueError(f"Invalid hidden_size ({hidden_size}) or input_scale ({input_scale})")
        self.hidden_size, self.input_scale, self.init, self.seed, self.lr = (
            hidden_size, float(input_scale), init, seed, lr)
        self.output_bias = bool(output_bias)
        self.layer1 = nn.Linear(2, 2, bias=False)
        self.layer2 = nn.Linear(2, hidden_size, bias=False)
        self.output = nn.Linear(hidden_size, 1, bias=self.output_bias)
        if init == "ntk":
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for layer in (self.layer1, self.layer2):
                    layer.weight.copy_(self.input_scale * _orthogonal(layer.weight.shape, generator))
                for param in self.output.parameters():
                    param.zero_()

    def config(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden_size, "input_scale": self.input_scale,
                "init": self.init, "seed": self.seed, "lr": self.lr, "output_bias": self.output_bias}

    def logits(self, x: Tensor, grad: Tensor) -> Tensor:
        """``p``: ``(B, n)`` raw outputs (≡ 0 at the NTK init); memory ``O(B·n + H)``."""
        features = torch.stack([grad, x], dim=-1).reshape(-1, 2).detach().to(self.output.weight.dtype)
        first = torch.relu(self.layer1(features))
        p = planar_relu_network(first, self.layer2.weight, self.output.weight[0], self.output.bias)
        return p.reshape(x.shape).to(x.dtype)

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        P = squash(self.logits(x, grad), "sigmoid", 1.0) * base_step(self.lr, ctx, "NTK-GD")
        return x - P * grad, state


def _orthogonal(shape: torch.Size, generator: torch.Generator) -> Tensor:
    """A ``shape`` matrix with orthonormal rows or columns (full rank), from ``generator``."""
    rows, cols = shape
    gaussian = torch.randn(max(rows, cols), min(rows, cols), generator=generator)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))
    return q if rows >= cols else q.T
