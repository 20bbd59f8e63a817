"""The compute kernels equal the networks they replace, in value and gradient."""

import copy

import pytest
import torch

from l2o.meta import MetaTrainer
from l2o.optim import LearnedOptimizer
from l2o.rules import FISTARule, GoMathRule, L2LRule, LearnedBFGSRule, MathL2ORule, RNNpropRule, StepContext, kernels
from l2o.rules.kernels import FusedLSTMLayer, planar_relu_network, stacked_lstm, tanh_by_sigmoid
from l2o.rules.ntk_gd import NTKGDRule


def direct_relu_network(z, w2, w3, b3):
    return torch.relu(z @ w2.t()) @ w3 + b3


def planar_inputs(generator, rows=500):
    z = torch.rand(rows, 2, generator=generator, dtype=torch.float64) * 10 ** torch.randint(
        -3, 4, (rows, 1), generator=generator).double()
    z[:5, 0] = 0.0  # on the axes and at the origin
    z[5:10, 1] = 0.0
    z[10] = 0.0
    return z


@pytest.mark.parametrize("hidden", [1, 2, 16, 1024])
def test_planar_relu_network_equals_the_direct_network_in_value_and_gradient(hidden):
    generator = torch.Generator().manual_seed(hidden)
    z = planar_inputs(generator).requires_grad_()
    w2 = torch.randn(hidden, 2, generator=generator, dtype=torch.float64).requires_grad_()
    w3 = torch.randn(hidden, generator=generator, dtype=torch.float64).requires_grad_()
    b3 = torch.randn(1, generator=generator, dtype=torch.float64).requires_grad_()
    weights = torch.randn(z.shape[0], generator=generator, dtype=torch.float64)
    outputs = []
    for network in (planar_relu_network, direct_relu_network):
        value = network(z, w2, w3, b3)
        outputs.append((value, *torch.autograd.grad((value * weights).sum(), (z, w2, w3, b3))))
    for fast, direct in zip(*outputs):
        torch.testing.assert_close(fast, direct, rtol=1e-10, atol=1e-10)


def test_planar_relu_network_at_sector_boundaries_and_degenerate_weights():
    generator = torch.Generator().manual_seed(0)
    w2 = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    w2[:4] = 0.0  # dead neurons
    w2[4:8] = w2[8:12]  # duplicate boundaries
    w2[12] = torch.tensor([1.0, -1.0])  # its boundary is exactly θ = π/4
    w3 = torch.randn(64, generator=generator, dtype=torch.float64)
    b3 = torch.zeros(1, dtype=torch.float64)
    # Inputs exactly on (and next to) every neuron's boundary line.
    normals = torch.stack([-w2[:, 1], w2[:, 0]], dim=1)
    normals = torch.cat([normals, -normals])
    normals = normals[(normals >= 0).all(1)]
    z = torch.cat([normals, normals * (1 + 1e-12), torch.ones(1, 2, dtype=torch.float64)])
    torch.testing.assert_close(planar_relu_network(z, w2, w3, b3), direct_relu_network(z, w2, w3, b3),
                               rtol=1e-10, atol=1e-10)


def test_ntk_rule_matches_its_explicit_network_on_every_layer_dtype():
    torch.manual_seed(0)
    rule = NTKGDRule(hidden_size=32, init="random")
    x, grad = torch.randn(3, 40, dtype=torch.float64), torch.randn(3, 40, dtype=torch.float64)
    features = torch.stack([grad, x], -1).float()
    explicit = rule.output(torch.relu(rule.layer2(torch.relu(rule.layer1(features))))).squeeze(-1)
    torch.testing.assert_close(rule.logits(x, grad), explicit.double(), rtol=1e-5, atol=1e-5)


