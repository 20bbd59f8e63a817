"""The native network kernel equals the torch path it replaces (values, states, steps)."""

import copy

import pytest
import torch

from l2o.optim import LearnedOptimizer
from l2o.rules import build_rule, native_network
from l2o.rules.gomath import GoMathRule

SHAPE = native_network.NetworkShape(3, 20, 2, 3, True)
# every instruction set this CPU runs the kernel on (AVX-512 CPUs: both), else one skipped case
BUILDS = ([pytest.param(isa.name, id=isa.name) for isa in native_network.available()
           if native_network.library(SHAPE, isa) is not None]
          or [pytest.param(None, marks=pytest.mark.skip(reason="the native kernel needs an AVX2 or AVX-512 CPU "
                                                                "and a C++ compiler"))])
TORCH = "0"  # L2O_NATIVE for torch's path


@pytest.fixture(params=BUILDS)
def isa(request, monkeypatch):
    """The name of an instruction set the kernel runs on (an ``L2O_NATIVE`` value), set."""
    monkeypatch.setenv("L2O_NATIVE", request.param)
    return request.param


def forward(rule, features, h, c, mode, monkeypatch):
    """``rule.network`` without autograd with ``L2O_NATIVE=mode``: through the native kernel
    built for that instruction set, or torch's path (:data:`TORCH`)."""
    monkeypatch.setenv("L2O_NATIVE", mode)
    with torch.no_grad():
        return rule.network(features, h, c)


def assert_as_accurate_as_the_torch_path(rule, isa, monkeypatch, rows=4096):
    """On ``rows`` rows of :func:`case`, the kernel's outputs are as close to a float64
    evaluation of the network as torch's float32 path's are: their RMS error at most twice
    torch's, their largest at most 3 times (plus an ulp of the outputs' size). Both round, and
    a deeper or wider network rounds more on both paths, so the paths' distance from each other
    grows with it; an inaccurate σ or a wrong weight shows here against the float64 values.
    Over thousands of rows the errors' statistics are stable (over 4 rules × 5 seeds the
    ratios were 1.1 in the median, at most 1.6 for the RMS and 1.9 for the largest error),
    where the largest error of a handful of rows is luck."""
    features, h, c = case(rule, rows)
    native = forward(rule, features, h, c, isa, monkeypatch)
    reference = forward(rule, features, h, c, TORCH, monkeypatch)
    exact = forward(copy.deepcopy(rule).double(), features.double(), h.double(), c.double(), TORCH, monkeypatch)
    for fast, slow, truth, what in zip(native, reference, exact, ("raw", "h", "c")):
        assert fast.shape == truth.shape
        errors = [t.double() - truth for t in (fast, slow)]
        rms, reference_rms = (e.pow(2).mean().sqrt().item() for e in errors)
        largest, reference_largest = (e.abs().max().item() for e in errors)
        assert rms <= 2 * reference_rms, (what, rms, reference_rms)
        assert largest <= 3 * reference_largest + 2**-23 * truth.abs().max().item(), (what, largest, reference_largest)


def case(rule, rows, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for parameter in rule.parameters():  # larger than the default init: σ and the cell's ranges in use
        parameter.data = torch.randn(parameter.shape, generator=generator) * 0.6
    features = torch.randn(1, rows, rule.num_features, generator=generator) * 3
    h = torch.randn(rule.num_layers, rows, rule.hidden_size, generator=generator)
    c = torch.randn(rule.num_layers, rows, rule.hidden_size, generator=generator) * 2
    return features, h, c


@pytest.mark.parametrize("rows", [1, 3, 4, 5, 37, 8195])  # partial groups of 2 and 4; 8,195 rows in 2 threads
@pytest.mark.parametrize("name", ["gomath", "mathl2o", "l2l", "rnnprop"])
def test_native_network_equals_the_torch_path(name, rows, isa, monkeypatch):
    rule = build_rule(name)
    features, h, c = case(rule, rows)
    native = forward(rule, features, h, c, isa, monkeypatch)
    reference = forward(rule, features, h, c, TORCH, monkeypatch)
    for fast, slow, what in zip(native, reference, ("raw", "h", "c")):
        assert fast.shape == slow.shape
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=2e-6, msg=what)
    assert not torch.equal(native[0], reference[0]) or rows < 4  # it did run the kernel (other rounding)
    monkeypatch.setenv("L2O_NATIVE", isa)
    with torch.no_grad():  # the kernel built for the instruction set asked for
        assert rule._native_kernel(features[0]).vector == {"avx512": 16, "avx2": 8}[isa]


