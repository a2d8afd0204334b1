"""engine/_native.py: the fused CPU kernels give what the numpy code they replace gives (the same bits
for the elementwise ones), and the engine runs without them."""
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine import _native
from engine.ops import elementwise

DTYPES = [np.float32, np.float64]


@pytest.fixture
def numpy_only(monkeypatch):
    """Run the numpy code instead of the kernels (which here take even the tests' small arrays)."""
    monkeypatch.setattr(_native, "SMALL", 0)

    def switch(on: bool):
        monkeypatch.setattr(_native, "ready", not on)
    return switch


def test_the_kernels_are_built():
    # setup.py builds them optionally (a machine without a C compiler still installs): here, where the
    # suite runs, a failed build must not pass unnoticed
    assert _native.ready or os.environ.get("ENGINE_NATIVE") == "0"


def _odd_values(rng, shape, dtype):
    a = rng.standard_normal(shape).astype(dtype)
    a.flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30]
    return a


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_grad_same_bits(dtype, numpy_only):
    rng = np.random.default_rng(0)
    x = _odd_values(rng, (7, 300), dtype)
    g = _odd_values(rng, (7, 300), dtype)[::-1].copy()
    out = {}
    for native in (True, False):
        numpy_only(not native)
        t = engine.tensor(x, requires_grad=True)
        engine.relu(t).backward(engine.tensor(g))
        out[native] = t.grad.numpy()
    assert np.array_equal(out[True].view(np.uint8), out[False].view(np.uint8))  # nan and -0 included


ADAMS = [("Adam", {}), ("AdamW", {"weight_decay": 0.1}), ("Adam", {"weight_decay": 0.1}),
         ("Adam", {"maximize": True}), ("Adam", {"amsgrad": True, "weight_decay": 0.05}),
         ("AdamW", {"amsgrad": True, "maximize": True}), ("Adam", {"betas": (0.3, 0.9)})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the numpy side, on nan and inf
@pytest.mark.parametrize("name,kwargs", ADAMS)
def test_adam_same_bits(dtype, name, kwargs, numpy_only):
    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((5, 67)).astype(dtype)
    grads = [_odd_values(rng, w0.shape, dtype) * 0.1 for _ in range(3)]
    grads[0].flat[:6] = 1.0  # the odd values in later steps only: nan and inf then spread
    out = {}
    for native in (True, False):
        numpy_only(not native)
        w = engine.nn.Parameter(engine.tensor(w0.copy()))
        opt = getattr(engine.optim, name)([w], lr=0.01, **kwargs)
        for g in grads:
            w.grad = engine.tensor(g)
            opt.step()
        state = opt.state_dict()["state"][0]
        out[native] = [w.detach().numpy()] + [state[k].numpy() for k in sorted(state) if k != "step"]
    for a, b in zip(out[True], out[False]):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,normalized,affine", [((4, 9, 40), (40,), True), ((3, 5, 6, 7), (6, 7), True),
                                                     ((130, 33), (33,), False), ((2, 5), (5,), "no bias")])
def test_layer_norm_matches_numpy(dtype, shape, normalized, affine, numpy_only):
    rng = np.random.default_rng(2)
    x0 = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g0 = rng.standard_normal(shape).astype(dtype)
    w0 = rng.standard_normal(normalized).astype(dtype)
    out = {}
    for native in (True, False):
        numpy_only(not native)
        m = engine.nn.LayerNorm(normalized, elementwise_affine=bool(affine), bias=affine is True,
                                dtype=engine.float32 if dtype == np.float32 else engine.float64)
        if affine:
            with engine.no_grad():
                m.weight.copy_(engine.tensor(w0))
        x = engine.tensor(x0, requires_grad=True)
        m(x).backward(engine.tensor(g0))
        out[native] = [m(x).detach().numpy(), x.grad.numpy()] + [p.grad.numpy() for p in m.parameters()]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(out[True], out[False]):
        np.testing.assert_allclose(a, b, **tol)


def test_layer_norm_weight_grad_does_not_depend_on_threads(monkeypatch):
    monkeypatch.setattr(engine._parallel, "GRAIN", 7)
    monkeypatch.setattr(_native, "SMALL", 0)
    before = engine.get_num_threads()

    def run(threads):
        engine.set_num_threads(threads)
        m = engine.nn.LayerNorm(16)
        x = engine.tensor(np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32))
        m(x).backward(engine.tensor(np.random.default_rng(4).standard_normal((300, 16)).astype(np.float32)))
        return m.weight.grad.numpy(), m.bias.grad.numpy()

    try:
        one, three = run(1), run(3)
    finally:
        engine.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(one, three))