def lstm_and_fused(rows: int, features: int, hidden: int, layers: int, dtype: torch.dtype, compiled: bool = False):
    """``nn.LSTM`` (sequence length 1) and :func:`stacked_lstm` on the same random inputs and
    weights: each ``(out, h, c)`` and the gradients of a random probe of them with respect
    to the inputs, states and every ``nn.LSTM`` parameter."""
    torch.manual_seed(rows + features + hidden + layers)
    lstm = torch.nn.LSTM(features, hidden, layers).to(dtype)
    with torch.no_grad():
        for param in lstm.parameters():  # nonzero biases, gates away from their linear range
            param.normal_(0, 0.5)
    inputs = torch.randn(rows, features, dtype=dtype, requires_grad=True)
    h = torch.randn(layers, rows, hidden, dtype=dtype, requires_grad=True)
    c = torch.randn(layers, rows, hidden, dtype=dtype, requires_grad=True)
    weights = kernels.lstm_gate_weights(lstm)
    out, (h_ref, c_ref) = lstm(inputs[None], (h, c))
    results = [stacked_lstm(inputs, h, c, weights, compiled), (out[0], h_ref, c_ref)]
    probes = [torch.randn_like(t) for t in results[1]]
    leaves = (inputs, h, c, *lstm.parameters())
    grads = [torch.autograd.grad(sum((t * p).sum() for t, p in zip(r, probes)), leaves) for r in results]
    return (*results[0], *grads[0]), (*results[1], *grads[1])


@pytest.mark.parametrize("dtype,tolerance", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("rows,features,hidden,layers", [(1, 3, 20, 2), (11, 5, 7, 1), (300, 3, 20, 2), (64, 20, 32, 3)])
@pytest.mark.parametrize("alignment", [8, 1])  # the bias as a padding column of W (F + H = 23), and as a bias
def test_fused_lstm_equals_torch_lstm_in_value_and_gradient(rows, features, hidden, layers, dtype, tolerance,
                                                            alignment, monkeypatch):
    monkeypatch.setattr(kernels, "ALIGNMENT", alignment)
    fused, reference = lstm_and_fused(rows, features, hidden, layers, dtype)
    for name, got, expected in zip(["out", "h", "c", "d inputs", "d h", "d c"] + ["d weights"] * 4 * layers,
                                   fused, reference):
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance, msg=name)


