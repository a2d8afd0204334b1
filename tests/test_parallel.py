"""Intra-op threads (engine/_parallel.py): split passes give the same bits as unsplit ones."""
import numpy as np
import pytest

import engine
from engine import _parallel


@pytest.fixture
def small_grain(monkeypatch):
    """Split even small arrays, into uneven pieces (3 threads, chunks not dividing the ranges)."""
    monkeypatch.setattr(_parallel, "GRAIN", 7)
    monkeypatch.setattr(_parallel, "CHUNK", 4)
    before = engine.get_num_threads()
    yield
    engine.set_num_threads(before)


def _run(threads, fn):
    engine.set_num_threads(threads)
    return fn()


def test_set_num_threads():
    before = engine.get_num_threads()
    try:
        engine.set_num_threads(3)
        assert engine.get_num_threads() == 3
        with pytest.raises(ValueError):
            engine.set_num_threads(0)
    finally:
        engine.set_num_threads(before)


def test_parallel_for_covers_the_range(small_grain):
    engine.set_num_threads(3)
    seen = []
    _parallel.parallel_for(100, lambda a, b: seen.append((a, b)))
    assert sorted(seen) == [(0, 33), (33, 66), (66, 100)]


def test_relu_and_its_gradient_split(small_grain):
    def step():
        x = engine.tensor(np.random.default_rng(0).standard_normal((6, 50)).astype(np.float32),
                          requires_grad=True)
        y = engine.relu(x)
        y.backward(engine.ones_like(y) * 3)
        return y.detach().numpy(), x.grad.numpy()

    (y1, g1), (y3, g3) = _run(1, step), _run(3, step)
    assert np.array_equal(y1, y3) and np.array_equal(g1, g3)
    assert np.array_equal(g3, np.where(y3 > 0, 3, 0))


@pytest.mark.parametrize("opt", ["Adam", "AdamW"])
def test_adam_split(small_grain, opt):
    def run():
        engine.manual_seed(0)
        w = engine.nn.Parameter(engine.randn(7, 13))
        o = getattr(engine.optim, opt)([w], lr=0.1, weight_decay=0.1)
        for _ in range(3):
            o.zero_grad()
            (w * w).sum().backward()
            o.step()
        return w.detach().numpy()

    assert np.array_equal(_run(1, run), _run(3, run))


def test_ufunc_split_dtype_and_fallback(small_grain):
    engine.set_num_threads(3)
    a = np.arange(100, dtype=np.int32).reshape(10, 10)
    out = _parallel.ufunc(np, np.maximum, a, np.int32(50))
    assert out.dtype == np.int32 and np.array_equal(out, np.maximum(a, 50))
    t = a.T  # not contiguous: one call on the whole
    assert np.array_equal(_parallel.ufunc(np, np.maximum, t, np.int32(50)), np.maximum(t, 50))


@pytest.mark.parametrize("pool", [lambda x: engine.nn.functional.max_pool2d(x, 2),
                                  lambda x: engine.nn.functional.max_pool2d(x, 3, 2, 1),
                                  lambda x: engine.nn.functional.avg_pool2d(x, 3, 2, 1)])
def test_pooling_split_over_samples(small_grain, pool):
    def run():
        x = engine.tensor(np.random.default_rng(0).standard_normal((5, 2, 6, 6)).astype(np.float32),
                          requires_grad=True)
        y = pool(x)
        y.backward(engine.ones_like(y))
        return y.detach().numpy(), x.grad.numpy()

    (y1, g1), (y3, g3) = _run(1, run), _run(3, run)
    assert np.array_equal(y1, y3) and np.array_equal(g1, g3)


@pytest.mark.parametrize("channels,kwargs", [(4, dict(padding=1)), (4, dict(stride=2, padding=1)),
                                             (4, dict(padding="same", groups=2)), (1, dict(padding=1))])
