"""Weights of the papers' official models, loaded into l2o's rules.

The official code (NetX-lab/GoMathL2O-Official, NetX-lab/MathL2OProof-Official) keeps one
``nn.Linear(H, 1)`` per head and its own layer names; l2o keeps one ``Linear(H, K)`` whose
row k is head k (:class:`~l2o.rules.CoordinateLSTMRule`). :func:`load_official` maps an
official ``state_dict`` onto a rule built with the matching configuration, so an official
checkpoint runs in l2o and the parity tests (``tests/parity``) can replay the official
trajectories. Heads that every paper configuration switches off (GoMathL2O's b3, b4;
Math-L2O's b, b1, b2) are not part of l2o's rules and are ignored; learned head scales
(``*_scale`` parameters, off in every paper configuration) are refused.

=================  ==========================  ====================================
l2o rule           official model              mapping
=================  ==========================  ====================================
``GoMathRule``     ``GOMathL2O``               out = [linear_r; linear_q; linear_b]
``MathL2ORule``    ``CoordMathLSTM``           out = [linear_p; linear_a] (PA) or linear_p
``L2LRule``        ``CoordBlackboxLSTM``       out = linear
``RNNpropRule``    ``RNNprop``                 input.0 = linear_in, out = linear_out
``NTKGDRule``      ``CoordMathDNN``            layer1 = dnn.0ᵀ, layer2 = linearᵀ, output = linear_pᵀ
=================  ==========================  ====================================
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from l2o.rules import GoMathRule, L2LRule, MathL2ORule, NTKGDRule, RNNpropRule, UpdateRule


def _lstm(official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: value for name, value in official.items() if name.startswith("lstm.")}


def _layer(official: Mapping[str, Tensor], source: str, target: str) -> dict[str, Tensor]:
    """The official ``source`` Linear's weight and bias under l2o's name ``target``."""
    return {f"{target}.{kind}": official[f"{source}.{kind}"] for kind in ("weight", "bias")}


def _heads(official: Mapping[str, Tensor], layers: list[str]) -> dict[str, Tensor]:
    return {"out.weight": torch.cat([official[f"{layer}.weight"] for layer in layers]),
            "out.bias": torch.cat([official[f"{layer}.bias"] for layer in layers])}


def official_to_l2o(rule: UpdateRule, official: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``state_dict`` of ``rule`` that holds the official model's weights ``official``."""
    learned_scales = sorted(name for name in official if name.endswith("_scale"))
    if learned_scales:
        raise ValueError(f"learned head scales {learned_scales} are not supported (off in every paper configuration)")
    if isinstance(rule, GoMathRule):
        return {**_lstm(official), **_layer(official, "linear", "hidden.0"),
                **_heads(official, ["linear_r", "linear_q", "linear_b"])}
    if isinstance(rule, MathL2ORule):
        heads = ["linear_p", "linear_a"] if rule.extrapolation else ["linear_p"]
        return {**_lstm(official), **_layer(official, "linear", "hidden.0"), **_heads(official, heads)}
    if isinstance(rule, L2LRule):
        return {**_lstm(official), **_heads(official, ["linear"])}
    if isinstance(rule, RNNpropRule):
        return {**_lstm(official), **_layer(official, "linear_in", "input.0"), **_heads(official, ["linear_out"])}
    if isinstance(rule, NTKGDRule):
        if rule.output_bias:
            raise ValueError("the official CoordMathDNN has no output bias: build NTKGDRule(output_bias=False)")
        # NonSingularLinear / SingularLinear store (in, out) and compute x @ W.
        return {"layer1.weight": official["dnn.0.weight"].T, "layer2.weight": official["linear.weight"].T,
                "output.weight": official["linear_p.weight"].T}
    raise TypeError(f"no official model is known for {type(rule).__name__}")


def load_official(rule: UpdateRule, official: Mapping[str, Tensor]) -> UpdateRule:
    """Load the official model's ``state_dict`` into ``rule`` (strict: every weight of
    ``rule`` must come from ``official``, with its shape). Returns ``rule``."""
    target = rule.state_dict()
    mapped = official_to_l2o(rule, official)
    if set(mapped) != set(target):
        raise ValueError(f"official weights map to {sorted(mapped)} but {type(rule).__name__} has {sorted(target)}")
    rule.load_state_dict({name: value.to(target[name]) for name, value in mapped.items()}, strict=True)
    return rule
