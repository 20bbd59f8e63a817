"""``AGZOOptimizer``: activation-guided zeroth-order optimization (AGZO; Lin, Jiang, Song et
al. 2026), memory-lean and closure-only like :class:`~l2o.optim.ZOOptimizer`.

The gradient of a linear layer's weight has its rows in the span of the layer's inputs
(:mod:`l2o.rules.activation_subspace`), so AGZO perturbs such a weight only inside that
subspace: ``W ± μ Z V_rᵀ``. Each step:

1. f(θ) is evaluated once at the unperturbed parameters with forward pre-hooks on every
   ``nn.Linear`` of the model; each hook adds its input's sketch ``Xᵀ Ω`` (``d_in × r``) to the
   layer's accumulator and lets the input go, so nothing beyond what the forward already
   holds is kept; after the forward, ``V_r = qr(Σ Xᵀ Ω).Q`` per layer;
2. q directions are drawn: ``Z_i V_rᵀ`` for those weights (``Z_i: d_out × r`` regenerated from
   seeds block by block, never stored), isotropic Gaussian for every other trainable
   parameter (biases, norms, embeddings, weights not used through a supported layer);
   perturbed in place and restored
   bit for bit as in :class:`~l2o.optim.ZOOptimizer`;
3. the 2q central differences are aggregated by ZO-Avg, ZO-Align or a learned aggregator,
   with n the dimension the directions span, ``Σ d_out r`` over the guided layers plus the
   other elements, so that ``lr`` keeps its meaning (the estimate's scale, the curvature
   step of ``lr=None``).

Supported: ``nn.Linear`` (any subclass, inputs of any leading shape, a layer called several
times per forward: the sketches add up) and the packed ``in_proj_weight`` of a
self-attention ``nn.MultiheadAttention`` (query = key = value, as in
``nn.TransformerEncoderLayer``), whose weight is trainable and in the optimizer. Not
guided: ``nn.MultiheadAttention.out_proj`` (the attention calls its weight directly, so its
input is never seen), cross-attention, convolutions.
Memory beyond :class:`~l2o.optim.ZOOptimizer`: one ``d_in × r`` basis per guided layer and,
during the hooked forward, one ``N × r`` sketch matrix at a time.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

from l2o.optim.zeroth_order import ZOOptimizer
from l2o.rules.activation_subspace import orthonormal_basis, sketch, subspace_direction
from l2o.rules.zeroth_order import LearnedAggregator, ZORule

ROW_BLOCK = 1 << 18  # elements of a weight's row block per regenerated Z block


class AGZOOptimizer(ZOOptimizer):
    """ZO descent with directions in the activation subspace of every ``nn.Linear`` of
    ``model`` (module docstring).

    Args:
        model: the network; its supported layers (module docstring) are guided.
        params: parameters or param groups (default: ``model.parameters()``).
        rank: r, the rank of each layer's activation basis (capped at ``d_in``).
        lr, q, aggregator, mu, seed, directions, scheme: as :class:`~l2o.optim.ZOOptimizer`;
            every step evaluates f(θ) for the subspace, which is also the loss ``step``
            returns (central scheme: 2q + 1 evaluations with an lr, 2q + 2 with ``lr=None``,
            whose step is verified).

    ``basis_of(weight)`` is a guided weight's ``V_r`` from the last step.
    """

    needs_center = True

    def __init__(self, model: nn.Module, params: Iterable[Tensor] | Iterable[dict[str, Any]] | None = None,
                 lr: float | None = None, q: int = 1, rank: int = 8,
                 aggregator: str | ZORule | LearnedAggregator = "avg", mu: float = 1e-3, seed: int | None = None,
                 directions: str = "gaussian", scheme: str = "central") -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"AGZOOptimizer needs the model (an nn.Module), got {type(model).__name__}")
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"Invalid rank: {rank!r} (a positive int)")
        self.model, self.rank = model, rank
        super().__init__(model.parameters() if params is None else params, lr=lr, q=q, aggregator=aggregator,
                         mu=mu, seed=seed, directions=directions, scheme=scheme)

    def _guided_layers(self) -> list[tuple[nn.Module, Tensor]]:
        """``(module, weight)``: every ``nn.Linear`` and self-attention ``nn.MultiheadAttention``
        (its packed ``in_proj_weight``, a linear map of the query = key = value input) whose
        weight is trainable here."""
        trainable = {id(p) for p in self._params()}
        layers = []
        for module in self.model.modules():
            if isinstance(module, nn.Linear):
                layers.append((module, module.weight))
            elif isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
                layers.append((module, module.in_proj_weight))
        return [(module, weight) for module, weight in layers if id(weight) in trainable]

    def basis_of(self, weight: Tensor) -> Tensor | None:
        return self.__dict__.get("_bases", {}).get(id(weight))

    def _evaluate_center(self, closure: Callable[[], Any]) -> float:
        """f(θ) with the sketching hooks on; then every guided layer's basis."""
        sketches: dict[int, Tensor] = {}
        calls = {"n": 0}  # Ω of each call is seeded by (step, layer, call): a rerun draws the same

        def hook_for(position: int, weight: Tensor) -> Callable[..., None]:
            def hook(layer: nn.Module, inputs: tuple[Tensor, ...], kwargs: dict[str, Any]) -> None:
                inputs = inputs + tuple(kwargs[k] for k in ("query", "key", "value") if k in kwargs)
                if isinstance(layer, nn.MultiheadAttention) and not inputs[0] is inputs[1] is inputs[2]:
                    return  # cross-attention: in_proj maps three inputs, perturbed isotropically
                generator = self._generator(inputs[0].device, -1, position, calls["n"])
                calls["n"] += 1
                sketched = sketch(inputs[0].detach().to(weight.dtype), min(self.rank, weight.shape[1]), generator)
                key = id(weight)
                sketches[key] = sketched if key not in sketches else sketches[key] + sketched
            return hook
        handles = [layer.register_forward_pre_hook(hook_for(position, weight), with_kwargs=True)
                   for position, (layer, weight) in enumerate(self._guided_layers())]
        try:
            value = self._evaluate(closure)
        finally:
            for handle in handles:
                handle.remove()
        self._bases = {key: orthonormal_basis(sketched) for key, sketched in sketches.items()}
        return value

    def _dimension(self, params: list[Tensor]) -> int:
        return sum(p.shape[0] * self._bases[id(p)].shape[1] if id(p) in self._bases else p.numel() for p in params)

    def _chunks(self, query: int, index: int, p: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """A guided weight: blocks of rows ``p[i:j]`` and ``Z[i:j] V_rᵀ``, ``Z`` drawn block by
        block; any other parameter: isotropic (:meth:`ZOOptimizer._chunks`)."""
        basis = self.basis_of(p)
        if basis is None:
            yield from super()._chunks(query, index, p)
            return
        rows = max(1, ROW_BLOCK // p.shape[1])
        for chunk, start in enumerate(range(0, p.shape[0], rows)):
            view = p[start : start + rows]
            generator = self._generator(p.device, query, index, chunk)
            z = torch.randn(view.shape[0], basis.shape[1], generator=generator, dtype=p.dtype, device=p.device)
            yield view, subspace_direction(z, basis)
