"""The coordinate-wise LSTM shared by every learned rule in l2o.

Every coordinate of every instance is one row through the same small network
(Andrychowicz et al. 2016; Math-L2O; GoMathL2O), so a rule trained on ``(B, n)`` batches
applies to a model with any number of parameters N:

``features (B, n, F) -> LSTM(F -> H, num_layers) -> Linear(H, H) + ReLU -> Linear(H, K)``

giving K raw head outputs per coordinate. Subclasses choose the features, name the
heads, and turn head outputs into an update. The LSTM's hidden and cell states are kept
in the rule state as ``h``, ``c``: ``(num_layers, B·n, H)``.

The weights live in a ``torch.nn.LSTM`` (its parameter names and layout, so checkpoints
are plain ``nn.LSTM`` weights); the step itself is :func:`~l2o.rules.kernels.stacked_lstm`
(equal to ``nn.LSTM``, tested), which on the CPU without autograd runs in chunks of
``LSTM_CHUNK_ROWS`` coordinates (a GPU takes them all at once), and whose gate
nonlinearities go through ``torch.compile`` after :meth:`CoordinateLSTMRule.compile_kernels`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from l2o.rules import kernels
from l2o.rules.base import State, StepContext, UpdateRule


class CoordinateLSTMRule(UpdateRule):
    """Base class of learned coordinate-wise rules.

    Subclasses set ``heads`` (names of the per-coordinate outputs) and implement
    :meth:`features`, :meth:`update` and optionally :meth:`extra_state`.

    Args:
        num_features: F, features per coordinate.
        hidden_size: H (20 in the papers).
        num_layers: LSTM depth (2 in the papers).
    """

    heads: tuple[str, ...] = ()

    def __init__(self, num_features: int, hidden_size: int = 20, num_layers: int = 2) -> None:
        super().__init__()
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"Invalid LSTM size: hidden_size={hidden_size}, num_layers={num_layers}")
        self.num_features = num_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(num_features, hidden_size, num_layers)
        self.hidden = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU())
        self.out = nn.Linear(hidden_size, len(self.heads))
        self.compiled = False

    def compile_kernels(self, enabled: bool = True) -> "CoordinateLSTMRule":
        """Run the LSTM's gate nonlinearities through ``torch.compile`` (one fused pass;
        needs a C++ compiler on CPU, compiles once per shape). Off by default."""
        self.compiled = bool(enabled)
        return self

    # ------------------------------------------------------------ subclass API
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this rule (stored in zoo cards)."""
        return {"hidden_size": self.hidden_size, "num_layers": self.num_layers}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        """Rule-specific state besides the LSTM's."""
        return {}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        """``(B, n, F)`` network inputs, and state updates they imply (e.g. scales)."""
        raise NotImplementedError

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        """The next point from the raw head outputs (each ``(B, n)``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the rule
    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        rows = x.shape[0] * x.shape[1]
        zeros = x.new_zeros(self.num_layers, rows, self.hidden_size)
        return {"h": zeros, "c": zeros.clone(), **self.extra_state(x, ctx)}

    def network(self, features: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, n, F) -> (B, n, K)`` raw outputs and the new ``h``, ``c``."""
        batch, dim, width = features.shape
        if width != self.num_features:
            raise ValueError(f"{type(self).__name__} expects {self.num_features} features, got {width}")
        if h.shape[1] != batch * dim:
            raise ValueError(
                f"rule state is for {h.shape[1]} coordinates but x has {batch * dim}; "
                "was the state created for other parameters?"
            )
        dtype = self.out.weight.dtype  # e.g. a float32 zoo rule driving float64 parameters
        rows = batch * dim
        inputs, h, c = features.reshape(rows, width).to(dtype), h.to(dtype), c.to(dtype)
        weights = [(getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"weight_hh_l{k}"),
                    getattr(self.lstm, f"bias_ih_l{k}") + getattr(self.lstm, f"bias_hh_l{k}"))
                   for k in range(self.num_layers)]
        cell = kernels.compiled_lstm_cell() if self.compiled else kernels.lstm_cell
        if torch.is_grad_enabled() or rows <= kernels.LSTM_CHUNK_ROWS or inputs.device.type != "cpu":
            raw, h, c = self._network_rows(inputs, h, c, weights, cell)
        else:  # CPU deployment on a large model: chunks keep each chunk's gates in cache
            raw = inputs.new_empty(rows, len(self.heads))
            h_next, c_next = torch.empty_like(h), torch.empty_like(c)
            for start in range(0, rows, kernels.LSTM_CHUNK_ROWS):
                part = slice(start, start + kernels.LSTM_CHUNK_ROWS)
                raw[part], h_next[:, part], c_next[:, part] = self._network_rows(
                    inputs[part], h[:, part], c[:, part], weights, cell)
            h, c = h_next, c_next
        return raw.to(features.dtype).reshape(batch, dim, len(self.heads)), h, c

    def _network_rows(self, inputs: Tensor, h: Tensor, c: Tensor, weights: list[tuple[Tensor, Tensor, Tensor]],
                      cell: kernels.LSTMCell) -> tuple[Tensor, Tensor, Tensor]:
        """``(R, F)`` rows -> ``(R, K)`` raw outputs and the new ``h``, ``c``."""
        out, h, c = kernels.stacked_lstm(inputs, h, c, weights, cell)
        return self.out(self.hidden(out)), h, c

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        features, feature_state = self.features(x, grad, state, ctx)
        raw, h, c = self.network(features.to(x.dtype), state["h"], state["c"])
        outputs = {name: raw[..., i] for i, name in enumerate(self.heads)}
        x_next, rule_state = self.update(x, grad, outputs, {**state, **feature_state}, ctx)
        return x_next, {**state, **feature_state, **rule_state, "h": h, "c": c}
