"""The tape: recording, the backward walk, freeing, hooks, higher order, custom Functions, errors."""
import gc
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

import engine
from engine.autograd import Function, gradcheck, gradgradcheck

torch = pytest.importorskip("torch")


def pair(arr, requires_grad=True, device="cpu"):
    """The same values as an engine tensor and a torch tensor."""
    e = engine.tensor(arr, device=device, requires_grad=requires_grad)
    t = torch.tensor(arr, requires_grad=requires_grad)
    return e, t


def close(e, t, **kw):
    np.testing.assert_allclose(e.detach().cpu().numpy(), t.detach().numpy(), **kw)


def test_seed_rnn_cell_matches_torch(rng, device):
    """The seed's example: next_h = tanh(h @ W_h.T + x @ W_x.T); loss = next_h.sum(); backward."""
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(20, 20), (20, 10), (1, 10), (1, 20)]]
    (W_h, tW_h), (W_x, tW_x) = pair(arrays[0], device=device), pair(arrays[1], device=device)
    (x, tx), (h, th) = pair(arrays[2], False, device), pair(arrays[3], False, device)
    next_h = engine.tanh(h @ W_h.T + x @ W_x.T)
    loss = next_h.sum()
    loss.backward()
    tloss = torch.tanh(th @ tW_h.T + tx @ tW_x.T).sum()
    tloss.backward()
    close(loss, tloss, rtol=1e-5)
    close(W_h.grad, tW_h.grad, rtol=1e-5, atol=1e-6)
    close(W_x.grad, tW_x.grad, rtol=1e-5, atol=1e-6)
    assert W_h.grad.device == engine.device(device)


def test_gradients_accumulate_until_zeroed_and_reused_tensor_gets_sum(rng):
    w, tw = pair(rng.standard_normal(5))
    for _ in range(3):
        (w * w + w.exp()).sum().backward()
        (tw * tw + tw.exp()).sum().backward()
    close(w.grad, tw.grad, rtol=1e-6)
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 3.0)


def test_diamond_graph_each_node_once():
    x = engine.tensor(2.0, requires_grad=True)
    calls = []
    y = x * 3
    y.register_hook(lambda g: calls.append(g.item()))
    z = y * y + y.sin() + y
    z.backward()
    assert calls == [pytest.approx(2 * 6 + np.cos(6.0) + 1)]
    assert x.grad.item() == pytest.approx(3 * (2 * 6 + np.cos(6.0) + 1))


def test_dynamic_graph_depth_depends_on_data(rng):
    w, tw = pair(rng.standard_normal((4, 4)).astype(np.float32) * 0.5)
    x0 = rng.standard_normal((1, 4)).astype(np.float32)
    for step in range(1, 5):
        h, th = engine.tensor(x0), torch.tensor(x0)
        depth = step + int(abs(float(x0.sum())) * 10) % 3
        for _ in range(depth):
            h, th = engine.tanh(h @ w), torch.tanh(th @ tw)
        h.sum().backward()
        th.sum().backward()
        close(w.grad, tw.grad, rtol=1e-5, atol=1e-6)
        with engine.no_grad():
            w -= 0.1 * w.grad
        with torch.no_grad():
            tw -= 0.1 * tw.grad
        w.grad, tw.grad = None, None


def test_deep_graph_no_recursion_limit():
    x = engine.tensor([1.0], requires_grad=True)
    h = x
    for _ in range(sys.getrecursionlimit() * 3):
        h = h * 1.0 + 0.0
    h.sum().backward()
    assert x.grad.item() == 1.0


def test_backward_frees_saved_arrays():
    x = engine.randn(8, 8, requires_grad=True)
    y = x.exp()              # saves its output
    z = (y * x).tanh()       # saves inputs and output
    refs = [weakref.ref(t._data) for t in (y, z)]
    loss = z.sum()
    del y, z
    gc.collect()
    assert all(r() is not None for r in refs), "the graph keeps what backward needs until backward"
    loss.backward()
    gc.collect()
    assert all(r() is None for r in refs), "saved intermediates must be released by backward"


