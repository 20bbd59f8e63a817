"""Properties of the learned coordinate-wise rules that hold for any weights."""

from __future__ import annotations

import pytest
import torch

from l2o.rules import GoMathRule, MathL2ORule, StepContext
from problems import LassoFamily


@pytest.mark.parametrize("rule", [MathL2ORule(), MathL2ORule(extrapolation=False), GoMathRule()],
                         ids=["Math-L2O-PA", "Math-L2O-P", "GoMathL2O"])
def test_the_lasso_minimizer_is_a_fixed_point_for_any_weights(rule):
    """At x* (and y = x*, zero history) a proximal gradient step with any positive step size
    returns x*: no learned term may move it (an additive bias head would)."""
    torch.manual_seed(0)
    rule = rule.double()
    with torch.no_grad():
        for param in rule.parameters():
            param.add_(torch.randn_like(param))
        instances = LassoFamily.toy().sample(4, seed=3, dtype=torch.float64)
        x_star = instances.solution()
        ctx = StepContext.for_instances(instances)
        state = rule.init_state(x_star, ctx)
        x, state = rule.step(x_star, instances.grad(x_star), state, ctx)
    torch.testing.assert_close(rule.iterate(x, state), x_star, rtol=0, atol=1e-9)


@pytest.mark.parametrize("config, match", [({"p_norm": "relu"}, "p_norm"), ({"a_scale": float("nan")}, "a_scale"),
                                           ({"state_init": "ones"}, "state_init")])
def test_invalid_head_configuration_is_refused(config, match):
    with pytest.raises(ValueError, match=match):
        MathL2ORule(**config)