def test_without_the_kernels():
    code = ("import engine, numpy as np\n"
            "from engine import _native\n"
            "assert not _native.ready\n"
            "m = engine.nn.Sequential(engine.nn.Linear(4, 8), engine.nn.ReLU(), engine.nn.LayerNorm(8))\n"
            "opt = engine.optim.Adam(m.parameters())\n"
            "m(engine.randn(3, 4)).sum().backward(); opt.step(); print('ok')\n")
    env = dict(os.environ, ENGINE_NATIVE="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


POOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=1, dilation=2),
         dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kwargs", POOLS)
def test_max_pool_matches_numpy(dtype, kwargs, numpy_only):
    rng = np.random.default_rng(5)
    x0 = rng.standard_normal((3, 4, 9, 8)).astype(dtype)
    x0[0, 0, :2, :2] = np.nan  # windows holding a nan: nan, and their first offset
    x0[1, 1] = np.round(x0[1, 1])  # ties: the first maximum
    x0[1, 2] = -np.inf
    out = {}
    for native in (True, False):
        numpy_only(not native)
        x = engine.tensor(x0, requires_grad=True)
        y, idx = engine.nn.functional.max_pool2d(x, return_indices=True, **kwargs)
        y.backward(engine.tensor(np.random.default_rng(6).standard_normal(y.shape).astype(dtype)))
        out[native] = y.detach().numpy(), idx.numpy(), x.grad.numpy()
    assert np.array_equal(out[True][0], out[False][0], equal_nan=True)
    assert np.array_equal(out[True][1], out[False][1])
    np.testing.assert_allclose(out[True][2], out[False][2], rtol=1e-6, atol=1e-6)  # overlaps add in another order


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [-1, 1])
def test_softmax_grad_matches_numpy(dtype, dim, numpy_only, monkeypatch):
    monkeypatch.setattr(engine._parallel, "GRAIN", 7)  # rows this small count as big
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal((4, 5, 37)).astype(dtype)
    x0[0, 0] = -np.inf  # a row of -inf: nan from softmax, and from its gradient
    g0 = rng.standard_normal(x0.shape).astype(dtype)
    out = {}
    for native in (True, False):
        numpy_only(not native)
        x = engine.tensor(x0, requires_grad=True)
        engine.softmax(x, dim).backward(engine.tensor(g0))
        out[native] = x.grad.numpy()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[True], out[False], equal_nan=True, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_gradient_same_bits(dtype, numpy_only, monkeypatch):
    """Rows picked by one index array (an embedding's gradient, x[idx] in general): the kernel adds each
    row's values in index order, as numpy's add.at, over columns split between threads."""
    monkeypatch.setattr(engine._parallel, "GRAIN", 7)
    rng = np.random.default_rng(8)
    weight0 = rng.standard_normal((11, 6)).astype(dtype)
    idx = rng.integers(-11, 11, (5, 40))  # repeats and negative indices
    g0 = rng.standard_normal((5, 40, 6)).astype(dtype) * 10
    out = {}
    for native in (True, False):
        numpy_only(not native)
        w = engine.tensor(weight0, requires_grad=True)
        w[engine.tensor(idx)].backward(engine.tensor(g0))
        e = engine.tensor(weight0, requires_grad=True)
        engine.nn.functional.embedding(engine.tensor(idx % 11), e).backward(engine.tensor(g0))
        out[native] = w.grad.numpy(), e.grad.numpy()
    for a, b in zip(out[True], out[False]):
        assert np.array_equal(a, b)
    with pytest.raises(IndexError):  # out of range: numpy's own error, not a write out of bounds
        engine.tensor(weight0, requires_grad=True)[engine.tensor(np.array([3, 11]))]


def test_an_out_of_date_library_falls_back_to_numpy(tmp_path):
    """A library built from older sources (a kernel missing) must not break `import engine`."""
    import shutil
    src = tmp_path / "engine"
    shutil.copytree(os.path.dirname(engine.__file__), src, ignore=shutil.ignore_patterns("_kernels*.so", "__pycache__"))
    (src / "_kernels.c").write_text("void relu_grad_f32(void) {}\n")  # one symbol only
    import sysconfig
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(src / f"_kernels{suffix}"), str(src / "_kernels.c")], check=True)
    code = "import engine, engine._native as n; print(n.ready)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False" and "out of date" in out.stderr