def test_second_backward_through_freed_graph_raises():
    x = engine.randn(3, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = engine.randn(3, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.clone()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * g1.numpy(), rtol=1e-6)


def test_backward_on_non_scalar_needs_gradient():
    x = engine.randn(3, requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        y.backward()
    y.backward(engine.ones(3))
    np.testing.assert_allclose(x.grad.numpy(), 2.0)


def test_inplace_change_of_saved_tensor_is_detected():
    x = engine.randn(3, requires_grad=True)
    a = x * 1
    b = a * a
    a.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        b.sum().backward()


def test_inplace_change_of_saved_output_is_detected():
    x = engine.randn(3, requires_grad=True)
    y = x.exp()
    z = y.sum()
    y.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.backward()


def test_inplace_on_leaf_requiring_grad_raises():
    w = engine.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(1)
    with engine.no_grad():
        w.add_(1)  # allowed, as in optimizers


def test_inplace_ops_in_graph_match_torch(rng):
    a = rng.standard_normal(4).astype(np.float32)
    w, tw = pair(a)
    y = w * 2
    y += w
    y *= w
    y.sub_(1).div_(2)
    ty = tw * 2
    ty += tw
    ty *= tw
    ty.sub_(1).div_(2)
    y.sum().backward()
    ty.sum().backward()
    close(y, ty, rtol=1e-6)
    close(w.grad, tw.grad, rtol=1e-6)


@pytest.mark.parametrize("case", ["view-of-view", "setitem-on-view", "zeros-buffer"])
def test_inplace_on_views_rebases_the_base_like_torch(case):
    """In-place ops recorded on views change the base's history too (PyTorch's CopySlices)."""
    def run(m):
        w = m.tensor([1.0, 2.0, 3.0], dtype=m.float64, requires_grad=True)
        y = m.tensor([0.5, -1.0], dtype=m.float64, requires_grad=True)
        if case == "zeros-buffer":
            out = m.zeros(2, 3, dtype=m.float64)
            out[0].add_(w)
            out[1, 1:] += y * w[0]
            z = (out * out).sum()
        else:
            x = (w * 2).reshape(3, 1) * w.reshape(1, 3)
            v = x[1:]
            if case == "view-of-view":
                v[:, 0] += y
                v.mul_(2)
            else:
                v[0] = y.repeat(2)[:3] * 3
            z = (x * x).sum() + v.exp().sum()
        (gw, gy) = m.autograd.grad(z, (w, y), create_graph=True, allow_unused=True)
        (gw.sum() + (gy.sum() if gy is not None else 0)).backward()
        return z.item(), gw, w.grad

    for e, t in zip(run(engine), run(torch)):
        close(engine.tensor(e), torch.tensor(t), rtol=1e-12) if isinstance(e, float) else close(e, t, rtol=1e-12)


def test_inplace_on_view_of_leaf_refused():
    w = engine.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        w[0].mul_(2)


def test_no_grad_and_friends():
    x = engine.randn(2, requires_grad=True)
    with engine.no_grad():
        assert not engine.is_grad_enabled()
        y = x * 2
        with engine.enable_grad():
            z = x * 2
    assert engine.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad

    @engine.no_grad()
    def f(t):
        return t * 2
    assert not f(x).requires_grad
    engine.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    engine.set_grad_enabled(True)
    with engine.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad


def test_autograd_grad_does_not_touch_dot_grad_and_allow_unused():
    x = engine.randn(3, requires_grad=True)
    y = engine.randn(3, requires_grad=True)
    out = (x * x).sum()
    (gx,) = engine.autograd.grad(out, [x], retain_graph=True)
    np.testing.assert_allclose(gx.numpy(), 2 * x.detach().numpy(), rtol=1e-6)
    assert x.grad is None
    with pytest.raises(RuntimeError, match="allow_unused"):
        engine.autograd.grad(out, [x, y], retain_graph=True)
    gx, gy = engine.autograd.grad(out, [x, y], allow_unused=True)
    assert gy is None


def test_grad_wrt_intermediate():
    x = engine.randn(3, requires_grad=True)
    h = x.exp()
    out = (h * 3).sum()
    (gh,) = engine.autograd.grad(out, h)
    np.testing.assert_allclose(gh.numpy(), 3.0)


@pytest.mark.parametrize("fn", [
    lambda m, x: (x ** 3).sum(),
    lambda m, x: (x.tanh() * x.exp()).sum(),
    lambda m, x: m.softmax(x, 0).pow(2).sum(),
    lambda m, x: (x @ x.reshape(3, 1)).sum(),
    lambda m, x: m.log_softmax(x * x, 0)[1],
], ids=["cube", "tanh-exp", "softmax", "matmul", "log_softmax"])
def test_higher_order_gradients_match_torch(rng, fn):
    """Written once for both libraries (same names): second derivatives through create_graph."""
    x, tx = pair(rng.standard_normal(3))
    (g,) = engine.autograd.grad(fn(engine, x), x, create_graph=True)
    (tg,) = torch.autograd.grad(fn(torch, tx), tx, create_graph=True)
    close(g, tg, rtol=1e-10)
    (g * g).sum().backward()
    (tg * tg).sum().backward()
    close(x.grad, tx.grad, rtol=1e-10)


def test_gradgradcheck_on_composite(rng):
    a = engine.tensor(rng.standard_normal((2, 3)), dtype=engine.float64, requires_grad=True)
    b = engine.tensor(rng.standard_normal((3, 2)), dtype=engine.float64, requires_grad=True)
    assert gradgradcheck(lambda p, q: (p @ q).tanh() * p.sum(), (a, b))


@pytest.mark.parametrize("fn", [
    lambda a, b: a / b,
    lambda a, b: b / a.exp(),
    lambda a, b: (a * b).tanh().sigmoid().relu(),
    lambda a, b: (a @ b.reshape(4, 1)).mean() + a.sum(1).mean() + (a.T @ a).sum() + (a @ a.T).sum(),
    lambda a, b: (a - b[:2].sum()).sum(0) * b,
    lambda a, b: engine.softmax(a * b, 1) * engine.log_softmax(a, 0),
], ids=["div", "div-broadcast", "activations", "matmul-reductions", "sum_to", "softmax"])
def test_fused_backward_nodes_are_differentiable_twice(rng, fn):
    """Backward formulas that are single nodes (TanhGrad, DivGradDenominator, SumTo, SpreadBack,
    transposed Matmul) have backwards of their own: checked by second-order finite differences."""
    a = engine.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = engine.tensor(rng.random(4) + 0.5, requires_grad=True)
    assert gradgradcheck(fn, (a, b))


def test_hooks_on_leaf_and_nonleaf_and_retain_grad():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    handle = x.register_hook(lambda g: g * 10)
    y = x * 3
    y.retain_grad()
    y.register_hook(lambda g: seen.append(g.tolist()))
    y.sum().backward()
    assert seen == [[1.0, 1.0]]
    assert x.grad.tolist() == [30.0, 30.0]
    assert y.grad.tolist() == [1.0, 1.0]
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_custom_function_matches_builtin(rng):
    class Cube(Function):
        @staticmethod
        def forward(ctx, x, scale):
            ctx.save_for_backward(x)
            ctx.scale = scale
            return x ** 3 * scale

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x ** 2 * ctx.scale, None

    a = engine.tensor(rng.standard_normal(4), dtype=engine.float64, requires_grad=True)
    out = Cube.apply(a, 2.0)
    assert out.grad_fn is not None and "Cube" in out.grad_fn.name()
    out.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 6 * a.detach().numpy() ** 2)
    assert gradcheck(lambda t: Cube.apply(t, 2.0), (a,))


def test_custom_function_multiple_outputs_and_materialized_grads():
    class SplitTwo(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            return g1 * 2 + g2 * 3

    x = engine.tensor([1.0, 2.0], requires_grad=True)
    a, b = SplitTwo.apply(x)
    a.sum().backward()  # b unused: its gradient arrives as zeros
    assert x.grad.tolist() == [2.0, 2.0]


def test_requires_grad_errors():
    with pytest.raises(RuntimeError, match="floating point"):
        engine.tensor([1, 2]).requires_grad_()
    y = engine.randn(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        engine.tensor([1.0]).sum().backward()


def test_numpy_refuses_tensor_requiring_grad():
    x = engine.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert isinstance(x.detach().numpy(), np.ndarray)


def test_mixed_dtype_gradients_come_back_in_each_dtype():
    a = engine.tensor([1.0, 2.0], dtype=engine.float16, requires_grad=True)
    b = engine.tensor([3.0, 4.0], dtype=engine.float32, requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.dtype == engine.float16 and b.grad.dtype == engine.float32
    assert a.grad.tolist() == [3.0, 4.0]


def test_memory_stays_flat_over_many_iterations():
    """10,000 forward/backward iterations of a small model: no growth in live objects or arrays."""
    rng = np.random.default_rng(0)
    w1 = engine.tensor(rng.standard_normal((8, 16)).astype(np.float32), requires_grad=True)
    w2 = engine.tensor(rng.standard_normal((16, 1)).astype(np.float32), requires_grad=True)
    x = engine.tensor(rng.standard_normal((4, 8)).astype(np.float32))

    def step():
        loss = ((x @ w1).relu() @ w2).pow(2).mean()
        loss.backward()
        with engine.no_grad():
            w1.sub_(1e-4 * w1.grad)
            w2.sub_(1e-4 * w2.grad)
        w1.grad = w2.grad = None

    tracemalloc.start()
    try:
        for _ in range(200):  # warm-up: caches, free lists
            step()
        gc.collect()
        objects_before, (bytes_before, _) = len(gc.get_objects()), tracemalloc.get_traced_memory()
        for _ in range(10_000):
            step()
        gc.collect()
        objects_after, (bytes_after, _) = len(gc.get_objects()), tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert objects_after - objects_before < 50, f"live objects grew from {objects_before} to {objects_after}"
    assert bytes_after - bytes_before < 64 * 1024, f"traced memory grew by {bytes_after - bytes_before} bytes"


def test_no_reference_cycles_per_step():
    """A training step creates no garbage cycles: memory is freed by reference counting alone."""
    w = engine.randn(4, 4, requires_grad=True)
    x = engine.randn(2, 4)
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            (x @ w).tanh().exp().sum().backward()
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_grad_mode_is_per_thread():
    # as in PyTorch: one thread's no_grad (a server answering /predict) leaves another's tape alone
    import threading
    seen = []
    with engine.no_grad():
        t = threading.Thread(target=lambda: seen.append(engine.is_grad_enabled()))
        t.start()
        t.join()
        assert not engine.is_grad_enabled()
    assert seen == [True] and engine.is_grad_enabled()


def test_a_leaf_keeps_a_fresh_gradient_without_a_copy(monkeypatch):
    """A gradient only the backward walk holds becomes the leaf's .grad as it is (PyTorch steals it too)."""
    from engine.autograd import graph
    from engine.nn.functional import common
    if not graph._COUNTS_ARE_EXACT:
        pytest.skip("Python 3.14+ copies every gradient (reference counts may read low there)")
    made = []
    backward = common.Linear.backward

    def recording(self, g):
        out = backward(self, g)
        made.extend(weakref.ref(t._data) for t in out if t is not None)  # a strong one would force a copy
        return out

    monkeypatch.setattr(common.Linear, "backward", recording)
    lin = engine.nn.Linear(4, 3)
    lin(engine.randn(5, 4)).sum().backward()
    assert any(lin.weight.grad._data is r() for r in made) and any(lin.bias.grad._data is r() for r in made)


def test_a_shared_gradient_is_copied_into_each_leaf():
    """The same gradient reaches two leaves, a view of a caller's tensor reaches a leaf, a hook keeps the
    gradient it saw: each .grad is its own array, and a second backward (adding into .grad in place)
    changes nothing else."""
    a, b = engine.randn(3, requires_grad=True), engine.randn(3, requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad._data, b.grad._data)

    x = engine.randn(2, 3, requires_grad=True)
    g = engine.ones(6)
    x.reshape(6).backward(g)
    x.reshape(6).backward(g)
    assert not np.shares_memory(x.grad._data, g._data)
    np.testing.assert_array_equal(g.numpy(), np.ones(6))
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))

    w = engine.randn(3, requires_grad=True)
    seen = []
    w.register_hook(lambda grad: seen.append(grad))
    (w * 2).sum().backward()
    (w * 2).sum().backward()
    np.testing.assert_array_equal(seen[0].numpy(), np.full(3, 2.0))
    np.testing.assert_array_equal(w.grad.numpy(), np.full(3, 4.0))
