"""How the learned rules turn a raw head output into a bounded coefficient.

The names are the official code's (``NORM_FUNC`` in NetX-lab/GoMathL2O-Official and
NetX-lab/MathL2OProof-Official), so a rule configured as in a paper's YAML file reads the
same here: ``coefficient = SQUASHES[name](raw) · scale``.

=============  ===============  ==========
name           function         range
=============  ===============  ==========
``sigmoid``    ``2 σ(r)``       (0, 2)
``sigmoid1``   ``σ(r)``         (0, 1)
``softplus``   ``log(1 + eʳ)``  (0, ∞)
``exp``        ``eʳ``           (0, ∞)
``eye``        ``r``            ℝ
=============  ===============  ==========
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn.functional import softplus

SQUASHES: dict[str, Callable[[Tensor], Tensor]] = {
    "sigmoid": lambda raw: 2.0 * torch.sigmoid(raw),
    "sigmoid1": torch.sigmoid,
    "softplus": softplus,
    "exp": torch.exp,
    "eye": lambda raw: raw,
}


#: head name -> (squash name, scale), e.g. ``{"P": ("sigmoid", 1.0)}``.
HeadSquashes = dict[str, tuple[str, float]]


def validate_squashes(squashes: HeadSquashes) -> None:
    """Reject an unknown squash name or a non-finite scale of any head."""
    for head, (name, scale) in squashes.items():
        if name not in SQUASHES:
            raise ValueError(f"Invalid {head.lower()}_norm: {name!r}; choose from {sorted(SQUASHES)}")
        if not isinstance(scale, (int, float)) or not abs(float(scale)) < float("inf"):
            raise ValueError(f"Invalid {head.lower()}_scale: {scale!r} (a finite float)")


def squash_config(squashes: HeadSquashes) -> dict[str, str | float]:
    """The constructor arguments that rebuild ``squashes``: ``{head}_norm``, ``{head}_scale``."""
    return {f"{head.lower()}_{key}": value for head, (name, scale) in squashes.items()
            for key, value in (("norm", name), ("scale", scale))}


def squash(raw: Tensor, name: str, scale: float) -> Tensor:
    """``SQUASHES[name](raw) · scale`` (no multiplication for ``scale = 1``: the same numbers,
    one elementwise pass and its backward fewer)."""
    value = SQUASHES[name](raw)
    return value if scale == 1.0 else value * scale
