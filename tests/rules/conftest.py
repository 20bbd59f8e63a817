"""Fixtures of the rules' tests."""

from __future__ import annotations

import contextlib

import pytest

from l2o.rules import kernels


@pytest.fixture
def use_products():
    """``use_products(library)`` runs :func:`kernels.dense`'s float32 CPU products through
    ``library`` ("onednn" or "blas") for the rest of the test, whatever
    :func:`kernels.products_library` chose for this CPU (skipped where torch lacks oneDNN)."""
    with contextlib.ExitStack() as stack:
        def use(library: str) -> None:
            if library == "onednn" and not kernels.ONEDNN_BUILT:
                pytest.skip("torch built without oneDNN")
            stack.enter_context(kernels.products(library))
        yield use
