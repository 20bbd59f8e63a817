"""GoMathL2O's gradient features: their k = 0 scaling, its gradient and its chunked form."""

from __future__ import annotations

import torch

from l2o.features import gradient_feature_scales, gradient_features
from problems.proximal import l1_subdifferential_bounds


def stacked_features(grad, x, l1):
    lower, upper = l1_subdifferential_bounds(x, l1)
    return torch.stack([grad, lower, upper], dim=-1)


def inputs(seed: int, batch: int = 3, n: int = 7):
    generator = torch.Generator().manual_seed(seed)
    grad = torch.randn(batch, n, generator=generator, dtype=torch.float64)
    x = torch.randn(batch, n, generator=generator, dtype=torch.float64)
    x[:, :2] = 0.0  # coordinates where the bounds are -λ and +λ
    return grad, x, torch.rand(batch, 1, generator=generator, dtype=torch.float64) + 0.1


def test_the_features_are_divided_by_their_norms_at_the_first_step():
    grad, x, l1 = inputs(0)
    features, scales = gradient_features(grad, x, l1, torch.zeros(3, 3, dtype=torch.float64))
    raw = stacked_features(grad, x, l1)
    torch.testing.assert_close(scales, torch.linalg.vector_norm(raw, dim=1), rtol=1e-14, atol=0)
    torch.testing.assert_close(features, raw / scales[:, None, :], rtol=1e-14, atol=0)
    grad, x, _ = inputs(1)  # a later step keeps the k = 0 scales
    later, kept = gradient_features(grad, x, l1, scales)
    torch.testing.assert_close(kept, scales, rtol=0, atol=0)
    torch.testing.assert_close(later, stacked_features(grad, x, l1) / scales[:, None, :], rtol=1e-14, atol=0)


def test_without_an_l1_term_the_bound_features_are_zero_not_nan():
    grad, x, _ = inputs(2)
    features, scales = gradient_features(grad, x, torch.zeros(3, 1, dtype=torch.float64),
                                         torch.zeros(3, 3, dtype=torch.float64))
    assert torch.equal(scales[:, 1:], torch.zeros(3, 2, dtype=torch.float64))
    assert torch.equal(features[..., 1:], torch.zeros(3, 7, 2, dtype=torch.float64))
    torch.testing.assert_close(features[..., 0], grad / scales[:, :1], rtol=1e-14, atol=0)


def test_no_gradient_flows_through_the_scales():
    """The scales are constants of the instance: the gradient of the features with respect to
    the gradient input is the division by them alone, also at k = 0."""
    grad, x, l1 = inputs(3)
    grad.requires_grad_(True)
    features, scales = gradient_features(grad, x, l1, torch.zeros(3, 3, dtype=torch.float64))
    assert not scales.requires_grad
    (derivative,) = torch.autograd.grad(features[..., 0].sum(), grad)
    torch.testing.assert_close(derivative, (1 / scales[:, :1]).expand_as(grad), rtol=1e-14, atol=0)


def test_chunked_scales_equal_the_whole_vectors():
    grad, x, l1 = inputs(4, batch=2, n=23)
    _, whole = gradient_features(grad, x, l1, torch.zeros(2, 3, dtype=torch.float64))
    chunked = gradient_feature_scales(grad, x, l1, torch.zeros(2, 3, dtype=torch.float64), chunk=5)
    torch.testing.assert_close(chunked, whole, rtol=1e-14, atol=0)
    set_scales = torch.full((2, 3), 7.0, dtype=torch.float64)
    assert torch.equal(gradient_feature_scales(grad, x, l1, set_scales, chunk=5), set_scales)
