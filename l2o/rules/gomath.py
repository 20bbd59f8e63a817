"""GoMathL2O (Song, Lin et al., CVPR 2024): gradient-only features, gradient-based history.

Per coordinate, the LSTM sees only ``[∇f(x_k), lower, upper]`` (the gradient and the two
ends of ∂(λ||x_k||_1)), each divided by its norm at k = 0 — never ``x_k`` itself, which
keeps the input bounded under objective and initial-point shifts. The features are not
detached (the official code's ``detach_grad=False``). Heads, squashed as the official
``GOMathL2O`` model does (:mod:`l2o.rules.squash`; defaults: its LASSO configuration):

``R = r_norm(r) · r_scale · α``  (α = ``lr`` or 0.9999 / L),
``Q = q_norm(q) · q_scale``,  ``B = b_norm(b) · b_scale``;

update with history ``V`` (V_0 = 0):

``u = x_k - R ⊙ ∇f(x_k) - Q ⊙ V_k``,  ``x_{k+1} = prox_{R λ ||.||_1}(u)``,
``V_{k+1} = B ⊙ V_k + (1 - B) ⊙ (x_k - x_{k+1})``.

LASSO (``configs/1_lasso_training_wo_xk_set.yaml``): ``sigmoid`` (2σ), ``sigmoid``,
``sigmoid1`` (σ), scales 1. Sparse logistic (``logistic_training_wo_xk_set.yaml``):
``softplus`` for all three with ``q_scale = 10`` (:meth:`GoMathRule.logistic`).
Weights start as the official ``_init_parameters``: Xavier-uniform matrices, zero biases.
The optional bias heads b3, b4 of the official code (off in every paper configuration)
are not included.

A drop-in step of a large float32 model on an AVX-512 or AVX2 CPU with σ-type heads (``sigmoid``,
``sigmoid1``: every LASSO configuration) runs whole in the native kernel
(:func:`l2o.rules.native_network.gomath_rows`): features, network and update for 4 (2) coordinates
at a time, reading ``x``, ``∇f`` and ``V`` once, where the chunked step ran a dozen torch passes
over them (equal to it to a few ulps of the largest coordinate: tested).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor, nn

from l2o.features import gradient_feature_scales, gradient_features
from l2o.rules import kernels, native_network
from l2o.rules.base import State, StepContext, step_size, validate_lr
from l2o.rules.lstm import CoordinateLSTMRule
from l2o.rules.squash import squash, squash_config, validate_squashes

SAFE_STEP = 0.9999

#: The squashes ``ρ σ(raw)`` whose steps the native kernel runs whole: ρ = this × the head's scale.
SIGMOID_MULTIPLIERS = {"sigmoid": 2.0, "sigmoid1": 1.0}


def base_step(lr: float | None, ctx: StepContext, rule: str) -> Tensor | float:
    """The base step α of the learned rules: ``lr``, else ``0.9999 / L`` (``(B, 1)``)."""
    return lr if lr is not None else SAFE_STEP * step_size(None, ctx, rule)


def xavier_init(module: nn.Module) -> None:
    """The official ``_init_parameters``: Xavier-uniform weight matrices, zero biases."""
    for name, param in module.named_parameters():
        if "weight" in name:
            nn.init.xavier_uniform_(param)
        else:
            nn.init.zeros_(param)


class GoMathRule(CoordinateLSTMRule):
    """GoMathL2O.

    Args:
        hidden_size, num_layers: the LSTM's (20, 2).
        lr: base step α (None: 0.9999 / L from the problem, or
            ``LearnedOptimizer(lipschitz=...)``).
        r_norm, q_norm, b_norm, r_scale, q_scale, b_scale: the heads' squashes and scales.
        state_init: ``"randn"`` (official) or ``"zeros"``.
    """

    coordinatewise = True

    def __init__(self, hidden_size: int = 20, num_layers: int = 2, lr: float | None = None,
                 r_norm: str = "sigmoid", q_norm: str = "sigmoid", b_norm: str = "sigmoid1",
                 r_scale: float = 1.0, q_scale: float = 1.0, b_scale: float = 1.0,
                 state_init: str = "randn") -> None:
        super().__init__(num_features=3, hidden_size=hidden_size, num_layers=num_layers,
                         heads=("R", "Q", "B"), state_init=state_init)
        validate_lr(lr)
        self.squashes = {"R": (r_norm, r_scale), "Q": (q_norm, q_scale), "B": (b_norm, b_scale)}
        validate_squashes(self.squashes)
        self.lr = lr
        xavier_init(self)

    @classmethod
    def logistic(cls, **config: Any) -> "GoMathRule":
        """The official sparse-logistic configuration: softplus heads, ``q_scale = 10``."""
        return cls(**{"r_norm": "softplus", "q_norm": "softplus", "b_norm": "softplus",
                      "q_scale": 10.0, **config})

    def config(self) -> dict[str, Any]:
        return {**super().config(), "lr": self.lr, **squash_config(self.squashes)}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        return {"history": torch.zeros_like(x), "feature_scale": x.new_zeros(x.shape[0], 3)}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        features, scale = gradient_features(grad, ctx.nonsmooth_point(x), ctx.l1, state["feature_scale"])
        return features, {"feature_scale": scale}

    def instance_statistics(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> State:
        """The feature scales over all coordinates, until the gradient's is set (k = 0). The l1
        bounds' scales are set in the same pass (λ > 0: the bounds are ±λ, never zero) or stay 0
        (λ = 0: the bounds are zero everywhere, and so is each chunk's norm)."""
        scale = state["feature_scale"]
        if bool((scale[:, 0] > 0).all()):  # a chunked step runs on the CPU: no device sync
            return {}
        scale = gradient_feature_scales(grad, ctx.nonsmooth_point(x), ctx.l1, scale, kernels.STEP_CHUNK_ROWS)
        return {"feature_scale": scale}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        R, Q, B = (squash(outputs[head], *self.squashes[head]) for head in ("R", "Q", "B"))
        R = R * base_step(self.lr, ctx, "GoMathL2O")
        history = state["history"]
        x_next = ctx.prox(x - R * grad - Q * history, R)
        return x_next, {"history": B * history + (1.0 - B) * (x - x_next)}

    def _chunked_step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        """A drop-in step of one large model: features, network and update in one native call
        (:func:`native_network.gomath_rows`) where the kernel applies (float32 on an AVX-512 or AVX2 CPU,
        σ-type heads, as every LASSO configuration has, and no objective shift), reading
        ``x``, ``grad`` and the history once and writing only the step's outputs; else the
        base class's chunks. Equal to :meth:`update` of :meth:`network` of :meth:`features` up
        to the kernel's rounding (tested)."""
        kernel = self._native_step_kernel(x, ctx)
        if kernel is None:
            return super()._chunked_step(x, grad, state, ctx)
        state = {**state, **self.instance_statistics(x, grad, state, ctx)}
        h, c = self._network_states(state["h"], state["c"], x.shape[1])
        h_next, c_next = self._next_states(h, c, ctx)
        x_next, history_next = self._output_like(x, ctx), self._output_like(x, ctx)
        divisors = state["feature_scale"].clamp_min(torch.finfo(x.dtype).tiny)[0].tolist()
        coefficients = [SIGMOID_MULTIPLIERS[name] * scale for name, scale in map(self.squashes.get, self.heads)]
        constants = [*divisors, float(ctx.l1), float(base_step(self.lr, ctx, "GoMathL2O")), *coefficients]
        native_network.gomath_rows(kernel, self._native_weights(kernel), x[0], grad[0].contiguous(),
                                   state["history"][0].contiguous(), h.contiguous(), c.contiguous(), h_next, c_next,
                                   x_next[0], history_next[0], constants)
        return x_next, {**state, "history": history_next, "h": h_next, "c": c_next}

    def _native_step_kernel(self, x: Tensor, ctx: StepContext) -> ctypes.CDLL | None:
        """The native kernel when it runs this rule's whole step on ``x`` ``(1, N)``, else None:
        never for a subclass that changes the features or the update, which the kernel would
        bypass."""
        own = all(getattr(type(self), name) is getattr(GoMathRule, name)
                  for name in ("features", "instance_statistics", "update", "extra_state"))
        if (not own or ctx.shift is not None or x.dtype != torch.float32 or torch.as_tensor(ctx.l1).numel() != 1
                or any(self.squashes[head][0] not in SIGMOID_MULTIPLIERS for head in self.heads)):
            return None
        kernel = self._native_kernel(x)
        return kernel if kernel is not None and hasattr(kernel, "l2o_gomath_rows") else None
