"""Shared fixtures: tiny seeded problem batches, float64 for tight numerical checks."""

from __future__ import annotations

import pytest
import torch

from problems import (
    ImageLassoFamily,
    IrisLogisticL1Family,
    LassoFamily,
    LeastSquaresFamily,
    LogisticFamily,
    LogisticL1Family,
    QuadraticFamily,
)

SMALL_FAMILIES = {
    "quadratic": QuadraticFamily(m=12, n=8, x0_std=1.0),
    "least_squares": LeastSquaresFamily(m=15, n=10, condition_number=50.0),
    "lasso": LassoFamily.toy(),
    "logistic": LogisticFamily(m=30, n=8, sparsity=4),
    "logistic_l1": LogisticL1Family(m=40, n=10, sparsity=3, l1=0.02),
    "image_lasso": ImageLassoFamily(n=24),
    "iris_logistic_l1": IrisLogisticL1Family(m=40),
}


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    yield


@pytest.fixture(params=sorted(SMALL_FAMILIES))
def family_name(request) -> str:
    return request.param


@pytest.fixture
def family(family_name):
    return SMALL_FAMILIES[family_name]


@pytest.fixture
def small_batch(family):
    return family.sample(4, seed=7, dtype=torch.float64)


@pytest.fixture
def lasso_batch():
    return LassoFamily.toy().sample(4, seed=3, dtype=torch.float64)
