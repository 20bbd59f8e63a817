"""ZO estimators and aggregators: Align's full-basis exactness, Avg's unbiasedness, the rule."""

from __future__ import annotations

import pytest
import torch

from l2o.eval import rollout
from l2o.eval.metrics import relative_suboptimality
from l2o.rules import ZORule
from l2o.rules.zeroth_order import (
    aggregate,
    align_coefficients,
    combine,
    directional_curvature,
    estimate_scale,
    finite_differences,
    sample_directions,
)
from problems import LeastSquaresFamily, LogisticFamily


@pytest.mark.parametrize("scheme", ["central", "forward"])
def test_align_with_a_full_orthonormal_basis_is_the_finite_difference_gradient(scheme):
    batch = LogisticFamily(m=30, n=7, sparsity=7).sample(3, seed=1, dtype=torch.float64)
    x = torch.randn(3, 7, dtype=torch.float64)
    rotation = torch.linalg.qr(torch.randn(3, 7, 7, dtype=torch.float64)).Q  # orthonormal rows
    mu = 1e-6
    delta, _ = finite_differences(batch.objective, x, rotation, mu, scheme)
    estimate = combine(rotation, align_coefficients(delta, rotation @ rotation.transpose(1, 2)))
    coordinate, _ = finite_differences(batch.objective, x, torch.eye(7, dtype=torch.float64).expand(3, 7, 7), mu, scheme)
    tolerance = 1e-8 if scheme == "central" else 1e-5  # O(μ²) vs O(μ) differences
    torch.testing.assert_close(estimate, batch.grad(x), rtol=0, atol=tolerance)
    torch.testing.assert_close(estimate, coordinate, rtol=0, atol=tolerance)


@pytest.mark.parametrize("aggregator", ["avg", "align"])
@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_every_aggregator_is_unbiased_for_the_gradient_of_a_quadratic(kind, aggregator):
    """On a quadratic, central differences are exact directional derivatives, so with its
    scale ZO-Avg and ZO-Align both have E[g] = ∇f exactly (one lr means one expected step);
    20,000 draws of q = 2 put the mean within a few percent, while a missing (or doubled)
    scale factor is off by 100% or more (ZO-Align's unscaled projection by 1 − q/n = 67%)."""
    batch = LeastSquaresFamily(m=12, n=6, condition_number=5.0).sample(1, seed=2, dtype=torch.float64)
    x = torch.randn(1, 6, dtype=torch.float64)
    draws, q = 20_000, 2
    generator = torch.Generator().manual_seed(0)
    U = sample_directions((draws, q, 6), kind, generator, torch.float64)
    g = batch.grad(x)[0]
    delta = U @ g  # exact central differences on a quadratic: (draws, q)
    coefficients = aggregate(aggregator, delta, U @ U.transpose(1, 2), 6, kind)
    estimate = (estimate_scale(aggregator, q, 6) * combine(U, coefficients)).mean(0)
    error = (estimate - g).norm() / g.norm()
    assert error < 0.06, error.item()


def test_the_directional_curvature_is_the_rayleigh_quotient_on_a_quadratic():
    batch = LeastSquaresFamily(m=12, n=6, condition_number=5.0).sample(2, seed=4, dtype=torch.float64)
    x = torch.randn(2, 6, dtype=torch.float64)
    U = sample_directions((2, 3, 6), "gaussian", torch.Generator().manual_seed(1), torch.float64)
    mu = 1e-2
    plus = torch.stack([batch.f(x + mu * U[:, i]) for i in range(3)], 1)
    minus = torch.stack([batch.f(x - mu * U[:, i]) for i in range(3)], 1)
    squared = (U * U).sum(-1)
    curvature = directional_curvature(plus, minus, batch.f(x)[:, None], mu, squared)
    hessian = batch.A.transpose(1, 2) @ batch.A
    rayleigh = torch.einsum("bqi,bij,bqj->bq", U, hessian, U) / squared
    torch.testing.assert_close(curvature, rayleigh, rtol=1e-6, atol=0)


def test_zo_rule_converges_and_align_beats_avg_at_large_q():
    batch = LeastSquaresFamily(m=30, n=10, condition_number=10.0).sample(8, seed=3, dtype=torch.float64)
    optimum = batch.optimum()
    budget = 400  # function queries
    final = {}
    for aggregator in ("avg", "align"):
        q = 10
        trajectory = rollout(ZORule(aggregator, q=q, scheme="central"), batch, budget // (2 * q)).objective
        final[aggregator] = relative_suboptimality(trajectory[-1], optimum).median().item()
    assert final["align"] < 0.05 and final["align"] < 0.1 * final["avg"], final


def test_zo_rule_is_reproducible_and_validates():
    batch = LeastSquaresFamily(m=20, n=6).sample(2, seed=4, dtype=torch.float64)
    first = rollout(ZORule("align", q=3, seed=5), batch, 10).objective
    torch.testing.assert_close(rollout(ZORule("align", q=3, seed=5), batch, 10).objective, first, rtol=0, atol=0)
    for bad in ({"q": 0}, {"mu": -1.0}, {"aggregator": "median"}, {"scheme": "backward"}):
        with pytest.raises(ValueError):
            ZORule(**{"aggregator": "avg", **bad})