# Direct float32 convolutions: (in channels, out channels, input size, Geometry's kernel, padding, dilation).
# Channel counts off the kernels' tiles (8 outputs, 5 triples), asymmetric and zero padding, dilation, a
# one-row (conv1d) input, and a padding the transposed kernel cannot take (it falls back to columns).
CONVS = [
    (3, 5, (9, 11), (3, 3), ((1, 1), (1, 1)), (1, 1)),
    (1, 32, (12, 12), (3, 3), ((1, 1), (1, 1)), (1, 1)),
    (4, 17, (10, 7), (2, 5), ((0, 1), (2, 2)), (2, 1)),
    (6, 9, (1, 30), (1, 4), ((0, 0), (3, 0)), (1, 1)),
    (2, 8, (8, 8), (3, 3), ((0, 0), (0, 0)), (1, 1)),
    (2, 3, (6, 6), (3, 3), ((3, 3), (3, 3)), (1, 1)),
]


def _conv_ops(case, rng, out=None):
    """Each of the three convolution ops on random float32 operands: forward (with bias), the input's
    gradient and the weight's gradient, as numpy arrays."""
    from engine.ops import conv as C
    c_in, c_out, size, kernel, padding, dilation = case
    geo = C.Geometry(kernel, (1, 1), padding, dilation, 1)
    out = out or geo.out_size(size)
    x = rng.standard_normal((5, c_in) + size).astype(np.float32)
    w = rng.standard_normal((c_out, c_in) + kernel).astype(np.float32)
    b, b_t = rng.standard_normal(c_out).astype(np.float32), rng.standard_normal(c_in).astype(np.float32)
    g = rng.standard_normal((5, c_out) + tuple(out)).astype(np.float32)
    results = []
    for cls, args, params in ((C.Convolution, (x, w, b), dict(out=tuple(out))),
                              (C.ConvolutionTranspose, (g, w, b_t), dict(size=size)),
                              (C.ConvolutionWeight, (x, g), {})):
        op = cls(geo=geo, **params)
        op.xp = np
        results.append(op.forward(*args))
    return results


@pytest.mark.parametrize("case", CONVS)
def test_direct_convolutions_match_the_column_path(case, numpy_only, monkeypatch):
    ran = []
    monkeypatch.setattr(_native, "_conv", lambda *a, _f=_native._conv: ran.append(1) or _f(*a))
    out = {}
    for native in (True, False):
        numpy_only(not native)
        out[native] = _conv_ops(case, np.random.default_rng(8))
    for a, b in zip(out[True], out[False]):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())
    transposable = all(lo <= d * (k - 1) for (lo, _), d, k in zip(case[4], case[5], case[3]))
    assert len(ran) == 1 + transposable  # the kernels ran (forward, and the transposed one where it fits)


