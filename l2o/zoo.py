"""The model zoo: named, pretrained update rules in ``checkpoints/``.

An entry ``NAME`` is two files: ``NAME.safetensors`` (the rule's weights) and
``NAME.json`` (its model card: rule name and config, training family and parameters,
seeds, horizon, library version, evaluation numbers, and the SHA-256 of the weights
file). Loading parses JSON and safetensors only — nothing is ever unpickled — and refuses,
with a clear message, a card for an unknown rule, weights whose SHA-256 is not the card's
(a corrupted file), weights that do not fit the rule the card describes (checked on
torch's ``meta`` device first, so a card claiming a huge model allocates nothing),
non-finite weights, and files that are not valid JSON / safetensors.

``L2O_ZOO`` (an environment variable) points at another zoo directory.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

import l2o
from l2o.rules import LipschitzEstimate, UpdateRule, build_rule, rule_name

FORMAT = "l2o-zoo/1"


def zoo_directory() -> Path:
    """``$L2O_ZOO`` or the repository's ``checkpoints/``."""
    default = Path(__file__).resolve().parent.parent / "checkpoints"
    return Path(os.environ.get("L2O_ZOO", default))


@dataclasses.dataclass
class ZooEntry:
    """A loaded entry: its ``name``, the ready ``rule`` and the ``card`` dict."""

    name: str
    rule: UpdateRule
    card: dict[str, Any]


def list() -> builtins.list[str]:  # noqa: A001 - the documented interface is l2o.zoo.list()
    """Names of the entries in the zoo directory (a card and weights each), sorted."""
    directory = zoo_directory()
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json") if p.with_suffix(".safetensors").is_file())


