"""The coordinate-wise LSTM shared by every learned rule in l2o.

Every coordinate of every instance is one row through the same small network
(Andrychowicz et al. 2016; Math-L2O; GoMathL2O), so a rule trained on ``(B, n)`` batches
applies to a model with any number of parameters N:

``features (B, n, F) -> [Linear(F, H) + ELU] -> LSTM(F or H -> H, num_layers)
-> [Linear(H, H) + ReLU] -> Linear(H, K)``

giving K raw head outputs per coordinate (the bracketed layers are per rule, as in the
official code: RNNprop has the input layer, GoMathL2O and Math-L2O the hidden one, L2L
neither). Subclasses choose the features, name the heads, and turn head outputs into an
update. The LSTM's hidden and cell states are kept in the rule state as ``h``, ``c``:
``(num_layers, B·n, H)``; they start as ``state_scale · N(0, 1)`` draws
(``state_init="randn"``, the official code's ``reset_state``) from ``ctx.generator``, or from
torch's global generator when it is None (drop-in use: seed with ``torch.manual_seed`` for a
reproducible run), or at zero (``state_init="zeros"``).

The weights live in a ``torch.nn.LSTM`` (its parameter names and layout, so checkpoints
are plain ``nn.LSTM`` weights); the step itself is :func:`~l2o.rules.kernels.stacked_lstm`
(fused layers with a hand-derived backward, equal to ``nn.LSTM`` in values and gradients,
tested), which on the CPU without autograd runs in chunks of ``LSTM_CHUNK_ROWS`` coordinates
(a GPU takes them all at once), and whose elementwise parts go through ``torch.compile``
after :meth:`CoordinateLSTMRule.compile_kernels`. On AVX-512 and AVX2 CPUs a float32 step without
autograd runs the whole network (layers and heads) in one native kernel instead
(:mod:`~l2o.rules.native_network`, equal to the torch path up to rounding: tested). A
drop-in step of a large model whose rule has coordinate-wise features and update
(``coordinatewise``: GoMathL2O, Math-L2O, L2L, RNNprop) also runs them in chunks of
``STEP_CHUNK_ROWS`` coordinates; GoMathL2O's with σ-type heads runs whole in the native kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from l2o.rules import kernels, native_network
from l2o.rules.base import State, StepContext, UpdateRule


STATE_INITS = ("randn", "zeros")


class CoordinateLSTMRule(UpdateRule):
    """Base class of learned coordinate-wise rules.

    Subclasses pass ``heads`` (names of the per-coordinate outputs) and implement
    :meth:`features`, :meth:`update` and optionally :meth:`extra_state`.

    Args:
        num_features: F, features per coordinate.
        hidden_size: H (20 in the papers).
        num_layers: LSTM depth (2 in the papers).
        heads: names of the K outputs; the output layer's row k is head k.
        input_layer: ``Linear(F, H) + ELU`` before the LSTM (RNNprop).
        hidden_layer: ``Linear(H, H) + ReLU`` after it (GoMathL2O, Math-L2O).
        state_init: ``"randn"`` (the official code) or ``"zeros"``.
        state_scale: standard deviation of the ``randn`` initial state.
    """

    #: Whether :meth:`features` and :meth:`update` are elementwise per coordinate, given ``ctx``'s
    #: per-instance scalars and :meth:`instance_statistics` (no other reduction over
    #: coordinates): large drop-in steps then run chunk by chunk (:meth:`_chunked_step`). A
    #: subclass whose update reduces (learned BFGS) keeps False.
    coordinatewise: bool = False

    def __init__(self, num_features: int, hidden_size: int = 20, num_layers: int = 2, *,
                 heads: tuple[str, ...], input_layer: bool = False, hidden_layer: bool = True,
                 state_init: str = "randn", state_scale: float = 1.0) -> None:
        super().__init__()
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"Invalid LSTM size: hidden_size={hidden_size}, num_layers={num_layers}")
        if state_init not in STATE_INITS:
            raise ValueError(f"Invalid state_init: {state_init!r}; choose from {STATE_INITS}")
        if not (isinstance(state_scale, (int, float)) and 0 <= state_scale < float("inf")):
            raise ValueError(f"Invalid state_scale: {state_scale!r} (a finite float >= 0)")
        self.num_features = num_features
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.heads = tuple(heads)
        self.state_init, self.state_scale = state_init, float(state_scale)
        self.input = nn.Sequential(nn.Linear(num_features, hidden_size), nn.ELU()) if input_layer else None
        self.lstm = nn.LSTM(hidden_size if input_layer else num_features, hidden_size, num_layers)
        self.hidden = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU()) if hidden_layer else nn.Identity()
        self.out = nn.Linear(hidden_size, len(self.heads))
        self.compiled = False

    def compile_kernels(self, enabled: bool = True) -> "CoordinateLSTMRule":
        """Run the rule's elementwise parts through ``torch.compile``: the fused LSTM layers'
        (:func:`~l2o.rules.kernels.compiled_cells`), and in a large model's chunked step
        without autograd each chunk's :meth:`features` and :meth:`update`
        (:func:`compiled_step_parts`: one loop each instead of a dozen passes; 3.8 + 4.3 against
        2.1 + 2.4 ms of a 1M-parameter GoMathL2O step). Needs a C++ compiler on CPU and
        compiles once per shape (about 12 s at a step's first call on 2 cores). Off by default:
        on CPU it does not pay for most uses (``scripts/benchmark.py``). Where the native
        network kernel applies (:mod:`~l2o.rules.native_network`) a step without autograd runs
        it, with the compiled features and update; the compiled cells then serve
        meta-training and the torch path. On that path a deployment step's compiled cell (one
        loop for ``h'``, ``c'``, then copied into the step's rows: 182 µs at 16,384 rows, with
        the copies, against 410 µs for the eager in-place cell) loses most of its gain to the
        ~30 µs of each compiled call: 0.987 of the eager step at 1M parameters (paired
        steps)."""
        self.compiled = bool(enabled)
        return self

    def matmul_flops_per_coordinate(self) -> int:
        """Multiply-add FLOPs (2 per multiply-add) of the network's matrix products for one
        coordinate and one step: ``2·F·H`` (input layer, if any) ``+ Σ_l 2·4H·(F_l + H)``
        (the LSTM layers, ``F_l`` = the layer's input width) ``+ 2·H²`` (hidden layer, if
        any) ``+ 2·H·K`` (the heads). With F = 3, H = 20, two layers, the hidden layer and
        K = 3 (GoMathL2O): 11,000. The elementwise work (gates, heads, update) is not counted."""
        hidden, heads = self.hidden_size, len(self.heads)
        width = hidden if self.input is not None else self.num_features
        flops = 2 * self.num_features * hidden if self.input is not None else 0
        for layer in range(self.num_layers):
            flops += 2 * 4 * hidden * ((width if layer == 0 else hidden) + hidden)
        if not isinstance(self.hidden, nn.Identity):
            flops += 2 * hidden * hidden
        return flops + 2 * hidden * heads

    def matmul_shapes(self) -> list[tuple[int, int]]:
        """``(K, N)`` of each matrix product the network runs, in order, as the kernels run
        them: for R rows, ``(R, K) @ (K, N)``. The fused LSTM layers' ``K`` includes their bias
        and alignment columns (:func:`~l2o.rules.kernels.gate_weights`), so these are the
        executed products, not only the network's FLOPs (:meth:`matmul_flops_per_coordinate`).
        ``scripts/benchmark.py`` times them at a chunk's rows: what the products cost at
        their own skinny shapes, against the large-GEMM rate of the roofline."""
        shapes = [(self.num_features, self.hidden_size)] if self.input is not None else []
        shapes += [(weight.shape[1], weight.shape[0]) for weight, _ in kernels.lstm_gate_weights(self.lstm)]
        if not isinstance(self.hidden, nn.Identity):
            shapes.append((self.hidden_size, self.hidden_size))
        return shapes + [(self.hidden_size, len(self.heads))]

    def sigmoids_per_coordinate(self) -> int:
        """σ evaluations of the LSTM layers for one coordinate and one step: ``5 H`` per layer,
        4H for the gates and H for ``tanh(c') = 2σ(2c') − 1`` (:mod:`~l2o.rules.kernels`).
        On a CPU they take a sizeable fraction of the matrix products' time
        (``scripts/benchmark.py`` measures both rates), so they bound the step besides the
        FLOPs. The rule's own heads and features are not counted."""
        return 5 * self.hidden_size * self.num_layers

    # ------------------------------------------------------------ subclass API
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this rule (stored in zoo cards)."""
        return {"hidden_size": self.hidden_size, "num_layers": self.num_layers, "state_init": self.state_init}

    def extra_state(self, x: Tensor, ctx: StepContext) -> State:
        """Rule-specific state besides the LSTM's."""
        return {}

    def features(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        """``(B, n, F)`` network inputs, and state updates they imply (e.g. scales)."""
        raise NotImplementedError

    def instance_statistics(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> State:
        """State entries that :meth:`features` would reduce over all of an instance's coordinates
        (``(B, ·)``), computed over the whole ``x``, ``grad`` ``(B, n)`` before a chunked step,
        so that each chunk's features see them in ``state`` (a ``coordinatewise`` rule's
        features reduce nothing else). Default: none."""
        return {}

    def update(
        self, x: Tensor, grad: Tensor, outputs: dict[str, Tensor], state: State, ctx: StepContext
    ) -> tuple[Tensor, State]:
        """The next point from the raw head outputs (each ``(B, n)``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the rule
    def init_state(self, x: Tensor, ctx: StepContext) -> State:
        shape = (self.num_layers, x.shape[0] * x.shape[1], self.hidden_size)
        if self.state_init == "zeros":
            h, c = x.new_zeros(shape), x.new_zeros(shape)
        else:  # drawn as the official code draws them: h then c, float32 on the CPU
            h, c = ((self.state_scale * torch.randn(shape, generator=ctx.generator)).to(x) for _ in range(2))
        return {"h": h, "c": c, **self.extra_state(x, ctx)}

    def network(self, features: Tensor, h: Tensor, c: Tensor,
                ctx: StepContext | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, n, F) -> (B, n, K)`` raw outputs and the new ``h``, ``c`` (written into
        ``ctx``'s spare tensors on the chunked path when it has some of their shape)."""
        inputs, h, c = self._network_inputs(features, h, c)
        if not self._chunked(features):
            raw, h, c = self._network_rows(inputs, h, c)
        else:  # CPU deployment on a large model: chunks keep each chunk's gates in cache
            h_next, c_next = self._next_states(h, c, ctx)
            raw = self._network_into(inputs, h, c, (h_next, c_next), slice(0, inputs.shape[0]))
            h, c = h_next, c_next
        return raw.to(features.dtype).reshape(*features.shape[:2], len(self.heads)), h, c

    def _network_inputs(self, features: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``features`` ``(B, n, F)`` as rows ``(B·n, F)``, and ``h``, ``c``, all in the network's
        dtype (e.g. a float32 zoo rule driving float64 parameters), after checking the shapes."""
        h, c = self._network_states(h, c, features.shape[0] * features.shape[1])
        return self._rows(features), h, c

    def _rows(self, features: Tensor) -> Tensor:
        """``features`` ``(B, n, F)`` as rows ``(B·n, F)`` in the network's dtype."""
        width = features.shape[-1]
        if width != self.num_features:
            raise ValueError(f"{type(self).__name__} expects {self.num_features} features, got {width}")
        return features.reshape(-1, width).to(self.out.weight.dtype)

    def _network_states(self, h: Tensor, c: Tensor, coordinates: int) -> tuple[Tensor, Tensor]:
        """``h``, ``c`` in the network's dtype, after checking they are for ``coordinates`` rows."""
        if h.shape[1] != coordinates:
            raise ValueError(
                f"rule state is for {h.shape[1]} coordinates but x has {coordinates}; "
                "was the state created for other parameters?"
            )
        dtype = self.out.weight.dtype
        return h.to(dtype), c.to(dtype)

    @staticmethod
    def _chunked(like: Tensor) -> bool:
        """Whether the network runs in chunks of rows: on the CPU, without autograd, for more
        than ``kernels.LSTM_CHUNK_ROWS`` coordinates (``like``: ``(B, n, ...)``)."""
        rows = like.shape[0] * like.shape[1]
        return not torch.is_grad_enabled() and rows > kernels.LSTM_CHUNK_ROWS and like.device.type == "cpu"

    @staticmethod
    def _chunks(rows: int, size: int | None = None) -> list[slice]:
        size = kernels.LSTM_CHUNK_ROWS if size is None else size
        return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]

    @staticmethod
    def _output_like(like: Tensor, ctx: StepContext | None) -> Tensor:
        """A tensor to write a step's output of ``like``'s shape, dtype and device into: one of
        ``ctx``'s spares when it has one, else fresh memory."""
        spare = ctx.take_spare(like) if ctx is not None else None
        return torch.empty_like(like) if spare is None else spare

    def _next_states(self, h: Tensor, c: Tensor, ctx: StepContext | None) -> tuple[Tensor, Tensor]:
        return self._output_like(h, ctx), self._output_like(c, ctx)

    @contextlib.contextmanager
    def shared_weights(self) -> Iterator[None]:
        """Derives the fused gate weights on entry, outside any compiled region that steps
        within the block (``torch.compile`` refuses to trace into ``nn.LSTM``)."""
        previous = self.__dict__.get("_shared_gate_weights")
        self.__dict__["_shared_gate_weights"] = kernels.lstm_gate_weights(self.lstm)
        try:
            yield
        finally:
            self.__dict__["_shared_gate_weights"] = previous

    def _gate_weights(self) -> list[tuple[Tensor, Tensor | None]]:
        """:func:`kernels.gate_weights` of every layer, once per :meth:`shared_weights` block."""
        shared = self.__dict__.get("_shared_gate_weights")
        return kernels.lstm_gate_weights(self.lstm) if shared is None else shared

    def _native_kernel(self, inputs: Tensor) -> ctypes.CDLL | None:
        """The native network kernel (:mod:`~l2o.rules.native_network`) when it applies to the
        rows ``inputs``: float32 on the CPU without autograd (not traced), a supported shape, a
        compiler; else None (the torch path)."""
        if (torch.is_grad_enabled() or inputs.device.type != "cpu" or self.out.weight.dtype != torch.float32
                or torch.compiler.is_compiling()):
            return None
        shape = native_network.NetworkShape(self.hidden_size if self.input is not None else self.num_features,
                                            self.hidden_size, self.num_layers, len(self.heads),
                                            not isinstance(self.hidden, nn.Identity))
        isa = native_network.instruction_set()
        return native_network.library(shape, isa) if native_network.supported(shape, isa) else None

    def _native_weights(self, kernel: ctypes.CDLL) -> native_network.PackedWeights:
        """:func:`native_network.pack_weights` of this rule for ``kernel``'s lanes, repacked when a
        parameter changed (its storage or its version counter: optimizer steps, ``load_state_dict``)
        or the lanes did."""
        key = (kernel.vector, *((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_native_packed")
        if cached is None or cached[0] != key:
            hidden = None if isinstance(self.hidden, nn.Identity) else self.hidden[0]
            cached = (key, native_network.pack_weights(self.lstm, hidden, self.out, kernel.vector))
            self.__dict__["_native_packed"] = cached
        return cached[1]

    def _network_into(self, inputs: Tensor, h: Tensor, c: Tensor, out: tuple[Tensor, Tensor],
                      coordinates: slice) -> Tensor:
        """Raw outputs ``(R, K)`` of the rows ``coordinates`` of the state, whose inputs are
        ``inputs`` ``(R, F)``, with their new ``h``, ``c`` written into those rows of ``out``: in
        one native call, or in chunks of ``kernels.LSTM_CHUNK_ROWS`` through torch."""
        if self._native_kernel(inputs) is not None:
            return self._network_rows(inputs, h[:, coordinates], c[:, coordinates],
                                      out=(out[0][:, coordinates], out[1][:, coordinates]))[0]
        weights = self._gate_weights()
        raw = inputs.new_empty(coordinates.stop - coordinates.start, len(self.heads))
        for rows in self._chunks(coordinates.stop - coordinates.start):
            part = slice(coordinates.start + rows.start, coordinates.start + rows.stop)
            raw[rows] = self._network_rows(inputs[rows], h[:, part], c[:, part], weights,
                                           out=(out[0][:, part], out[1][:, part]))[0]
        return raw

    def _network_rows(self, inputs: Tensor, h: Tensor, c: Tensor,
                      weights: list[tuple[Tensor, Tensor | None]] | None = None,
                      out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(R, F)`` rows -> ``(R, K)`` raw outputs and the new ``h``, ``c`` (written into
        ``out`` when given): the native kernel where it applies, else torch's kernels with
        ``weights`` (:meth:`_gate_weights` when None)."""
        if self.input is not None:
            inputs = self.input(inputs)
        kernel = self._native_kernel(inputs)
        if kernel is not None:
            if out is None:
                h, c = h.contiguous(), c.contiguous()
            h_out, c_out = (torch.empty_like(h), torch.empty_like(c)) if out is None else out
            raw = native_network.network_rows(kernel, self._native_weights(kernel), inputs, h, c, h_out, c_out)
            return raw, h_out, c_out
        weights = self._gate_weights() if weights is None else weights
        out, h, c = kernels.stacked_lstm(inputs, h, c, weights, self.compiled, out)
        if torch.is_grad_enabled():
            return kernels.output_affine(self.hidden(out), self.out.weight, self.out.bias), h, c
        if not isinstance(self.hidden, nn.Identity):
            out = kernels.dense(out, self.hidden[0].weight, self.hidden[0].bias, "relu")
        return kernels.dense(out, self.out.weight, self.out.bias), h, c

    def step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        if (self.coordinatewise and x.shape[0] == 1 and self._chunked(x)
                and (ctx.shift is None or ctx.shift.shape[-1] == 1)):
            return self._chunked_step(x, grad, state, ctx)
        features, feature_state = self.features(x, grad, state, ctx)
        features, state = features.to(x.dtype), {**state, **feature_state}
        raw, h, c = self.network(features, state["h"], state["c"], ctx)
        outputs = {name: raw[..., i] for i, name in enumerate(self.heads)}
        x_next, rule_state = self.update(x, grad, outputs, state, ctx)
        return x_next, {**state, **rule_state, "h": h, "c": c}

    def _chunked_step(self, x: Tensor, grad: Tensor, state: State, ctx: StepContext) -> tuple[Tensor, State]:
        """:meth:`step` of one large model (``x``: ``(1, N)``) on the CPU without autograd: the
        coordinate-wise :meth:`features` and :meth:`update` in chunks of
        ``kernels.STEP_CHUNK_ROWS`` coordinates (the network in chunks of
        ``kernels.LSTM_CHUNK_ROWS`` within each), after :meth:`instance_statistics` over the
        whole vectors, so every temporary is a chunk's (in cache, and no fresh pages for each
        of them at 10M parameters) and the results go straight into the step's outputs. Equal
        to the whole-vector step (every operation is elementwise per coordinate, given
        ``ctx``'s ``(1, 1)`` scalars and the statistics). Every tensor the update returns must be
        a coordinate's (``(1, n)``); the features' other state is per instance, the same for
        every chunk.
        """
        state = {**state, **self.instance_statistics(x, grad, state, ctx)}
        parts = compiled_step_parts(type(self)) if self.compiled else (type(self).features, type(self).update)
        features_of, update_of = parts
        h, c = self._network_states(state["h"], state["c"], x.shape[1])
        h_next, c_next = self._next_states(h, c, ctx)
        x_next = self._output_like(x, ctx)
        coordinate_state: State = {}
        instance_state: State = {}
        for part in self._chunks(x.shape[1], kernels.STEP_CHUNK_ROWS):
            chunk_state = {k: v[:, part] if torch.is_tensor(v) and v.shape == x.shape else v for k, v in state.items()}
            features, feature_state = features_of(self, x[:, part], grad[:, part], chunk_state, ctx)
            inputs = self._rows(features.to(x.dtype))
            raw = self._network_into(inputs, h, c, (h_next, c_next), part).to(x.dtype)
            outputs = {name: raw[None, :, i] for i, name in enumerate(self.heads)}
            chunk_state = {**chunk_state, **feature_state}
            x_part, update_state = update_of(self, x[:, part], grad[:, part], outputs, chunk_state, ctx)
            x_next[:, part] = x_part
            for name, value in {**feature_state, **update_state}.items():
                if not (torch.is_tensor(value) and value.shape == x_part.shape):
                    if name in update_state:
                        raise TypeError(f"{type(self).__name__}.update returned {name!r} of another shape than "
                                        "its coordinates; the chunked step needs coordinate-wise state")
                    instance_state[name] = value
                    continue
                if name not in coordinate_state:
                    coordinate_state[name] = self._output_like(x if value.dtype == x.dtype else
                                                               torch.empty_like(x, dtype=value.dtype), ctx)
                coordinate_state[name][:, part] = value
        return x_next, {**state, **instance_state, **coordinate_state, "h": h_next, "c": c_next}


@functools.cache
def compiled_step_parts(rule: type[CoordinateLSTMRule]) -> tuple[Callable, Callable]:
    """``rule.features`` and ``rule.update`` through ``torch.compile``: each chunk's elementwise
    work as one loop (the chunked step with ``compile_kernels()``). One pair per rule class:
    dynamo guards on each rule's attributes (its squashes) and recompiles, for dynamic sizes,
    at a chunk's second size (a model's last, partial chunk)."""
    return torch.compile(rule.features), torch.compile(rule.update)
