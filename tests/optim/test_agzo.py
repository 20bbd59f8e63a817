"""AGZOOptimizer: perturbations of a linear layer lie in its activations' row space, ZO-Align
over the subspace recovers that layer's gradient, restores are bit-exact, the contract."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from l2o.optim import AGZOOptimizer


def _low_rank_inputs(rows: int = 12, dim: int = 6, rank: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, rank, generator=generator, dtype=torch.float64)
            @ torch.randn(rank, dim, generator=generator, dtype=torch.float64))


def _model(seed: int = 0, bias: bool = True) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5, bias=bias), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()


def _residual_outside_row_space(matrix: torch.Tensor, inputs: torch.Tensor) -> float:
    """||M (I − P)|| / ||M||, P the projection onto the row space of ``inputs``."""
    basis = torch.linalg.svd(inputs, full_matrices=False).Vh
    basis = basis[torch.linalg.svdvals(inputs) > 1e-10 * torch.linalg.svdvals(inputs)[0]]
    return float((matrix - matrix @ basis.T @ basis).norm() / matrix.norm())


def test_every_perturbation_of_a_linear_weight_lies_in_the_row_space_of_its_inputs():
    inputs = _low_rank_inputs()
    model = _model()
    first = model[0].weight
    original = first.detach().clone()
    seen = []

    def closure():
        if not torch.equal(first, original):
            seen.append((first - original).detach().clone())
        return model(inputs).square().mean()

    optimizer = AGZOOptimizer(model, lr=1e-3, q=4, rank=3, seed=0)
    optimizer.step(closure)
    assert len(seen) == 8
    for perturbation in seen:
        assert _residual_outside_row_space(perturbation, inputs) < 1e-10
    assert optimizer.basis_of(first).shape == (6, 3)
    assert optimizer.basis_of(model[0].bias) is None  # biases are perturbed isotropically


def _one_align_step(make) -> tuple[torch.Tensor, torch.Tensor]:
    """(ZO estimate, true gradient) of W in a bias-free 6 → 2 linear least-squares layer on
    inputs of rank 3: the estimate is read off one ZO-Align step (−ΔW / lr; central
    differences, μ = 1e-6, float64) of ``make(layer)``."""
    inputs = _low_rank_inputs()
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 2, bias=False).double()
    targets = torch.randn(12, 2, dtype=torch.float64)
    loss = lambda: (layer(inputs) - targets).square().mean()  # noqa: E731
    gradient = torch.autograd.grad(loss(), layer.weight)[0]
    before = layer.weight.detach().clone()
    make(layer).step(loss)
    return (before - layer.weight.detach()) / 1e-3, gradient


def test_zo_align_over_a_covered_subspace_recovers_the_layer_gradient():
    """r = the activations' rank (3) and q = the subspace's dimension (2 outputs × 3): ZO-Align
    projects onto the whole subspace, which holds the gradient, so the step is −lr ∇_W f up
    to finite differences."""
    estimate, gradient = _one_align_step(
        lambda layer: AGZOOptimizer(layer, lr=1e-3, q=6, rank=3, aggregator="align", mu=1e-6, seed=0))
    torch.testing.assert_close(estimate, gradient, rtol=1e-6, atol=1e-8)


def test_isotropic_directions_do_not_recover_it_at_the_same_q():
    """The same 6 queries spread over all 12 elements of W (plain ZO-Align) miss half of it."""
    from l2o.optim import ZOOptimizer

    estimate, gradient = _one_align_step(
        lambda layer: ZOOptimizer(layer.parameters(), lr=1e-3, q=6, aggregator="align", mu=1e-6, seed=0))
    assert float((estimate - gradient).norm() / gradient.norm()) > 0.1


@pytest.mark.parametrize("scheme", ["central", "forward"])
def test_restore_after_every_probe_is_bit_exact_and_a_constant_closure_changes_nothing(scheme):
    inputs = _low_rank_inputs().float()
    model = _model().float()
    with torch.no_grad():
        model[0].weight[0, :2] = torch.tensor([1e-7, -3e-9])
    original = [p.detach().clone() for p in model.parameters()]
    bits = lambda: [p.detach().view(torch.int32).clone() for p in model.parameters()]  # noqa: E731
    original_bits = bits()
    probes = []

    def closure():
        probes.append(not all(torch.equal(a, b) for a, b in zip(original_bits, bits())))
        model(inputs)  # the hooks see real activations
        return 0.5
    optimizer = AGZOOptimizer(model, lr=0.1, q=3, rank=2, mu=1e-2, seed=1, scheme=scheme)
    for _ in range(2):
        assert optimizer.step(closure) == 0.5
    assert probes.count(True) == 2 * (6 if scheme == "central" else 3)  # every probe was perturbed
    assert all(torch.equal(a, b) for a, b in zip(original_bits, bits()))
    assert all(torch.equal(a, b) for a, b in zip(original, model.parameters()))


def test_it_trains_without_backward_and_keeps_the_optimizer_contract():
    inputs = _low_rank_inputs(rows=32, rank=4).float()
    targets = torch.randn(32, 2, generator=torch.Generator().manual_seed(5))
    model = _model().float()
    loss = lambda: (model(inputs) - targets).square().mean()  # noqa: E731
    optimizer = AGZOOptimizer(model, q=4, rank=4, seed=0)  # no lr: the measured curvature
    with torch.no_grad():
        start = float(loss())
        for _ in range(200):
            optimizer.step(loss)
        assert float(loss()) < 0.7 * start and all(p.grad is None for p in model.parameters())
    saved_model, saved = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    for twin in (copy.deepcopy(optimizer), pickle.loads(pickle.dumps(optimizer))):
        assert isinstance(twin, AGZOOptimizer) and twin.rank == 4 and twin.q == 4
    for _ in range(3):
        optimizer.step(loss)
    expected = [p.detach().clone() for p in model.parameters()]
    model.load_state_dict(saved_model)
    restored = AGZOOptimizer(model, q=4, rank=4, seed=99)
    restored.load_state_dict(saved)
    for _ in range(3):
        restored.step(loss)
    assert all(torch.equal(a, b) for a, b in zip(expected, model.parameters()))


@pytest.mark.parametrize("kwargs", [{"rank": 0}, {"rank": 1.5}, {"q": 0}, {"lr": -1.0}, {"scheme": "forward"}])
def test_invalid_hyperparameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        AGZOOptimizer(_model(), **kwargs)
    with pytest.raises(ValueError, match="nn.Module"):
        AGZOOptimizer(list(_model().parameters()))


def test_self_attention_in_proj_is_guided_by_its_tokens_and_out_proj_is_not():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(6, nhead=2, dim_feedforward=8, dropout=0.0, batch_first=True).double()
    tokens = _low_rank_inputs(rows=10, dim=6, rank=2).reshape(2, 5, 6)  # 10 tokens spanning 2 dimensions
    attention = layer.self_attn
    original = attention.in_proj_weight.detach().clone()
    seen = []

    def closure():
        if not torch.equal(attention.in_proj_weight, original):
            seen.append((attention.in_proj_weight - original).detach().clone())
        return layer(tokens).square().mean()
    optimizer = AGZOOptimizer(layer, lr=1e-3, q=2, rank=2, seed=0)
    optimizer.step(closure)
    assert optimizer.basis_of(attention.in_proj_weight).shape == (6, 2)
    assert optimizer.basis_of(attention.out_proj.weight) is None  # called as a weight, never as a module
    assert optimizer.basis_of(layer.linear1.weight) is not None
    assert len(seen) == 4 and all(_residual_outside_row_space(d, tokens.reshape(10, 6)) < 1e-10 for d in seen)


@pytest.mark.parametrize("aggregator", ["align", "zo-least-squares"])
def test_it_composes_with_zo_align_and_the_learned_aggregator(aggregator):
    inputs = _low_rank_inputs(rows=32, rank=4).float()
    targets = torch.randn(32, 2, generator=torch.Generator().manual_seed(5))
    model = _model().float()
    loss = lambda: (model(inputs) - targets).square().mean()  # noqa: E731
    optimizer = AGZOOptimizer(model, q=4, rank=4, aggregator=aggregator, seed=0)
    with torch.no_grad():
        start = float(loss())
        for _ in range(100):
            optimizer.step(loss)
        assert float(loss()) < 0.8 * start