def test_a_cropped_convolution_output(numpy_only):
    """Convolution with an explicit output smaller than the input allows (a transposed convolution's
    backward with output_padding asks for one)."""
    out = {}
    for native in (True, False):
        numpy_only(not native)
        out[native] = _conv_ops(CONVS[0], np.random.default_rng(9), out=(7, 8))
    for a, b in zip(out[True], out[False]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_direct_convolutions_do_not_depend_on_threads(monkeypatch):
    monkeypatch.setattr(engine._parallel, "GRAIN", 7)
    monkeypatch.setattr(_native, "SMALL", 0)
    monkeypatch.setattr(_native, "CONV_SCRATCH", 2000)  # several blocks of samples for the weight gradient
    before = engine.get_num_threads()
    try:
        runs = [(engine.set_num_threads(n), _conv_ops(CONVS[2], np.random.default_rng(10)))[1] for n in (1, 3)]
    finally:
        engine.set_num_threads(before)
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


@pytest.mark.torch
def test_direct_convolution_layer_matches_torch(monkeypatch):
    """W2's second layer (32 -> 64 channels, 3x3, 'same'), forward and both gradients, against PyTorch."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_native, "SMALL", 0)
    rng = np.random.default_rng(11)
    x0, g0 = rng.standard_normal((6, 32, 14, 14), dtype=np.float32), rng.standard_normal((6, 64, 14, 14), dtype=np.float32)
    conv = engine.nn.Conv2d(32, 64, 3, padding=1)
    ref = torch.nn.Conv2d(32, 64, 3, padding=1)
    ref.load_state_dict({k: torch.from_numpy(v.numpy().copy()) for k, v in conv.state_dict().items()})
    x, tx = engine.tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    y, ty = conv(x), ref(tx)
    y.backward(engine.tensor(g0))
    ty.backward(torch.from_numpy(g0))
    for a, b in ((y, ty), (x.grad, tx.grad), (conv.weight.grad, ref.weight.grad), (conv.bias.grad, ref.bias.grad)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(2, 3, 9, 8), (1, 2, 4, 37), (2, 1, 64, 70), (3, 2, 2, 2), (1, 1, 5, 3)])
def test_max_pool_2x2_kernel_same_bits(shape, numpy_only, monkeypatch):
    """MaxPool2d(2)'s own kernel: the numpy code's values and offsets for any row length (one masked vector
    per 16 outputs), odd sizes, NaNs, ties and infinities."""
    if not _native.pool_2x2_ready:
        pytest.skip("the 2x2 pooling kernel needs AVX-512; this machine runs the numpy code")
    ran = []
    monkeypatch.setattr(_native, "max_pool_2x2", lambda x, _f=_native.max_pool_2x2: ran.append(1) or _f(x))
    rng = np.random.default_rng(12)
    x0 = np.round(rng.standard_normal(shape) * 2).astype(np.float32)  # many ties
    x0.flat[::7] = np.nan
    x0.flat[3::11] = np.inf
    x0.flat[5::13] = -np.inf
    out = {}
    for native in (True, False):
        numpy_only(not native)
        y, idx = engine.nn.functional.max_pool2d(engine.tensor(x0), 2, return_indices=True)
        out[native] = y.numpy(), idx.numpy()
    assert ran == [1]
    assert np.array_equal(out[True][0], out[False][0], equal_nan=True)
    assert np.array_equal(out[True][1], out[False][1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_same_bits(dtype, numpy_only):
    x = _odd_values(np.random.default_rng(5), (7, 300), dtype)
    out = {}
    for native in (True, False):
        numpy_only(not native)
        out[native] = engine.relu(engine.tensor(x)).numpy()
    assert np.array_equal(out[True].view(np.uint8), out[False].view(np.uint8))  # nan and -0 included


# ---- the C thread pool (engine/_pool.c) that runs every kernel ----------------------------------------

@pytest.fixture
def three_threads(monkeypatch):
    """Three engine threads, and a grain so small that the tests' arrays are split over all of them."""
    monkeypatch.setattr(engine._parallel, "GRAIN", 16)
    before = engine.get_num_threads()
    engine.set_num_threads(3)
    yield
    engine.set_num_threads(before)


def _relu_job(x):
    out = np.empty_like(x)
    parts = _native.run(_native._TASK["relu", x.dtype], x.size, 1, x.ctypes.data, out.ctypes.data)
    return parts, out


def test_the_pool_splits_a_kernel_over_the_threads(three_threads):
    x = _odd_values(np.random.default_rng(6), (1001,), np.float32)  # 1001: ranges of unequal length
    parts, out = _relu_job(x)
    assert parts == 3
    assert np.array_equal(out.view(np.uint8), np.maximum(x, np.float32(0)).view(np.uint8))
    engine.set_num_threads(1)
    assert _relu_job(x)[0] == 1


def test_the_pool_serves_threads_that_ask_at_once(three_threads):
    """A thread asking while another's job runs gets its job done on its own thread: right either way."""
    import threading
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(50_000).astype(np.float32) for _ in range(4)]
    wrong = []

    def work(x):
        for _ in range(50):
            if not np.array_equal(_relu_job(x)[1], np.maximum(x, np.float32(0))):
                wrong.append(x)

    threads = [threading.Thread(target=work, args=(x,)) for x in arrays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def _relu_in_child(x, conn):
    parts, out = _relu_job(x)
    conn.send((parts, np.array_equal(out, np.maximum(x, np.float32(0)))))


def test_a_forked_child_starts_its_own_workers(three_threads):
    """The parent's workers do not exist in a forked child (an RQ work horse): the child's pool must
    start new ones rather than wait forever for the parent's."""
    import multiprocessing
    x = np.random.default_rng(8).standard_normal(10_000).astype(np.float32)
    assert _relu_job(x)[0] == 3  # the parent's workers exist now
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_relu_in_child, args=(x, child_end))
    child.start()
    got = parent_end.recv() if parent_end.poll(120) else None  # a hang guard, not a speed limit
    child.join(5)
    if child.is_alive():
        child.kill()
    assert got == (3, True), "the forked child's pool did not run its job"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims,keepdim", [((0,), False), ((0, 1), True), ((0, 1), False)])