def _paths(name_or_path: str | os.PathLike) -> tuple[str, Path, Path]:
    text = str(name_or_path)
    if text in list():
        base = zoo_directory() / text
    elif text.endswith((".safetensors", ".json")):
        base = Path(text).with_suffix("")
    else:
        raise KeyError(f"no zoo entry {text!r}; available: {list()} (or pass a .safetensors path)")
    return base.name, base.with_suffix(".safetensors"), base.with_suffix(".json")


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and check a model card."""
    try:
        card = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"model card {path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"model card {path} is not valid JSON: {error}") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ValueError(f"{path} is not an l2o model card (expected format {FORMAT!r})")
    for key, kind in (("rule", str), ("rule_config", dict)):
        if not isinstance(card.get(key), kind):
            raise ValueError(f"model card {path} has no valid {key!r}")
    return card


def _build(card: dict[str, Any], card_path: Path, device: str | None = None) -> UpdateRule:
    try:
        with torch.device(device) if device else contextlib.nullcontext():
            return build_rule(card["rule"], **card["rule_config"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"model card {card_path} describes no buildable rule: {error}") from None


def load(name_or_path: str | os.PathLike) -> ZooEntry:
    """Load a zoo entry by name, or from a ``.safetensors`` path with its ``.json`` card."""
    name, weights, card_path = _paths(name_or_path)
    card = read_card(card_path)
    try:
        raw = weights.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"weights {weights} are missing") from None
    recorded = card.get("weights_sha256")
    if recorded is not None and hashlib.sha256(raw).hexdigest() != recorded:
        raise ValueError(f"{weights} does not match the SHA-256 in its card {card_path}: the file is "
                         "corrupted or belongs to another card")
    try:
        tensors = load_bytes(raw)
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{weights} is not a valid safetensors file: {error}") from None
    expected = _build(card, card_path, device="meta").state_dict()  # shapes only, nothing allocated
    if set(tensors) != set(expected) or any(tensors[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(
            f"{weights} holds weights for another model than the card's {card['rule']!r} rule "
            f"with config {card['rule_config']}"
        )
    if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
        raise ValueError(f"{weights} contains non-finite weights")
    rule = _build(card, card_path)
    rule.load_state_dict(tensors)
    rule.eval()
    rule = as_trained(rule, card.get("training"))
    rule.lipschitz_scale = lipschitz_scale(card)  # read by LearnedOptimizer's online L estimate
    return ZooEntry(name=name, rule=rule, card=card)


def trained_on_estimate(training: dict[str, Any] | None) -> bool:
    """Whether a rule was meta-trained on the online L estimate (``MetaTrainer(lipschitz=
    "estimate")``; ``training``: a card's ``training`` or a checkpoint's module hyperparameters)."""
    return (training or {}).get("lipschitz", "exact") == "estimate"


def as_trained(rule: UpdateRule, training: dict[str, Any] | None) -> UpdateRule:
    """``rule`` as it was trained: on :class:`~l2o.rules.LipschitzEstimate` if it learned the
    scale of the online estimate (it then needs no constant and ignores a given one), else
    itself."""
    return LipschitzEstimate(rule).eval() if trained_on_estimate(training) else rule


def lipschitz_scale(card: dict[str, Any]) -> float:
    """The constant an entry was trained with, over the smoothness constant of its training
    losses: 4 for the official sparse logistic family (its L = ||AᵀA||/m bounds the logistic
    loss's ||AᵀA||/(4m) by 4×; ``lipschitz_bound="official"``), else 1. The online estimate
    multiplies L̂ by it, so the rule takes the steps it was trained to take."""
    training = card.get("training") or {}
    official = (training.get("family_params") or {}).get("lipschitz_bound", "official") == "official"
    return 4.0 if training.get("family") == "logistic_l1" and official and not trained_on_estimate(training) else 1.0


def save(rule: UpdateRule, path: str | os.PathLike, **card: Any) -> tuple[Path, Path]:
    """Write ``path.safetensors`` and ``path.json`` for ``rule``; ``card`` adds fields
    (training family, seeds, metrics, ...)."""
    base = Path(path).with_suffix("") if str(path).endswith(".safetensors") else Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    config = rule.config() if hasattr(rule, "config") else {}
    full_card = {
        "format": FORMAT,
        "name": base.name,
        "rule": rule_name(rule),
        "rule_config": config,
        "l2o_version": l2o.__version__,
        "torch_version": torch.__version__,
        **card,
    }
    weights = base.with_suffix(".safetensors")
    save_file({k: v.detach().contiguous().cpu() for k, v in rule.state_dict().items()}, str(weights))
    full_card["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    card_path = base.with_suffix(".json")
    card_path.write_text(json.dumps(full_card, indent=2, sort_keys=False) + "\n")
    return weights, card_path


def rule_from_lightning_checkpoint(path: str | os.PathLike) -> tuple[UpdateRule, dict[str, Any]]:
    """The rule inside a ``MetaTrainer`` Lightning checkpoint, and the checkpoint's
    hyperparameters (``module`` and ``data``). Loaded with ``weights_only=True``: a
    checkpoint holding arbitrary pickled objects is refused."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt / unsafe files
        raise ValueError(f"{path} is not a loadable (weights-only) Lightning checkpoint: {error}") from None
    module = checkpoint.get("hyper_parameters") or {}
    if "rule" not in module:
        raise ValueError(f"{path} is not an l2o MetaTrainer checkpoint (no 'rule' hyperparameter)")
    rule = build_rule(module["rule"], **(module.get("rule_config") or {}))
    prefix = "rule."
    weights = {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    rule.load_state_dict(weights)
    rule.eval()
    return rule, {"module": dict(module), "data": dict(checkpoint.get("datamodule_hyper_parameters") or {}),
                  "global_step": checkpoint.get("global_step"), "epoch": checkpoint.get("epoch"),
                  "resumed_from": checkpoint.get("resumed_from")}


def resolve_rule(rule: UpdateRule | str | os.PathLike) -> UpdateRule:
    """An ``UpdateRule`` from a rule object, a zoo name, a ``.safetensors`` path or a
    ``.ckpt`` Lightning checkpoint path."""
    if isinstance(rule, UpdateRule):
        return rule
    if isinstance(rule, (str, os.PathLike)):
        if str(rule).endswith(".ckpt"):
            inner, hparams = rule_from_lightning_checkpoint(rule)
            return as_trained(inner, hparams["module"])
        return load(rule).rule
    raise TypeError(
        f"rule must be an l2o.rules.UpdateRule, a zoo name or a checkpoint path, got {type(rule).__name__}"
    )
