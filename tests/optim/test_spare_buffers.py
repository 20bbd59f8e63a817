"""Drop-in LSTM rules write a step's new h, c into the state from two steps back (no fresh
320 MB at 1M parameters), without changing any number and without touching live state."""

from __future__ import annotations

import copy

import torch

from l2o.optim import LearnedOptimizer
from l2o.rules import GoMathRule, StepContext, kernels


def quadratic_run(monkeypatch, steps: int, chunk_rows: int = 7):
    """States after each step of a 50-parameter GoMathL2O drop-in on the chunked CPU path."""
    monkeypatch.setattr(kernels, "LSTM_CHUNK_ROWS", chunk_rows)
    torch.manual_seed(0)
    rule = GoMathRule().double()
    param = torch.nn.Parameter(torch.linspace(-1, 1, 50, dtype=torch.float64))
    optimizer = LearnedOptimizer([param], rule=rule, lr=0.1, safeguard=False)
    states, values, points = [], [], []
    for _ in range(steps):
        optimizer.zero_grad()
        (param - 0.3).square().sum().backward()
        optimizer.step()
        state = optimizer.state[param]["rule_state"]
        states.append(state)
        values.append({k: v.clone() for k, v in state.items()})
        points.append(param.detach().clone()[None])
    return rule, states, values, points


def test_drop_in_steps_equal_the_pure_rule_and_reuse_the_buffers_of_two_steps_back(monkeypatch):
    rule, states, values, points = quadratic_run(monkeypatch, 5)
    # the pure rule, stepped on from the state after step 1 with no spares, gives the same numbers
    x, state = points[0], {k: v.clone() for k, v in values[0].items()}
    ctx = StepContext.constant(x, lipschitz=10.0)
    with torch.no_grad():
        for recorded, point in zip(values[1:], points[1:]):
            x, state = rule.step(x, 2 * (x - 0.3), state, ctx)
            torch.testing.assert_close(x, point, rtol=0, atol=0)
            for name, value in recorded.items():
                torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
    # step k + 2 wrote into step k's h and c; the live state's are never the previous one's
    for k in range(3):
        for name in ("h", "c"):
            assert states[k + 2][name].data_ptr() == states[k][name].data_ptr(), (k, name)
            assert states[k + 1][name].data_ptr() != states[k][name].data_ptr(), (k, name)


def test_a_state_referenced_elsewhere_is_still_overwritten_two_steps_later_like_torch_optim(monkeypatch):
    """As with torch.optim (whose state tensors change in place every step), a snapshot must be
    a copy: ``copy.deepcopy(optimizer.state_dict())`` keeps its values."""
    monkeypatch.setattr(kernels, "LSTM_CHUNK_ROWS", 7)
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.linspace(-1, 1, 50, dtype=torch.float64))
    optimizer = LearnedOptimizer([param], rule=GoMathRule().double(), lr=0.1, safeguard=False)

    def step():
        optimizer.zero_grad()
        (param - 0.3).square().sum().backward()
        optimizer.step()

    step()
    snapshot = copy.deepcopy(optimizer.state_dict())
    h = snapshot["state"][0]["rule_state"]["h"].clone()
    step(), step()
    torch.testing.assert_close(snapshot["state"][0]["rule_state"]["h"], h, rtol=0, atol=0)


def test_the_unchunked_path_and_rollouts_take_no_spares():
    torch.manual_seed(0)
    rule = GoMathRule().double()
    x = torch.randn(2, 30, dtype=torch.float64)
    ctx = StepContext.constant(x, lipschitz=4.0)
    assert ctx.spare == []
    spare = torch.zeros(2, 60, 20, dtype=torch.float64)
    ctx.spare = [spare]
    with torch.no_grad():
        state = rule.init_state(x, ctx)
        rule.step(x, x.clone(), state, ctx)
    assert ctx.spare == [spare] and not spare.any()  # 60 rows: one chunk, nothing taken


def test_take_spare_matches_shape_dtype_device_and_never_aliases():
    like = torch.zeros(2, 3)
    ctx = StepContext.constant(like)
    same_storage = like.view(2, 3)
    wrong_dtype, right = torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3)
    ctx.spare = [same_storage, wrong_dtype, torch.zeros(3, 2), right]
    assert ctx.take_spare(like) is right
    assert ctx.take_spare(like) is None
    assert len(ctx.spare) == 3


def test_a_state_tensor_that_views_the_previous_state_is_never_a_spare():
    """A rule may carry a view of an old state tensor into its new state (a rolling window):
    sharing memory with the live state excludes it from the spares, not just identity."""
    from l2o.rules import UpdateRule

    class Window(UpdateRule):
        def init_state(self, x, ctx):
            return {"window": torch.zeros(2, *x.shape, dtype=x.dtype)}

        def step(self, x, grad, state, ctx):
            assert all(s.untyped_storage().data_ptr() != state["window"].untyped_storage().data_ptr()
                       for s in ctx.spare)
            return x - 0.1 * grad, {"window": state["window"][:, :]}  # a new object, the same memory

    param = torch.nn.Parameter(torch.ones(4))
    optimizer = LearnedOptimizer([param], rule=Window(), lr=0.1, safeguard=False)
    for _ in range(3):
        optimizer.zero_grad()
        param.square().sum().backward()
        optimizer.step()
