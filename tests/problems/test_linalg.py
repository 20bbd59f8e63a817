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


def _normal_product_reference(A, x, c):
    r = torch.einsum("bmn,bn->bm", A, x) + c
    return r, torch.einsum("bmn,bm->bn", A, r)


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 7, 5), (2, 600, 33), (32, 250, 500)])
def test_normal_product_equals_the_two_products_in_value_and_gradient(shape, dtype, native, monkeypatch):
    """``r = A x + c``, ``Aᵀ r`` against float64 einsums: with the native kernel (rows in blocks
    of 256, 4 at a time: 600 rows are 3 blocks and 7 leave 3 over) and without it."""
    from problems import linalg

    monkeypatch.setenv("L2O_NATIVE", native)
    torch.manual_seed(0)
    batch, m, n = shape
    A = torch.randn(batch, m, n, dtype=dtype, requires_grad=True)
    x = torch.randn(batch, n, dtype=dtype, requires_grad=True)
    c = torch.randn(batch, m, dtype=dtype, requires_grad=True)
    big = m * n >= linalg.OPAQUE_PRODUCT_ELEMENTS
    if native == "1" and big and linalg.native_normal_product(A) is None:
        pytest.skip("no native kernel on this machine")
    outputs = linalg.normal_product(A, x, c)
    reference = _normal_product_reference(A.double(), x.double(), c.double())
    tolerance = 1e-12 if dtype == torch.float64 else 2e-6
    scales = [t.detach().abs().max() for t in reference]
    for output, expected, scale in zip(outputs, reference, scales):
        assert output.dtype == dtype
        torch.testing.assert_close(output.double(), expected, rtol=0, atol=tolerance * float(scale))
    probes = [torch.randn_like(t) for t in reference]
    grads = torch.autograd.grad(sum((t * p.to(dtype)).sum() for t, p in zip(outputs, probes)), (A, x, c))
    expected = torch.autograd.grad(sum((t * p).sum() for t, p in zip(reference, probes)), (A, x, c))
    for grad, want in zip(grads, expected):
        torch.testing.assert_close(grad, want, rtol=0, atol=tolerance * float(want.abs().max()))


@pytest.mark.parametrize("shape", [(1, 2, 2), (32, 20, 40), (4, 250, 500)])
def test_with_nothing_to_differentiate_the_kernel_runs_without_the_op_at_every_size(shape, monkeypatch):
    """Eagerly, under ``no_grad`` or with no input that requires grad, the native kernel is called
    directly (the op's dispatch costs more than small products); an input that requires grad
    goes through the op (from the threshold) or the two products (below it)."""
    from problems import linalg

    torch.manual_seed(0)
    batch, m, n = shape
    A, x, c = torch.randn(batch, m, n), torch.randn(batch, n), torch.randn(batch, m)
    if linalg.native_normal_product(A) is None:
        pytest.skip("no native kernel on this machine")
    calls = []

    def refused(*args):
        raise AssertionError("the op or the two products ran where the kernel should")

    with monkeypatch.context() as patched:
        patched.setattr(linalg, "opaque_normal_product", refused)
        patched.setattr(linalg, "_torch_normal_product", refused)
        with torch.no_grad():
            without_grad = linalg.normal_product(A, x, c)
        plain = linalg.normal_product(A, x, c)
    reference = _normal_product_reference(A.double(), x.double(), c.double())
    for output, again, expected in zip(without_grad, plain, reference):
        assert torch.equal(output, again)
        torch.testing.assert_close(output.double(), expected, rtol=0, atol=2e-6 * float(expected.abs().max()))
    for name in ("opaque_normal_product", "_torch_normal_product"):
        original = getattr(linalg, name)
        monkeypatch.setattr(linalg, name,
                            lambda *args, name=name, original=original: calls.append(name) or original(*args))
    r, g = linalg.normal_product(A, x.requires_grad_(), c)
    big = m * n >= linalg.OPAQUE_PRODUCT_ELEMENTS
    assert calls == ["opaque_normal_product" if big else "_torch_normal_product"]
    assert r.requires_grad and g.requires_grad