def test_convolution_blocks_split_over_threads(small_grain, monkeypatch, channels, kwargs):
    """Blocks of samples go to the threads, each running its own GEMMs with BLAS on one thread (restored
    after); the weight gradient adds the blocks' sums in block order, so the bits match one thread's."""
    from engine.ops import conv
    from threadpoolctl import threadpool_info
    monkeypatch.setattr(conv, "BLOCK", 40)
    monkeypatch.setattr(conv, "ROW_BLOCK", 70)  # one or two samples per block: 7 blocks or more

    def run():
        rng = np.random.default_rng(0)
        x = engine.tensor(rng.standard_normal((7, channels, 6, 5)).astype(np.float32), requires_grad=True)
        w = engine.tensor(rng.standard_normal((12, channels // kwargs.get("groups", 1), 3, 3)).astype(np.float32),
                          requires_grad=True)  # with one channel, 9 < 12: the weight gradient goes by sample
        y = engine.nn.functional.conv2d(x, w, **kwargs)
        y.backward(engine.tensor(rng.standard_normal(y.shape).astype(np.float32)))
        return y.detach().numpy(), x.grad.numpy(), w.grad.numpy()

    blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    one, three = _run(1, run), _run(3, run)
    for a, b in zip(one, three):
        assert np.array_equal(a, b)
    assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == blas


def _masked_row():
    mask = np.ones((3, 1, 6, 6), dtype=bool)
    mask[1, 0, 2] = False  # a query with nothing to attend to: zeros
    return engine.tensor(mask)


@pytest.mark.parametrize("fn", [lambda x: engine.softmax(x, -1), lambda x: engine.softmax(x, 2),
                                lambda x: engine.nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True),
                                lambda x: engine.nn.functional.scaled_dot_product_attention(
                                    x, x, x, attn_mask=_masked_row()),
                                lambda x: engine.nn.functional.layer_norm(x, (6,), x[0, 0, 0] + 1, x[1, 1, 1])])
def test_rows_split(small_grain, fn):
    """Softmax, its gradient, attention and layer norm run on pieces of whole rows (or (L, S) matrices)
    per thread."""
    def run():
        x = engine.tensor(np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32),
                          requires_grad=True)
        y = fn(x)
        y.backward(engine.tensor(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)))
        return y.detach().numpy(), x.grad.numpy()

    (y1, g1), (y3, g3) = _run(1, run), _run(3, run)
    assert np.array_equal(y1, y3) and np.array_equal(g1, g3)


def test_split_passes_keep_the_callers_quiet_error_state(small_grain):
    engine.set_num_threads(3)
    a = engine.tensor(np.full((6, 50), np.inf, dtype=np.float32))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bool(engine.isnan(a - a).all()) and bool(engine.isnan(a * 0).all())


def test_row_reductions_split(small_grain):
    def run():
        x = engine.tensor(np.random.default_rng(1).standard_normal((6, 4, 30)).astype(np.float32),
                          requires_grad=True)
        ln = engine.nn.functional.layer_norm(x, (30,))
        y = engine.softmax(ln, -1) * x.sum(-1, keepdim=True) + x.mean(2, keepdim=True)
        y.backward(engine.ones_like(y))
        return y.detach().numpy(), x.grad.numpy()

    (y1, g1), (y3, g3) = _run(1, run), _run(3, run)
    assert np.array_equal(y1, y3) and np.array_equal(g1, g3)


def test_the_caller_takes_ranges_no_worker_has_started(small_grain):
    import threading
    engine.set_num_threads(3)
    _parallel.parallel_for(100, lambda a, b: None)  # the pool exists
    release = threading.Event()
    busy = [_parallel._pool.submit(release.wait) for _ in range(2)]  # both workers occupied
    try:
        seen = []
        _parallel.parallel_for(100, lambda a, b: seen.append((a, b)))
        assert sorted(seen) == [(0, 33), (33, 66), (66, 100)]
    finally:
        release.set()
        for f in busy:
            f.result()