def test_fused_lstm_layer_passes_gradcheck():
    torch.manual_seed(0)
    xh = torch.randn(6, 3 + 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(16, 7, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: FusedLSTMLayer.apply(*a, False), (xh, c, weight, bias))


def test_fused_lstm_backward_with_only_one_output_used():
    """Autograd passes None for an output that the loss does not use (the last layer's c)."""
    torch.manual_seed(0)
    xh = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    c = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weight, bias = torch.randn(12, 6, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    for pick in (0, 1):
        def f(xh, c):
            return FusedLSTMLayer.apply(xh, c, weight, bias, False)[pick]
        assert torch.autograd.gradcheck(f, (xh, c))


def test_tanh_by_sigmoid_is_tanh_to_rounding():
    x = torch.linspace(-30, 30, 10001, dtype=torch.float64)
    torch.testing.assert_close(tanh_by_sigmoid(x), torch.tanh(x), rtol=0, atol=1e-15)
    torch.testing.assert_close(tanh_by_sigmoid(x.float()), torch.tanh(x.float()), rtol=0, atol=3e-7)


@pytest.mark.parametrize("bias", [True, False])
def test_output_affine_equals_linear_in_value_and_gradient_eager_and_compiled(bias):
    """The heads' output layer: ``F.linear`` eagerly, a product and a sum when traced."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(20, 3, bias=bias).double()
    x = torch.randn(37, 20, dtype=torch.float64, requires_grad=True)

    def value_and_gradients(function):
        out = function(x, layer.weight, layer.bias)
        weights = torch.randn_like(out, generator=torch.Generator().manual_seed(1))
        return (out, *torch.autograd.grad((out * weights).sum(), [x, *layer.parameters()]))

    expected = value_and_gradients(lambda x, w, b: layer(x))
    for function in (kernels.output_affine, torch.compile(kernels.output_affine, fullgraph=True, dynamic=False)):
        for got, want in zip(value_and_gradients(function), expected):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("library", ["onednn", "blas"])
def test_compiled_fused_lstm_equals_torch_lstm(library, use_products):
    pytest.importorskip("torch._inductor")
    use_products(library)
    fused, reference = lstm_and_fused(40, 3, 20, 2, torch.float32, compiled=True)
    for got, expected in zip(fused, reference):
        torch.testing.assert_close(got, expected, rtol=2e-5, atol=2e-5)


def rollout_and_meta_gradient(rule, steps=3):
    from problems import LassoFamily

    instances = LassoFamily.toy().sample(2, seed=0)
    ctx = StepContext.for_instances(instances)
    ctx.generator = torch.Generator().manual_seed(0)  # the same random LSTM state for every rule
    x = instances.x0()
    state = rule.init_state(x, ctx)
    losses = []
    for _ in range(steps):
        x, state = rule.step(x, instances.grad(x), state, ctx)
        losses.append(instances.objective(x).mean())
    meta_gradient = torch.autograd.grad(sum(losses), list(rule.parameters()))
    return x.detach(), meta_gradient


def test_shared_gate_weights_give_the_same_rollout_and_meta_gradient_with_one_graph_node():
    torch.manual_seed(0)
    rule = GoMathRule()
    reference = rollout_and_meta_gradient(rule, steps=4)
    with rule.shared_weights():
        first, second = rule._gate_weights(), rule._gate_weights()
        shared = rollout_and_meta_gradient(rule, steps=4)
    assert all(a is b for (a, _), (b, _) in zip(first, second))  # one node for the whole block
    torch.testing.assert_close(shared, reference, rtol=1e-5, atol=1e-7)
    # after the block the weights are derived afresh: an update of the LSTM's weights shows
    with torch.no_grad():
        rule.lstm.weight_ih_l0.add_(1.0)
    with rule.shared_weights():
        assert not torch.equal(rule._gate_weights()[0][0], first[0][0])
    assert rule._gate_weights()[0][0] is not rule._gate_weights()[0][0]  # outside a block: per call


CHUNKED_RULES = {
    "gomath": lambda: GoMathRule(),
    "mathl2o-extrapolation": lambda: MathL2ORule(extrapolation=True),
    "l2l": lambda: L2LRule(),
    "rnnprop": lambda: RNNpropRule(),
    "learned-bfgs": lambda: LearnedBFGSRule(memory=3),  # its update reduces: never chunked
}


@pytest.mark.parametrize("width", [23, 24, 32])
def test_layer_rows_without_autograd_equal_the_differentiable_concatenation(width):
    inputs, h = torch.randn(37, 3), torch.randn(37, 20)
    concatenated = kernels.layer_rows(inputs, h, width)
    with torch.no_grad():
        copied = kernels.layer_rows(inputs, h, width)
    torch.testing.assert_close(copied, concatenated, rtol=0, atol=0)
    if width > 23:  # the bias column of ones, then zeros
        assert concatenated[:, 23].eq(1).all() and concatenated[:, 24:].eq(0).all()


@pytest.mark.parametrize("l1", [0.1, 0.0])
@pytest.mark.parametrize("name", sorted(CHUNKED_RULES))
def test_lstm_rule_chunked_deployment_path_equals_the_whole_batch(monkeypatch, name, l1):
    """Three steps of a 50-coordinate model, whole and in chunks: features and updates of 20
    coordinates (the last one partial), each with network chunks of 7 rows (again with a
    partial one); GoMathL2O's feature scales from the chunks' norms at k = 0 (and, at λ = 0,
    its l1 bounds' zero scales left alone)."""
    torch.manual_seed(0)
    rule = CHUNKED_RULES[name]().double()
    for parameter in rule.out.parameters():  # learned BFGS starts at zero outputs
        torch.nn.init.normal_(parameter, std=0.5)
    x = torch.randn(1, 50, dtype=torch.float64)
    ctx = StepContext.constant(x, l1=l1, lipschitz=2.0)
    initial = rule.init_state(x, ctx)  # a random draw: the same one for both runs

    def run(chunk_rows):
        monkeypatch.setattr(kernels, "LSTM_CHUNK_ROWS", chunk_rows)
        monkeypatch.setattr(kernels, "STEP_CHUNK_ROWS", 20)
        point, state, trajectory = x, initial, []
        with torch.no_grad():
            for _ in range(3):
                point, state = rule.step(point, 2 * (point - 0.3), state, ctx)
                trajectory.append((point, state))
        return trajectory

    for (chunked, chunked_state), (whole, whole_state) in zip(run(7), run(1 << 14)):
        torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
        assert chunked_state.keys() == whole_state.keys()
        for key, value in whole_state.items():
            torch.testing.assert_close(chunked_state[key], value, rtol=1e-12, atol=1e-12, msg=key)


def test_chunked_step_refuses_an_update_with_state_that_is_not_per_coordinate(monkeypatch):
    class Reducing(GoMathRule):  # claims a coordinate-wise update but returns a per-instance value
        def update(self, x, grad, outputs, state, ctx):
            x_next, rule_state = super().update(x, grad, outputs, state, ctx)
            return x_next, {**rule_state, "total": x_next.sum(-1, keepdim=True)}

    monkeypatch.setattr(kernels, "LSTM_CHUNK_ROWS", 7)
    x = torch.randn(1, 50)
    ctx = StepContext.constant(x, lipschitz=2.0)
    rule = Reducing()
    with torch.no_grad(), pytest.raises(TypeError, match="'total' of another shape"):
        rule.step(x, x, rule.init_state(x, ctx), ctx)


def test_compiled_lstm_rule_trains_and_deploys_like_the_eager_rule(monkeypatch):
    monkeypatch.setenv("L2O_NATIVE", "0")  # the compiled cells run where the native kernel does not
    torch.manual_seed(0)
    eager = GoMathRule()
    compiled = copy.deepcopy(eager).compile_kernels()
    for fast, reference in zip(rollout_and_meta_gradient(compiled), rollout_and_meta_gradient(eager)):
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-6)

    def deploy(**options):
        torch.manual_seed(1)  # the drop-in optimizer draws its LSTM state from the global generator
        parameter = torch.nn.Parameter(torch.linspace(-1, 1, kernels.LSTM_CHUNK_ROWS + 5))  # a partial chunk
        optimizer = LearnedOptimizer([parameter], rule=copy.deepcopy(eager), lr=0.1, **options)
        for _ in range(3):
            optimizer.zero_grad()
            (parameter - 0.5).square().sum().backward()
            optimizer.step()
        return parameter.detach()

    torch.testing.assert_close(deploy(compile=True), deploy(), rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("L2O_NATIVE", "1")  # the native network with the compiled features and update,
    monkeypatch.setattr(GoMathRule, "_native_step_kernel", lambda self, x, ctx: None)  # not the fused step
    torch.testing.assert_close(deploy(compile=True), deploy(), rtol=1e-5, atol=1e-6)


def test_rules_without_kernels_refuse_compile():
    with pytest.raises(ValueError, match="no compiled kernels"):
        NTKGDRule().compile_kernels()
    with pytest.raises(ValueError, match="no compiled kernels"):
        LearnedOptimizer([torch.nn.Parameter(torch.zeros(3))], rule=FISTARule(), lr=0.1, compile=True)


@pytest.mark.parametrize("name", ["gomath", "mathl2o", "l2l", "rnnprop"])
def test_matmul_flop_count_is_what_torch_counts(name, monkeypatch):
    """The roofline's FLOPs per coordinate equal torch's own count of the network's matrix
    products (``FlopCounterMode``) over a batch of rows (without the alignment padding,
    which adds executed FLOPs that are not the network's)."""
    from torch.utils.flop_counter import FlopCounterMode

    from l2o.rules import build_rule

    monkeypatch.setattr(kernels, "ALIGNMENT", 1)
    monkeypatch.setenv("L2O_NATIVE", "0")  # torch's path (the native kernel's products are not torch's)
    rule = build_rule(name)
    rows = 37
    features = torch.randn(1, rows, rule.num_features)
    h = c = torch.zeros(rule.num_layers, rows, rule.hidden_size)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
        rule.network(features, h, c)  # torch's products (FlopCounterMode does not count oneDNN's)
    assert counter.get_total_flops() == rows * rule.matmul_flops_per_coordinate()


@pytest.mark.parametrize("name", ["gomath", "mathl2o", "l2l", "rnnprop"])
def test_matmul_shapes_are_the_products_the_network_runs(name, monkeypatch):
    """``matmul_shapes()`` lists the (K, N) of every ``mm``/``addmm`` of a forward over a batch
    of rows, in order (the shapes ``scripts/benchmark.py`` times)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from l2o.rules import build_rule

    products = []

    class Products(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default):
                left, right = args[-2:]
                products.append((left.shape[0], *right.shape))
            elif func is torch.ops.l2o.onednn_linear.default:  # kernels.dense: x, W (N, K)
                left, weight = args[:2]
                products.append((left.shape[0], weight.shape[1], weight.shape[0]))
            return func(*args, **(kwargs or {}))

    monkeypatch.setenv("L2O_NATIVE", "0")  # torch's path, whose products benchmark.py times
    rule = build_rule(name)
    rows = 37
    features = torch.randn(1, rows, rule.num_features)
    h = c = torch.zeros(rule.num_layers, rows, rule.hidden_size)
    with torch.no_grad(), Products():
        rule.network(features, h, c)
    assert products == [(rows, k, n) for k, n in rule.matmul_shapes()]


@pytest.mark.parametrize("name", ["gomath", "mathl2o", "l2l", "rnnprop"])
def test_sigmoid_count_is_what_the_lstm_layers_evaluate(name):
    """The σ evaluations per coordinate equal the elements that ``aten.sigmoid`` and
    ``aten.sigmoid_`` produce in the LSTM layers of a forward over a batch of rows."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from l2o.rules import build_rule

    class SigmoidElements(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in (torch.ops.aten.sigmoid.default, torch.ops.aten.sigmoid_.default):
                SigmoidElements.count += out.numel()
            return out

    rule = build_rule(name)
    rows = 37
    weights = rule._gate_weights()
    inputs = torch.randn(rows, rule.num_features)
    inputs = rule.input(inputs) if rule.input is not None else inputs
    h = c = torch.zeros(rule.num_layers, rows, rule.hidden_size)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False), SigmoidElements():
        stacked_lstm(inputs, h, c, weights)  # torch's σ (oneDNN evaluates the gates' in its epilogue)
    assert SigmoidElements.count == rows * rule.sigmoids_per_coordinate()


def small_lstm_case():
    """A seeded 2-layer LSTM's fused weights (3 features, hidden 20) and inputs, h, c for 30 rows."""
    torch.manual_seed(0)
    weights = kernels.lstm_gate_weights(torch.nn.LSTM(3, 20, 2))
    return weights, torch.randn(30, 3), torch.randn(2, 30, 20), torch.randn(2, 30, 20)


@pytest.mark.parametrize("compiled, library", [(False, "blas"), (True, "blas"), (False, "onednn"), (True, "onednn")])
def test_stacked_lstm_writes_into_given_rows_as_it_returns_them(compiled, library, use_products):
    """Exactly, with torch's products and with oneDNN's."""
    if compiled:
        pytest.importorskip("torch._inductor")
    use_products(library)
    weights, inputs, h, c = small_lstm_case()
    with torch.no_grad():
        expected = stacked_lstm(inputs, h, c, weights, compiled)
        out = (torch.full((2, 30, 20), float("nan")), torch.full((2, 30, 20), float("nan")))
        got = stacked_lstm(inputs, h, c, weights, compiled, out=out)
    assert got[1] is out[0] and got[2] is out[1]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("library, calls_per_layer", [("onednn", 3), ("blas", 0)])
def test_traced_fused_layers_use_the_chosen_products_without_a_graph_break(library, calls_per_layer,
                                                                           use_products):
    """Under ``torch.compile`` the layers' products are oneDNN's opaque operator where oneDNN
    was chosen, torch's ``mm``/``addmm`` otherwise, and choosing them does not break the graph."""
    import torch._dynamo

    use_products(library)
    weights, inputs, h, c = small_lstm_case()
    torch._dynamo.reset()  # a fresh trace reads the library chosen above
    explained = torch._dynamo.explain(lambda x: stacked_lstm(x, h, c, weights)[0].sum())(inputs)
    assert explained.graph_break_count == 0
    code = "".join(module.code for graph in explained.graphs for module in graph.modules()
                   if isinstance(module, torch.fx.GraphModule))  # the layers' forward and backward bodies
    # per layer with oneDNN: the gates' σ(xh Wᵀ + b), dz W, and dW = (xhᵀ dz)ᵀ from the saved xhᵀ
    assert code.count("torch.ops.l2o.onednn_linear(") == calls_per_layer * len(weights)
    torch._dynamo.reset()


def test_products_library_is_blas_on_intel_and_onednn_elsewhere(monkeypatch):
    """``L2O_PRODUCTS``: ``auto`` by vendor (torch's MKL on an Intel CPU, oneDNN on others),
    ``onednn`` and ``blas`` as named, anything else a clear error."""
    if not kernels.ONEDNN_BUILT:
        pytest.skip("torch built without oneDNN: always blas")
    monkeypatch.delenv("L2O_PRODUCTS", raising=False)
    intel = "blas" if torch.backends.mkl.is_available() else "onednn"
    assert kernels.products_library("GenuineIntel") == intel
    assert kernels.products_library("AuthenticAMD") == "onednn"
    assert kernels.products_library("") == "onednn"
    assert kernels.products_library() == kernels.products_library(kernels.cpu_vendor())
    for choice in ("onednn", "blas", "AUTO"):
        monkeypatch.setenv("L2O_PRODUCTS", choice)
        expected = intel if choice == "AUTO" else choice
        assert kernels.products_library("GenuineIntel") == expected
    monkeypatch.setenv("L2O_PRODUCTS", "mkl")
    with pytest.raises(ValueError, match="L2O_PRODUCTS='mkl': expected one of auto, onednn, blas"):
        kernels.products_library()


def test_products_switches_the_library_for_a_block_and_restores_it():
    """``kernels.products`` sets the library inside its block, restores the chosen one after it
    (an exception included), and refuses a library it does not know or torch lacks."""
    chosen = kernels.ONEDNN_PRODUCTS
    x = torch.randn(5, 4)
    with torch.no_grad():
        with kernels.products("blas"):
            assert not kernels.onednn_applies(x)
        assert kernels.ONEDNN_PRODUCTS == chosen
        if kernels.ONEDNN_BUILT:
            with pytest.raises(RuntimeError, match="inside"), kernels.products("onednn"):
                assert kernels.onednn_applies(x)
                raise RuntimeError("inside")
            assert kernels.ONEDNN_PRODUCTS == chosen
    with pytest.raises(ValueError, match="expected onednn or blas"), kernels.products("auto"):
        pass
    assert kernels.ONEDNN_PRODUCTS == chosen


def test_cpu_vendor_reads_the_vendor_id():
    """The vendor that ``/proc/cpuinfo`` names on Linux (and a string elsewhere)."""
    vendor = kernels.cpu_vendor()
    assert isinstance(vendor, str)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            listed = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("vendor_id")]
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if not listed:
        pytest.skip("/proc/cpuinfo names no vendor (not x86)")
    assert vendor == listed[0]


@pytest.mark.parametrize("library", ["onednn", "blas"])
@pytest.mark.parametrize("activation", ["none", "relu", "sigmoid"])
@pytest.mark.parametrize("bias", [True, False])
def test_dense_equals_the_product_and_activation(activation, bias, library, use_products):
    """oneDNN's fused product and epilogue, and torch's product and activation (float32 CPU, no
    autograd), against float64 references, and the float64 path exactly."""
    use_products(library)
    torch.manual_seed(0)
    x, weight = torch.randn(300, 24), torch.randn(80, 24)
    b = torch.randn(80) if bias else None
    reference = {"none": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid}[activation]
    with torch.no_grad():
        expected = reference(torch.nn.functional.linear(x.double(), weight.double(), None if b is None else b.double()))
        assert kernels.onednn_applies(x) == (library == "onednn")
        torch.testing.assert_close(kernels.dense(x, weight, b, activation).double(), expected, rtol=1e-5, atol=1e-5)
        assert not kernels.onednn_applies(x.double())
        torch.testing.assert_close(
            kernels.dense(x.double(), weight.double(), None if b is None else b.double(), activation),
            expected, rtol=1e-12, atol=1e-12)
        x[7, 3] = float("nan")  # NaN stays NaN through every activation, ReLU too (as torch's)
        assert kernels.dense(x, weight, b, activation)[7].isnan().all()
        assert not kernels.dense(x, weight, b, activation)[[6, 8]].isnan().any()
        with torch.backends.mkldnn.flags(enabled=False):
            assert not kernels.onednn_applies(x)
    assert not kernels.onednn_applies(x)  # autograd: torch's ops