def test_the_normal_product_op_passes_torchs_custom_op_checks_and_its_gradients():
    """``opcheck`` and gradcheck / gradgradcheck of its backward (which is again the op, so the
    float64 kernel where there is one)."""
    from problems import linalg

    torch.manual_seed(0)
    inputs = (torch.randn(2, 6, 4, dtype=torch.float64, requires_grad=True),
              torch.randn(2, 4, dtype=torch.float64, requires_grad=True),
              torch.randn(2, 6, dtype=torch.float64, requires_grad=True))
    torch.library.opcheck(linalg.opaque_normal_product, inputs)
    assert torch.autograd.gradcheck(linalg.opaque_normal_product, inputs)
    assert torch.autograd.gradgradcheck(linalg.opaque_normal_product, inputs)


def test_an_instances_normal_product_does_not_depend_on_its_batch_or_the_threads():
    """Bit for bit: instance 1 alone or among 5, with 1 thread or 2 (blocks of rows are fixed, and
    their partial sums add in block order)."""
    from problems import linalg

    torch.manual_seed(0)
    A, x, c = torch.randn(5, 600, 70), torch.randn(5, 70), torch.randn(5, 600)
    if linalg.native_normal_product(A) is None:
        pytest.skip("no native kernel on this machine")
    threads = torch.get_num_threads()
    try:
        runs = []
        for count in (1, 2):
            torch.set_num_threads(count)
            runs += [linalg.normal_product(A, x, c), linalg.normal_product(A[1:2], x[1:2], c[1:2])]
    finally:
        torch.set_num_threads(threads)
    for r, g in runs[::2]:
        assert torch.equal(r[1:2], runs[1][0]) and torch.equal(g[1:2], runs[1][1])
    for r, g in runs[1::2]:
        assert torch.equal(r, runs[1][0]) and torch.equal(g, runs[1][1])


def test_normal_product_keeps_nan_in_its_instance_and_takes_strided_data():
    """A NaN in one instance's ``x`` fills that instance's outputs only, as the two products do;
    a non-contiguous ``A`` (no kernel) still gives the right numbers."""
    from problems import linalg

    torch.manual_seed(0)
    A, x, c = torch.randn(3, 130, 140), torch.randn(3, 140), torch.randn(3, 130)
    x[1, 5] = float("nan")
    r, g = linalg.normal_product(A, x, c)
    assert r[1].isnan().all() and g[1].isnan().all()
    assert torch.isfinite(r[[0, 2]]).all() and torch.isfinite(g[[0, 2]]).all()
    strided = torch.randn(3, 140, 130).transpose(1, 2)
    assert linalg.native_normal_product(strided) is None
    for output, expected in zip(linalg.normal_product(strided, x[[0]].expand(3, -1).contiguous(), c),
                                _normal_product_reference(strided, x[[0]].expand(3, -1), c)):
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-4)


def test_a_failing_compiler_leaves_the_normal_product_on_torchs_products(monkeypatch, tmp_path):
    from problems import linalg, native

    if native.instruction_set() is None:
        pytest.skip("no native instruction set on this machine")
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that exits 1
    linalg._normal_product_library.cache_clear()
    try:
        A, x, c = torch.randn(2, 200, 100), torch.randn(2, 100), torch.randn(2, 200)
        with pytest.warns(UserWarning, match="compiling the native normal-product kernel failed"):
            assert linalg.native_normal_product(A) is None
        for output, expected in zip(linalg.normal_product(A, x, c), _normal_product_reference(A, x, c)):
            torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-4)
    finally:
        linalg._normal_product_library.cache_clear()


@pytest.mark.parametrize("family", ["lasso", "shifted", "logistic"])
def test_objective_and_grad_equal_objective_and_grad(family):
    from problems import LassoFamily, LogisticL1Family, ShiftedInstances

    if family == "logistic":
        instances = LogisticL1Family(m=30, n=20).sample(3, seed=0, dtype=torch.float64)
    else:
        instances = LassoFamily(m=150, n=120, sparsity=10).sample(3, seed=0, dtype=torch.float64)
        instances = ShiftedInstances.of(instances, 2.0) if family == "shifted" else instances
    x = torch.randn(3, instances.dim, dtype=torch.float64)
    value, grad = instances.objective_and_grad(x)
    torch.testing.assert_close(value, instances.objective(x.clone()), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, instances.grad(x.clone()), rtol=1e-12, atol=1e-12)