@pytest.mark.parametrize("name", ["gomath", "mathl2o", "l2l", "rnnprop"])
def test_native_network_is_as_accurate_as_the_torch_path(name, isa, monkeypatch):
    assert_as_accurate_as_the_torch_path(build_rule(name), isa, monkeypatch)


@pytest.mark.parametrize("hidden_size, num_layers", [(4, 1), (12, 2), (36, 3)])  # 12: AVX2's H = 8q + 4 only
def test_native_network_takes_other_sizes(hidden_size, num_layers, isa, monkeypatch):
    rule = build_rule("gomath", hidden_size=hidden_size, num_layers=num_layers)
    if hidden_size % native_network.instruction_set().vector != 4:
        with torch.no_grad():
            assert rule._native_kernel(torch.zeros(1, 3)) is None
        return
    with torch.no_grad():  # compiled for this shape, not the torch path after a failed build
        assert rule._native_kernel(torch.zeros(1, 3)) is not None
    assert_as_accurate_as_the_torch_path(rule, isa, monkeypatch)


def test_rows_are_independent_of_threads_and_chunks(isa, monkeypatch):
    """Each row's arithmetic is the same wherever it falls: one thread or two, whole or in two
    calls, bit for bit."""
    rule = build_rule("gomath")
    features, h, c = case(rule, 9001)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = forward(rule, features, h, c, isa, monkeypatch)
        torch.set_num_threads(2)
        double = forward(rule, features, h, c, isa, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    parts = [forward(rule, features[:, rows], h[:, rows], c[:, rows], isa, monkeypatch)
             for rows in (slice(0, 4321), slice(4321, 9001))]
    for index, (one, two) in enumerate(zip(single, double)):
        assert torch.equal(one, two)
        assert torch.equal(one, torch.cat([part[index] for part in parts], dim=1))  # (1, n, K), (L, n, H)


def test_packed_weights_follow_parameter_updates(isa, monkeypatch):
    rule = build_rule("gomath")
    features, h, c = case(rule, 64)
    before = forward(rule, features, h, c, isa, monkeypatch)[0]
    with torch.no_grad():
        rule.out.bias.add_(1.0)  # in place: same storage, a new version
    after = forward(rule, features, h, c, isa, monkeypatch)[0]
    torch.testing.assert_close(after, before + 1.0, rtol=1e-6, atol=1e-6)
    rule.load_state_dict(build_rule("gomath").state_dict())
    torch.testing.assert_close(forward(rule, features, h, c, isa, monkeypatch)[0],
                               forward(rule, features, h, c, TORCH, monkeypatch)[0], rtol=1e-5, atol=2e-6)


def test_weights_packed_for_other_lanes_are_refused(isa, monkeypatch):
    """A kernel reads weights packed for its own lanes: another packing is an error, not
    garbage (the rule repacks when the instruction set changes: the test above and this one)."""
    rule = build_rule("gomath")
    features, h, c = case(rule, 8)
    with torch.no_grad():
        kernel = rule._native_kernel(features[0])
    other = 24 - kernel.vector  # 16 for AVX2's 8 lanes, 8 for AVX-512's 16
    packed = native_network.pack_weights(rule.lstm, rule.hidden[0], rule.out, other)
    with pytest.raises(ValueError, match="packed for"):
        native_network.network_rows(kernel, packed, features[0], h, c, torch.empty_like(h), torch.empty_like(c))
    torch.testing.assert_close(forward(rule, features, h, c, isa, monkeypatch)[0],
                               forward(rule, features, h, c, TORCH, monkeypatch)[0], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("value", ["2", "avx", "sse"])
def test_an_unknown_l2o_native_value_is_an_error(value, monkeypatch):
    monkeypatch.setenv("L2O_NATIVE", value)
    with pytest.raises(ValueError, match="L2O_NATIVE"):
        native_network.instruction_set()


def test_drop_in_steps_equal_the_torch_path(isa, monkeypatch):
    """Three drop-in steps on 20,005 parameters (the chunked step: features and update in chunks,
    the network in one native call per chunk)."""
    torch.manual_seed(0)
    rule = build_rule("gomath")

    def deploy(mode):
        monkeypatch.setenv("L2O_NATIVE", mode)
        torch.manual_seed(1)
        parameter = torch.nn.Parameter(torch.linspace(-1, 1, 20005))
        optimizer = LearnedOptimizer([parameter], rule=copy.deepcopy(rule), lr=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            (parameter - 0.5).square().sum().backward()
            optimizer.step()
        return parameter.detach()

    torch.testing.assert_close(deploy(isa), deploy(TORCH), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [{}, {"r_scale": 0.5, "q_norm": "sigmoid1", "b_scale": 0.9, "lr": 0.07}])
def test_the_fused_gomath_step_equals_the_chunked_and_torch_paths(config, isa, monkeypatch):
    """GoMathL2O's whole drop-in step in one native call (features, network, update) gives the
    parameters, history and LSTM states of the chunked step (the same network kernel, features
    and update in torch: to a few ulps of the largest coordinate) and of torch's path: with
    λ > 0 (coordinates at 0 and a shrinking prox), the rule's own lr or 0.9999 / L, other
    squash scales, and 20,003 coordinates (a partial group of 2 and of 4)."""
    calls = []
    fused = native_network.gomath_rows
    monkeypatch.setattr(native_network, "gomath_rows", lambda *args: calls.append(1) or fused(*args))
    rule = build_rule("gomath", **config)
    for parameter in rule.parameters():  # larger than the default init: the heads' σ in use
        parameter.data.mul_(3)
    chunked = GoMathRule._native_step_kernel

    def deploy(path):
        monkeypatch.setenv("L2O_NATIVE", TORCH if path == "torch" else isa)
        monkeypatch.setattr(GoMathRule, "_native_step_kernel",
                            chunked if path == "fused" else lambda self, x, ctx: None)
        torch.manual_seed(1)
        parameter = torch.nn.Parameter(torch.randn(20003))
        parameter.data[::7] = 0
        target = torch.randn(20003)
        optimizer = LearnedOptimizer([parameter], rule=copy.deepcopy(rule), lipschitz=4.0, l1=0.5)
        for _ in range(3):
            optimizer.zero_grad()
            (2 * (parameter - target).square().sum()).backward()
            optimizer.step()
        state = optimizer.state[parameter]["rule_state"]
        return {"x": parameter.detach(), **{name: state[f"inner.{name}"] for name in ("history", "h", "c")}}

    native = deploy("fused")
    assert len(calls) == 3  # every step through the fused kernel
    assert (native["x"] == 0).sum() > 500  # the prox shrank coordinates to 0
    for other, rtol, atol in ((deploy("chunked"), 0, 2**-21), (deploy("torch"), 1e-5, 1e-6)):
        for name, value in native.items():
            torch.testing.assert_close(value, other[name], rtol=rtol, atol=atol * other[name].abs().max().item(),
                                       msg=name)
    assert len(calls) == 3


def test_the_fused_gomath_step_keeps_nan_where_the_torch_path_does(isa, monkeypatch):
    """A NaN or infinite gradient coordinate (``check_finite=False``) gives the torch path's NaN
    pattern and values in the parameters and the history."""
    rule = build_rule("gomath")

    def deploy(mode):
        monkeypatch.setenv("L2O_NATIVE", mode)
        torch.manual_seed(1)
        parameter = torch.nn.Parameter(torch.randn(20003))
        parameter.data[1::5] = 0
        optimizer = LearnedOptimizer([parameter], rule=copy.deepcopy(rule), lr=0.1, l1=0.1, check_finite=False)
        for step in range(2):  # the features' scales from a finite first gradient
            parameter.grad = torch.randn(20003)
            if step:
                parameter.grad[::1000], parameter.grad[3::1000] = float("nan"), float("inf")
            optimizer.step()
        return parameter.detach(), optimizer.state[parameter]["rule_state"]["inner.history"]

    for native, reference in zip(deploy(isa), deploy(TORCH)):
        assert torch.equal(native.isnan(), reference.isnan()) and 0 < native.isnan().sum() < 100
        torch.testing.assert_close(native, reference, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_other_gomath_heads_step_on_the_chunked_path(isa, monkeypatch):
    """Softplus heads (the logistic configuration) are not σ-type: their step takes the chunked
    path (features and update in torch, the network natively)."""
    monkeypatch.setattr(native_network, "gomath_rows", lambda *args: pytest.fail("fused step for softplus heads"))
    parameter = torch.nn.Parameter(torch.randn(20003))
    optimizer = LearnedOptimizer([parameter], rule=build_rule("gomath").logistic(), lr=0.1, l1=0.01)
    parameter.grad = torch.randn(20003)
    optimizer.step()
    assert torch.isfinite(parameter).all()


def test_kernel_does_not_apply_to_float64_autograd_or_odd_sizes(monkeypatch):
    rule = build_rule("gomath")
    rows = torch.zeros(5, 3)
    assert rule.double()._native_kernel(rows.double()) is None
    with torch.enable_grad():
        assert build_rule("gomath")._native_kernel(rows) is None
    assert not native_network.supported(native_network.NetworkShape(3, 21, 2, 3, True))
    assert not native_network.supported(native_network.NetworkShape(3, 20, 2, 5, True))  # 4 heads fill a vector
    monkeypatch.setenv("L2O_NATIVE", "0")
    assert not native_network.supported(SHAPE)


def test_a_failing_compiler_warns_once_and_falls_back_to_torch(monkeypatch, tmp_path):
    if not native_network.supported(SHAPE):
        pytest.skip("the native kernel needs an AVX2 or AVX-512 CPU")
    monkeypatch.setenv("L2O_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that exits 1
    shape = native_network.NetworkShape(3, 20, 2, 2, False)  # a shape no other test builds
    isa = native_network.instruction_set()
    native_network.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="compiling the native network kernel failed"):
            assert native_network.library(shape, isa) is None
        assert native_network.library(shape, isa) is None  # remembered: no second warning, no retry
    finally:
        native_network.library.cache_clear()
    assert not list(tmp_path.rglob("*.so"))


def test_an_unusable_cache_warns_and_falls_back_to_torch(monkeypatch, tmp_path):
    if not native_network.supported(SHAPE):
        pytest.skip("the native kernel needs an AVX2 or AVX-512 CPU")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("L2O_CACHE_DIR", str(blocker))  # the cache would go under a file
    shape = native_network.NetworkShape(3, 20, 1, 2, False)
    native_network.library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="native network kernel is unavailable"):
            assert native_network.library(shape, native_network.instruction_set()) is None
    finally:
        native_network.library.cache_clear()
    rule = build_rule("gomath")
    features, h, c = case(rule, 9)
    monkeypatch.setenv("CXX", "false")  # every shape unavailable: the network still runs, on torch's path
    native_network.library.cache_clear()
    try:
        with pytest.warns(UserWarning):
            raw = forward(rule, features, h, c, "1", monkeypatch)[0]
    finally:
        native_network.library.cache_clear()
    torch.testing.assert_close(raw, forward(rule, features, h, c, TORCH, monkeypatch)[0], rtol=0, atol=0)


@pytest.mark.parametrize("library", ["onednn", "blas"])
def test_non_finite_inputs_give_what_the_torch_path_gives(isa, library, monkeypatch, use_products):
    """±∞ saturate the gates as torch's σ does, and NaN stays NaN (a clamp must not hide it),
    through the hidden layer's ReLU too, as torch's ReLU keeps it, whichever library runs
    torch's path's products."""
    use_products(library)
    rule = build_rule("gomath")
    features, h, c = case(rule, 8)
    features[0, 1, 0], features[0, 2, 1], features[0, 5, 2] = float("inf"), float("-inf"), float("nan")
    h[1, 6, 3] = float("nan")
    native = forward(rule, features, h, c, isa, monkeypatch)
    reference = forward(rule, features, h, c, TORCH, monkeypatch)
    for fast, slow in zip(native, reference):
        assert torch.equal(fast.isnan(), slow.isnan())
        torch.testing.assert_close(fast, slow, rtol=1e-5, atol=2e-6, equal_nan=True)
    assert native[1][:, 5].isnan().all() and not native[1][:, 1].isnan().any()  # h' of the NaN row; the +∞ row
    assert native[0][0, 5].isnan().all() and native[0][0, 6].isnan().all()  # the heads of both NaN rows


def test_denormals_are_flushed_in_the_kernel_only(isa, monkeypatch):
    """The kernel flushes denormals (MXCSR FTZ, DAZ: a denormal operand costs a microcode assist)
    and gives the caller's mode back: with the forget gate open (σ(40) = 1 in float32) and the
    input gate shut (σ(−40) ≈ 4e-18, times g = tanh(0) = 0), c' = c, which torch's path keeps
    as the denormal 1e-39 and the kernel reads as 0, and which a normal c passes unchanged."""
    rule = build_rule("gomath", hidden_size=20, num_layers=1)
    with torch.no_grad():
        for parameter in rule.lstm.parameters():
            parameter.zero_()
        rule.lstm.bias_ih_l0[:20] = -40.0  # i
        rule.lstm.bias_ih_l0[20:40] = 40.0  # f
    features, h, c = torch.zeros(1, 8, 3), torch.zeros(1, 8, 20), torch.full((1, 8, 20), 1e-39)
    c[0, 4:] = 0.5
    native = forward(rule, features, h, c, isa, monkeypatch)
    reference = forward(rule, features, h, c, TORCH, monkeypatch)
    assert torch.equal(reference[2], c) and torch.equal(native[2][0, 4:], c[0, 4:])
    assert torch.equal(native[2][0, :4], torch.zeros(4, 20))
    assert (torch.tensor(1e-39) * 1.0).item() != 0.0  # this thread's mode is its own again
