"""Parity with the papers' official code.

Each golden file in ``goldens/`` holds what the official model (NetX-lab/GoMathL2O-Official,
NetX-lab/MathL2OProof-Official) computed on fixed inputs with fixed weights:
``scripts/make_parity_goldens.py`` regenerates them from checkouts of both repositories.
Here l2o's rule, built with the configuration of the case and loaded with the official
weights (:func:`l2o.official.load_official`), replays the case: its iterates over 10
steps and its meta-gradient over 5 must equal the official ones to 1e-6 relative.
The negative cases show the comparison fails when one piece of the formula differs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from l2o.eval.rollout import unroll
from l2o.official import load_official, official_to_l2o
from l2o.rules import CoordinateLSTMRule, StepContext, UpdateRule, build_rule
from problems.least_squares import LeastSquaresInstances

GOLDENS = Path(__file__).parent / "goldens"
CASES = sorted(p.stem for p in GOLDENS.glob("*.safetensors") if not p.stem.startswith(("generator_", "baseline_")))
RTOL = 1e-6


def load_case(case: str) -> tuple[dict[str, torch.Tensor], dict]:
    path = GOLDENS / f"{case}.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
    return load_file(str(path)), meta


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def instances_of(tensors: dict[str, torch.Tensor], meta: dict) -> LeastSquaresInstances:
    """The official optimizee as l2o instances: its W is normalized to unit columns."""
    W = tensors["W"]
    A = W / W.pow(2).sum(dim=1, keepdim=True).sqrt()
    batch = A.shape[0]
    return LeastSquaresInstances(A=A, b=tensors["Y"], l1=torch.full((batch,), meta["rho"], dtype=A.dtype),
                                 start=tensors["x0"])


def rule_of(meta: dict, tensors: dict[str, torch.Tensor], **overrides) -> UpdateRule:
    rule = build_rule(meta["rule"], **{**meta["config"], **overrides}).double()
    return load_official(rule, prefixed(tensors, "weight."))


def replay(rule: UpdateRule, tensors: dict[str, torch.Tensor], meta: dict, steps: int,
           state_override: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The iterates ``(steps + 1, B, n)`` and the official meta-loss ``Σ_k objective(x_k)``."""
    instances = instances_of(tensors, meta)
    ctx = StepContext.for_instances(instances)
    x = instances.x0()
    state = rule.init_state(x, ctx)
    if isinstance(rule, CoordinateLSTMRule):
        state.update(h=tensors["h0"], c=tensors["c0"])
    state.update(state_override or {})
    points, loss = [x], 0.0
    reduce = torch.mean if meta["objective"] == "mean" else torch.sum
    for x, state in unroll(rule, instances, steps, x=x, state=state, ctx=ctx):
        point = rule.iterate(x, state)
        points.append(point)
        loss = loss + reduce(instances.objective(point))
    return torch.stack(points), loss


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * scale, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("case", CASES)
def test_trajectory_equals_the_official_code(case):
    tensors, meta = load_case(case)
    rule = rule_of(meta, tensors)
    with torch.no_grad():
        points, _ = replay(rule, tensors, meta, steps=tensors["trajectory"].shape[0] - 1)
    assert_close(points, tensors["trajectory"], f"{case} iterates")


@pytest.mark.parametrize("case", CASES)
def test_meta_gradient_equals_the_official_code(case):
    """Also checks what is detached: the official Math-L2O, L2L, RNNprop and NTK-GD cut the
    gradient through their features, GoMathL2O does not."""
    tensors, meta = load_case(case)
    rule = rule_of(meta, tensors)
    _, loss = replay(rule, tensors, meta, steps=5)
    rule.zero_grad()
    loss.backward()
    expected = official_to_l2o(rule, prefixed(tensors, "grad."))
    for name, param in rule.named_parameters():
        assert_close(param.grad, expected[name], f"{case} meta-gradient of {name}")


def test_every_official_model_has_a_case():
    models = {load_case(case)[1]["model"] for case in CASES}
    assert models == {"GOMathL2O", "CoordMathLSTM", "CoordBlackboxLSTM", "RNNprop", "CoordMathDNN"}


# What the parity comparison catches: one piece of the formula changed, the rest equal.
PERTURBED = {
    "Math-L2O with A = σ (l2o's old squash) instead of 2σ": ("mathl2o_pa_lasso", {"a_norm": "sigmoid1"}),
    "GoMathL2O with B = 2σ instead of σ": ("gomath_lasso", {"b_norm": "sigmoid"}),
    "GoMathL2O logistic with Q scale 1 instead of 10": ("gomath_logistic_squash", {"q_scale": 1.0}),
    "L2L without the official 1/B gradient scale": ("l2l_lasso", {"grad_scale": 1.0}),
    "RNNprop with β2 = 0.999": ("rnnprop_lasso", {"betas": (0.95, 0.999)}),
    "NTK-GD with the base step 0.5 instead of 0.9999 / L": ("ntk_gd_qp", {"lr": 0.5}),
}


@pytest.mark.parametrize("label", sorted(PERTURBED))
def test_a_perturbed_formula_fails_parity(label):
    case, overrides = PERTURBED[label]
    tensors, meta = load_case(case)
    rule = rule_of(meta, tensors, **overrides)
    with torch.no_grad():
        points, _ = replay(rule, tensors, meta, steps=tensors["trajectory"].shape[0] - 1)
    with pytest.raises(AssertionError):
        assert_close(points, tensors["trajectory"], label)


def test_a_zero_initial_state_fails_parity():
    """The official LSTM state starts at N(0, 1), not at zero, and it changes the iterates."""
    tensors, meta = load_case("gomath_lasso")
    rule = rule_of(meta, tensors)
    zeros = torch.zeros_like(tensors["h0"])
    with torch.no_grad():
        points, _ = replay(rule, tensors, meta, steps=10, state_override={"h": zeros, "c": zeros})
    with pytest.raises(AssertionError):
        assert_close(points, tensors["trajectory"], "zero state")


def test_official_weights_that_do_not_fit_are_refused():
    tensors, meta = load_case("gomath_lasso")
    official = prefixed(tensors, "weight.")
    with pytest.raises(ValueError, match="learned head scales"):
        load_official(build_rule("gomath", hidden_size=8), {**official, "r_scale": torch.tensor(1.0)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_official(build_rule("gomath", hidden_size=20), official)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_official(build_rule("l2l", hidden_size=8), official)  # GOMathL2O weights for an L2L rule
    with pytest.raises(ValueError, match="no output bias"):
        load_official(build_rule("ntk_gd", output_bias=True), prefixed(load_case("ntk_gd_qp")[0], "weight."))
    with pytest.raises(TypeError, match="no official model"):
        load_official(build_rule("zo"), official)