def test_empty_tensors():
    x = engine.zeros(0, 5, requires_grad=True)
    engine.relu(x).sum().backward()
    assert x.grad.shape == (0, 5)
    w = engine.nn.Parameter(engine.zeros(0))
    w.grad = engine.zeros(0)
    engine.optim.Adam([w]).step()


# After a GEMM on two BLAS threads, the CPU time the process spends while its main thread sleeps
# (numpy imported first, as in most scripts and in Fita's workers; the engine must still take effect).
_IDLE_CPU = """
import os, sys, time
import numpy as np
import engine
from threadpoolctl import threadpool_info, threadpool_limits
if not any(i["internal_api"] == "openblas" for i in threadpool_info()):
    sys.exit(3)
threadpool_limits(2, user_api="blas")
a = np.ones((1024, 1024), dtype=np.float32)
a @ a
start = time.process_time()
time.sleep(0.3)
print(os.environ["OPENBLAS_THREAD_TIMEOUT"], time.process_time() - start)
"""


def _idle_cpu(env_timeout=None):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS")}
    if env_timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_timeout
    run = subprocess.run([sys.executable, "-c", _IDLE_CPU], env=env, capture_output=True, text=True, timeout=120)
    if run.returncode == 3:
        pytest.fail("numpy's BLAS is not OpenBLAS: quiet_blas_threads() has nothing to act on (see _parallel.py)")
    assert run.returncode == 0, run.stderr
    timeout, cpu = run.stdout.split()
    return timeout, float(cpu)


def test_idle_blas_threads_sleep_instead_of_spinning():
    """OpenBLAS's default lets each idle thread spin ~0.1 s after a GEMM (measured: 0.13 s of CPU in the
    0.3 s sleep); after ``import engine`` they sleep within ~30 µs (measured: under 0.005 s)."""
    timeout, cpu = _idle_cpu()
    assert timeout == str(_parallel.BLAS_IDLE_SPIN)
    assert cpu < 0.05, f"BLAS threads used {cpu:.3f} s of CPU while the process slept"


def test_a_users_blas_thread_timeout_stands():
    timeout, _ = _idle_cpu("28")
    assert timeout == "28"


def test_batched_matmul_split(small_grain):
    """Stacks of matrices (attention's products) split along the first dim over the threads: numpy's
    values, for views with transposed strides too; broadcast batch dims run as one numpy call."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 3, 6, 7)).astype(np.float32)
    b = rng.standard_normal((5, 3, 8, 7)).astype(np.float32).swapaxes(-1, -2)
    engine.set_num_threads(3)
    np.testing.assert_allclose(_parallel.batched_matmul(np, a, b), np.matmul(a, b), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_parallel.batched_matmul(np, a, b[:1]), np.matmul(a, b[:1]), rtol=1e-6, atol=1e-6)
    x, y = engine.tensor(a, requires_grad=True), engine.tensor(np.ascontiguousarray(b), requires_grad=True)
    (x @ y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.ones((5, 3, 6, 8), np.float32) @ b.swapaxes(-1, -2), rtol=1e-5)


def test_the_engine_imports_and_trains_without_threadpoolctl():
    """A bare checkout run by another python (a lent GPU machine's) may lack threadpoolctl: the engine
    then leaves BLAS's threads alone instead of failing to import."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['threadpoolctl'] = None\n"  # makes `import threadpoolctl` fail
            "import engine\n"
            "from engine import _parallel\n"
            "assert _parallel._blas_controllers() == []\n"
            "with _parallel._one_blas_thread():\n"  # (what the split batched products use)
            "    pass\n"
            "m = engine.nn.Sequential(engine.nn.Linear(64, 32), engine.nn.ReLU(), engine.nn.Linear(32, 2))\n"
            "m(engine.randn(4, 64)).sum().backward(); print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
