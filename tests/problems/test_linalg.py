"""The row-form batched products equal the plain ones, in value and gradient."""

from __future__ import annotations

import pytest
import torch

from problems.linalg import matvec, rmatvec


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 8), (2, 40, 7)])
def test_matvec_and_rmatvec_equal_einsum(shape, dtype):
    torch.manual_seed(0)
    batch, m, n = shape
    A = torch.randn(batch, m, n, dtype=dtype, requires_grad=True)
    x = torch.randn(batch, n, dtype=dtype, requires_grad=True)
    r = torch.randn(batch, m, dtype=dtype, requires_grad=True)
    pairs = [(matvec(A, x), torch.einsum("bmn,bn->bm", A, x)), (rmatvec(A, r), torch.einsum("bmn,bm->bn", A, r))]
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for fast, plain in pairs:
        assert fast.shape == plain.shape
        torch.testing.assert_close(fast, plain, rtol=tolerance, atol=tolerance)
        probe = torch.randn_like(plain)
        for g_fast, g_plain in zip(torch.autograd.grad((fast * probe).sum(), (A, x, r), allow_unused=True),
                                   torch.autograd.grad((plain * probe).sum(), (A, x, r), allow_unused=True)):
            if g_plain is None:
                assert g_fast is None
            else:
                torch.testing.assert_close(g_fast, g_plain, rtol=tolerance, atol=tolerance)


def test_objective_then_gradient_at_the_same_point_reads_the_data_once(monkeypatch):
    """F(x) then ∇f(x) share A x (what meta-training evaluates each step), values and
    meta-gradients unchanged; a new point, an in-place change or another grad mode recompute."""
    import copy
    import pickle

    import problems.least_squares as least_squares
    from problems import LassoFamily

    instances = LassoFamily.toy().sample(3, seed=0, dtype=torch.float64)
    calls = []
    real = least_squares.matvec
    monkeypatch.setattr(least_squares, "matvec", lambda A, x: calls.append(1) or real(A, x))
    x = instances.x0().requires_grad_(True)
    y = x * 1.0
    (instances.objective(y).sum() + instances.grad(y).square().sum()).backward()
    assert len(calls) == 1
    shared = x.grad.clone()
    x.grad = None
    fresh = y.detach().clone().requires_grad_(True)
    plain = 0.5 * (real(instances.A, fresh) - instances.b).pow(2).sum(-1) + instances.l1 * fresh.abs().sum(-1)
    direct_grad = torch.einsum("bmn,bm->bn", instances.A, real(instances.A, fresh) - instances.b)
    (plain.sum() + direct_grad.square().sum()).backward()
    torch.testing.assert_close(shared, fresh.grad, rtol=1e-12, atol=1e-12)
    z = y.detach().clone()
    instances.f(z)
    z.add_(1.0)  # in place: a new value at the same tensor
    torch.testing.assert_close(instances.f(z), 0.5 * (real(instances.A, z) - instances.b).pow(2).sum(-1))
    with torch.no_grad():
        instances.f(z)
    assert len(calls) == 4  # y once, z before and after the change, z again without grad
    copy.deepcopy(instances), pickle.loads(pickle.dumps(instances))  # the memo is neither copied nor pickled


@pytest.mark.parametrize("op", ["matvec", "rmatvec"])
def test_the_opaque_products_pass_torchs_custom_op_checks_and_their_gradients(op):
    """``torch.library.opcheck`` (schema, fake tensor, autograd registration) and
    gradcheck / gradgradcheck of the opaque ops' hand-written backward in float64."""
    from problems import linalg

    torch.manual_seed(0)
    function = getattr(linalg, f"opaque_{op}")
    A = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 3 if op == "matvec" else 4, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(function, (A, v))
    assert torch.autograd.gradcheck(function, (A, v))
    assert torch.autograd.gradgradcheck(function, (A, v))


@pytest.mark.parametrize("m, n, opaque", [(20, 40, False), (128, 128, True)])
def test_compiled_products_equal_eager_and_stay_opaque_from_the_threshold(m, n, opaque):
    """Under ``torch.compile`` the objective, gradient and meta-gradient of least squares
    equal eager; the products are the opaque ops exactly from ``OPAQUE_PRODUCT_ELEMENTS``."""
    from problems import linalg

    assert (m * n >= linalg.OPAQUE_PRODUCT_ELEMENTS) == opaque
    torch.manual_seed(0)
    A, b = torch.randn(3, m, n, dtype=torch.float64), torch.randn(3, m, dtype=torch.float64)

    def meta_loss(x):  # a gradient step, then the objective: backward runs through both products
        step = x - 0.01 * linalg.rmatvec(A, linalg.matvec(A, x) - b)
        return 0.5 * (linalg.matvec(A, step) - b).pow(2).sum()

    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    x = torch.randn(3, n, dtype=torch.float64, requires_grad=True)
    eager, (eager_grad,) = meta_loss(x), torch.autograd.grad(meta_loss(x), x)
    compiled = torch.compile(meta_loss, backend=backend, fullgraph=True)
    value = compiled(x)
    (grad,) = torch.autograd.grad(value, x)
    torch.testing.assert_close(value, eager, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-12, atol=1e-12)
    targets = {str(node.target) for node in graphs[0].graph.nodes if node.op == "call_function"}
    assert any("l2o.matvec" in t or "l2o::matvec" in t for t in targets) == opaque, targets