def test_sums_over_leading_dims(dtype, dims, keepdim, monkeypatch):
    """The kernel's column sums (a bias's gradient): numpy's values, and the same bits whatever the
    thread count (blocks of rows, summed in order)."""
    monkeypatch.setattr(_native, "SMALL", 0)
    monkeypatch.setattr(engine._parallel, "GRAIN", 16)
    x = np.random.default_rng(9).standard_normal((300, 7, 5)).astype(dtype)
    before = engine.get_num_threads()
    try:
        runs = [(engine.set_num_threads(n), engine.tensor(x).sum(dims, keepdim=keepdim).numpy())[1] for n in (1, 3)]
    finally:
        engine.set_num_threads(before)
    assert np.array_equal(runs[0], runs[1])
    expected = x.astype(np.float64).sum(dims, keepdims=keepdim)
    assert runs[0].shape == expected.shape and runs[0].dtype == dtype
    np.testing.assert_allclose(runs[0], expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_a_broadcast_bias_gradient_takes_the_kernel(monkeypatch):
    """x + b with b broadcast over rows: b's gradient (sum_to) is the column sums of the output's."""
    monkeypatch.setattr(_native, "SMALL", 0)
    calls = []
    monkeypatch.setattr(_native, "sum_rows", lambda x, f=_native.sum_rows: calls.append(x.shape) or f(x))
    x = engine.tensor(np.ones((70, 3), np.float32))
    b = engine.tensor(np.zeros(3, np.float32), requires_grad=True)
    g = np.random.default_rng(10).standard_normal((70, 3)).astype(np.float32)
    (x + b).backward(engine.tensor(g))
    assert calls == [(70, 3)]
    np.testing.assert_allclose(b.grad.numpy(), g.sum(0), rtol=1e-6)


def test_the_pool_under_many_back_to_back_jobs(three_threads):
    """Jobs of every size one after another: a worker late for one job must never take a part of the
    next with the last one's range (parts are claimed with the job's number)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(5000).astype(np.float32)
    expected = np.maximum(x, np.float32(0))
    for size in rng.integers(1, 5000, 3000):
        parts, out = _relu_job(x[:size])
        assert np.array_equal(out, expected[:size]), size


ATTENTION_MASKS = ["none", "causal", "row", "all_masked_row"]


def _attention_mask(kind, L, S):
    if kind == "none":
        return None
    if kind == "row":  # one (S,) row for every query
        return np.where(np.arange(S) % 3 == 0, -np.inf, 0.0).astype(np.float32)
    mask = np.triu(np.full((L, S), -np.inf, np.float32), 1)
    if kind == "all_masked_row":
        mask[2] = -np.inf  # a query with nothing to attend to
    return mask


@pytest.mark.parametrize("kind", ATTENTION_MASKS)
@pytest.mark.parametrize("safe", [True, False])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_attention_softmax_matches_numpy(kind, safe, numpy_only):
    """The fused softmax of attention's weights: numpy's values (its exp is within 2 ulp of numpy's),
    and the same zeros and nans: masked entries, a row with everything masked, inf and nan scores."""
    from engine.nn.functional.attention import AttentionWeights
    rng = np.random.default_rng(12)
    L, S = 7, 37  # rows not a multiple of the kernel's 16 lanes
    q = (rng.standard_normal((3, 2, L, 5)) * 4).astype(np.float32)
    k = (rng.standard_normal((3, 2, S, 5)) * 4).astype(np.float32)
    q[0, 0, 1, 0], q[0, 1, 3, 0], q[1, 0, 4, 0] = np.inf, np.nan, -np.inf  # an inf, a nan and a -inf row
    k[2, 1, :, :] *= 40  # scores that underflow exp to denormals and zeros
    mask = _attention_mask(kind, L, S)
    out = {}
    for native in (True, False):
        numpy_only(not native)
        op = AttentionWeights(scale=0.37, safe=safe)
        op.xp = np
        with np.errstate(all="ignore"):
            out[native] = op.forward(q.copy(), k.copy(), mask)
    np.testing.assert_allclose(out[True], out[False], rtol=3e-6, atol=1e-30)  # nan where numpy has nan
    assert np.array_equal(out[True] == 0, out[False] == 0)  # masked entries exactly 0
