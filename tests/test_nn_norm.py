"""BatchNorm1d/2d, LayerNorm, GroupNorm and their functionals against torch: outputs, input and
parameter gradients, running statistics, train/eval, state_dict, double backward, errors."""
import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from engine.autograd import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=2e-5)}


def arr(*shape, seed=0, dtype=np.float64, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(dtype)


def close(e, t, dtype=np.float64, what=""):
    tv = t.detach().numpy() if isinstance(t, torch.Tensor) else t
    np.testing.assert_allclose(e.detach().numpy(), tv, err_msg=what, **TOL[dtype])


def twin(m, tm, dtype, seed=3):
    """Random affine parameters in ``m``, copied into ``tm`` through the state_dict."""
    if dtype == np.float64:
        m.double(), tm.double()
    with engine.no_grad():
        for k, p in enumerate(m.parameters()):
            p.copy_(engine.tensor(arr(*p.shape, seed=seed + k, dtype=dtype, scale=0.5, shift=1.0)))
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    return m, tm


def step(m, tm, x, dtype, seed=9):
    """One forward and backward of both; outputs, input gradient, parameter gradients and buffers agree."""
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = m(ex), tm(tx)
    close(out, tout, dtype, "output")
    g = arr(*out.shape, seed=seed, dtype=dtype)
    out.backward(engine.tensor(g))
    tout.backward(torch.tensor(g))
    close(ex.grad, tx.grad, dtype, "input grad")
    tparams = dict(tm.named_parameters())
    for name, p in m.named_parameters():
        close(p.grad, tparams[name].grad, dtype, f"grad of {name}")
    tbufs = dict(tm.named_buffers())
    assert [n for n, _ in m.named_buffers()] == list(tbufs)
    for name, b in m.named_buffers():
        assert b.dtype.name == str(tbufs[name].dtype).replace("torch.", ""), name
        close(b, tbufs[name], dtype, f"buffer {name}")
    m.zero_grad(), tm.zero_grad()


# ---- BatchNorm -----------------------------------------------------------------------------------------

BN_CASES = [(nn.BatchNorm1d, torch.nn.BatchNorm1d, (6, 4)), (nn.BatchNorm1d, torch.nn.BatchNorm1d, (5, 4, 3)),
            (nn.BatchNorm2d, torch.nn.BatchNorm2d, (3, 4, 3, 2))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cls,tcls,shape", BN_CASES)
def test_batchnorm_train_then_eval_matches_torch(cls, tcls, shape, dtype):
    m, tm = twin(cls(4), tcls(4), dtype)
    for k in range(3):  # running statistics accumulate over steps (unbiased var), then eval uses them
        step(m, tm, arr(*shape, seed=k, dtype=dtype, scale=2.0, shift=0.5), dtype)
    assert int(m.num_batches_tracked.item()) == 3
    m.eval(), tm.eval()
    step(m, tm, arr(*shape, seed=7, dtype=dtype), dtype)
    assert int(m.num_batches_tracked.item()) == 3  # eval leaves the buffers alone


@pytest.mark.parametrize("kwargs", [dict(momentum=None), dict(momentum=0.3, affine=False),
                                    dict(track_running_stats=False), dict(bias=False, eps=1e-3)])
def test_batchnorm_options_match_torch(kwargs):
    m, tm = twin(nn.BatchNorm1d(3, **kwargs), torch.nn.BatchNorm1d(3, **kwargs), np.float64)
    assert repr(m) == repr(tm)
    for k in range(3):
        step(m, tm, arr(4, 3, 2, seed=k, shift=k), np.float64)
    m.eval(), tm.eval()  # without running stats, eval keeps using the batch's statistics
    step(m, tm, arr(4, 3, 2, seed=5), np.float64)


def test_batchnorm_cumulative_average_is_the_plain_mean_of_batch_stats():
    m = nn.BatchNorm1d(2, momentum=None).double()
    xs = [arr(5, 2, seed=k, shift=k) for k in range(4)]
    for x in xs:
        m(engine.tensor(x))
    np.testing.assert_allclose(m.running_mean.numpy(), np.mean([x.mean(0) for x in xs], 0), rtol=1e-12)
    np.testing.assert_allclose(m.running_var.numpy(), np.mean([x.var(0, ddof=1) for x in xs], 0), rtol=1e-12)


def test_batchnorm_state_dict_and_init_match_torch():
    m, tm = nn.BatchNorm2d(5), torch.nn.BatchNorm2d(5)
    sd, tsd = m.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert tuple(sd[k].shape) == tuple(tsd[k].shape) and sd[k].dtype.name == str(tsd[k].dtype)[6:], k
        np.testing.assert_array_equal(sd[k].numpy(), tsd[k].numpy())
    # a torch state_dict loads into the engine unchanged, and back
    tm.running_mean.fill_(0.25)
    m.load_state_dict({k: engine.tensor(v.numpy()) for k, v in tm.state_dict().items()})
    np.testing.assert_array_equal(m.running_mean.numpy(), 0.25)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    assert nn.BatchNorm1d(3, track_running_stats=False).state_dict().keys() == \
        torch.nn.BatchNorm1d(3, track_running_stats=False).state_dict().keys()


def test_batchnorm_reset_running_stats():
    m = nn.BatchNorm1d(2)
    m(engine.tensor(arr(4, 2, dtype=np.float32, shift=3)))
    m.reset_running_stats()
    assert m.running_mean.numpy().tolist() == [0, 0] and m.running_var.numpy().tolist() == [1, 1]
    assert m.num_batches_tracked.item() == 0


@pytest.mark.parametrize("training", [True, False])
def test_functional_batch_norm_matches_torch(training):
    x, w, b = arr(4, 3, 5), arr(3, seed=1), arr(3, seed=2)
    rm, rv = arr(3, seed=3), np.abs(arr(3, seed=4)) + 0.5
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ew_, tw = engine.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    erm, trm, erv, trv = engine.tensor(rm), torch.tensor(rm), engine.tensor(rv), torch.tensor(rv)
    out = F.batch_norm(ex, erm, erv, ew_, engine.tensor(b), training, 0.2, 1e-4)
    tout = TF.batch_norm(tx, trm, trv, tw, torch.tensor(b), training, 0.2, 1e-4)
    close(out, tout)
    close(erm, trm), close(erv, trv)
    out.sum().backward(), (tout.sum()).backward()
    close(ex.grad, tx.grad), close(ew_.grad, tw.grad)


def test_batch_norm_without_running_stats_uses_batch_stats():
    x = arr(4, 3)
    out = F.batch_norm(engine.tensor(x), None, None, training=True)
    close(out, TF.batch_norm(torch.tensor(x), None, None, training=True))


def test_batchnorm_gradcheck_and_double_backward():
    x = engine.tensor(arr(3, 2, 2), requires_grad=True)
    w = engine.tensor(arr(2, seed=1), requires_grad=True)
    b = engine.tensor(arr(2, seed=2), requires_grad=True)
    train = lambda x, w, b: F.batch_norm(x, None, None, w, b, True)  # noqa: E731
    assert gradcheck(train, (x, w, b))
    assert gradgradcheck(train, (x, w, b))
    rm, rv = engine.tensor(arr(2, seed=3)), engine.tensor(np.abs(arr(2, seed=4)) + 0.5)
    evalf = lambda x, w, b: F.batch_norm(x, rm, rv, w, b, False)  # noqa: E731
    assert gradcheck(evalf, (x, w, b))
    assert gradgradcheck(evalf, (x, w, b))


def test_batchnorm_double_backward_matches_torch():
    """The gradient of a function of the input gradient (as in a gradient penalty) agrees with torch."""
    x, w = arr(4, 3, 2), arr(3, seed=1)
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ew_, tw = engine.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    g = arr(4, 3, 2, seed=2)
    (egx,) = engine.autograd.grad(F.batch_norm(ex, None, None, ew_, None, True) * engine.tensor(g), [ex],
                                  [engine.ones(4, 3, 2, dtype=engine.float64)], create_graph=True)
    (tgx,) = torch.autograd.grad(TF.batch_norm(tx, None, None, tw, None, True) * torch.tensor(g), [tx],
                                 torch.ones(4, 3, 2, dtype=torch.float64), create_graph=True)
    close(egx, tgx)
    (egx ** 2).sum().backward(), (tgx ** 2).sum().backward()
    close(ex.grad, tx.grad), close(ew_.grad, tw.grad)


@pytest.mark.parametrize("m,x,expected", [
    (nn.BatchNorm1d(4), (8, 5), r"\(N, 4\) or \(N, 4, L\)"),
    (nn.BatchNorm1d(4), (2, 4, 3, 3), r"\(N, 4\) or \(N, 4, L\)"),
    (nn.BatchNorm2d(4), (2, 4, 3), r"\(N, 4, H, W\)"),
    (nn.BatchNorm2d(4), (2, 3, 5, 5), r"\(N, 4, H, W\)"),
])
def test_batchnorm_wrong_shape_names_the_layer(m, x, expected):
    name = type(m).__name__
    with pytest.raises(RuntimeError, match=rf"^{name}\(4, eps=1e-05.*\): expected input of shape {expected}, "
                                           rf"got input of shape \({', '.join(map(str, x))}\)"):
        m(engine.zeros(*x))


def test_batchnorm_single_value_per_channel_in_training():
    m = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training.*\(1, 3\)"):
        m(engine.zeros(1, 3))
    m.eval()
    assert m(engine.zeros(1, 3)).shape == (1, 3)  # fine with running statistics


def test_batch_norm_functional_errors():
    with pytest.raises(RuntimeError, match=r"batch_norm: expected weight of shape \(3,\).*got \(4,\)"):
        F.batch_norm(engine.zeros(2, 3), None, None, engine.ones(4), training=True)
    with pytest.raises(ValueError, match="training=False normalises with running_mean"):
        F.batch_norm(engine.zeros(2, 3), None, None)
    with pytest.raises(RuntimeError, match="expected a floating-point input, got int64"):
        F.batch_norm(engine.zeros(2, 3, dtype=engine.int64), None, None, training=True)


# ---- LayerNorm ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,normalized", [((4, 6), 6), ((2, 3, 4, 5), (4, 5)), ((5,), [5])])
def test_layernorm_matches_torch(shape, normalized, dtype):
    m, tm = twin(nn.LayerNorm(normalized), torch.nn.LayerNorm(normalized), dtype)
    assert repr(m) == repr(tm)
    step(m, tm, arr(*shape, dtype=dtype, scale=3.0, shift=1.0), dtype)


@pytest.mark.parametrize("kwargs", [dict(elementwise_affine=False), dict(bias=False, eps=1e-2)])
def test_layernorm_options_match_torch(kwargs):
    m, tm = twin(nn.LayerNorm((3, 4), **kwargs), torch.nn.LayerNorm((3, 4), **kwargs), np.float64)
    assert list(m.state_dict()) == list(tm.state_dict())
    step(m, tm, arr(2, 3, 4), np.float64)


def test_layernorm_init_and_eval_is_the_same_as_train():
    m = nn.LayerNorm(4)
    assert m.weight.tolist() == [1] * 4 and m.bias.tolist() == [0] * 4
    x = engine.tensor(arr(3, 4, dtype=np.float32))
    np.testing.assert_array_equal(m(x).detach().numpy(), m.eval()(x).detach().numpy())


def test_layer_norm_gradcheck_and_double_backward():
    x = engine.tensor(arr(2, 3, 4), requires_grad=True)
    w = engine.tensor(arr(3, 4, seed=1), requires_grad=True)
    b = engine.tensor(arr(3, 4, seed=2), requires_grad=True)
    f = lambda x, w, b: F.layer_norm(x, (3, 4), w, b)  # noqa: E731
    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


def test_layernorm_wrong_shape_names_the_layer():
    with pytest.raises(RuntimeError, match=r"^LayerNorm\(\(3, 4\), eps=1e-05, elementwise_affine=True, bias=True\): "
                                           r"expected input of shape \(\*, 3, 4\), got input of shape \(2, 4, 3\)"):
        nn.LayerNorm((3, 4))(engine.zeros(2, 4, 3))
    with pytest.raises(RuntimeError, match=r"layer_norm: expected input whose last dimensions are "
                                           r"normalized_shape=\(5,\), got input of shape \(2, 4\)"):
        F.layer_norm(engine.zeros(2, 4), 5)


# ---- GroupNorm ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("groups,shape", [(2, (3, 4, 5, 2)), (2, (3, 4)), (1, (2, 4, 3)), (4, (2, 4, 3))])
def test_groupnorm_matches_torch(groups, shape, dtype):
    m, tm = twin(nn.GroupNorm(groups, 4), torch.nn.GroupNorm(groups, 4), dtype)
    assert repr(m) == repr(tm)
    step(m, tm, arr(*shape, dtype=dtype, scale=2.0, shift=-1.0), dtype)


@pytest.mark.parametrize("kwargs", [dict(affine=False), dict(bias=False, eps=1e-3)])
def test_groupnorm_options_match_torch(kwargs):
    m, tm = twin(nn.GroupNorm(2, 6, **kwargs), torch.nn.GroupNorm(2, 6, **kwargs), np.float64)
    assert list(m.state_dict()) == list(tm.state_dict())
    step(m, tm, arr(2, 6, 3), np.float64)


def test_group_norm_gradcheck_and_double_backward():
    x = engine.tensor(arr(2, 4, 3), requires_grad=True)
    w = engine.tensor(arr(4, seed=1), requires_grad=True)
    b = engine.tensor(arr(4, seed=2), requires_grad=True)
    f = lambda x, w, b: F.group_norm(x, 2, w, b)  # noqa: E731
    assert gradcheck(f, (x, w, b))
    assert gradgradcheck(f, (x, w, b))


def test_groupnorm_errors():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(RuntimeError, match=r"^GroupNorm\(2, 4, eps=1e-05, affine=True, bias=True\): expected input of "
                                           r"shape \(N, 4, \*\), got input of shape \(2, 3, 5\)"):
        nn.GroupNorm(2, 4)(engine.zeros(2, 3, 5))
    with pytest.raises(RuntimeError, match=r"group_norm: expected input of shape \(N, C, \.\.\.\) with C divisible "
                                           r"by num_groups=4, got \(2, 6\)"):
        F.group_norm(engine.zeros(2, 6), 4)


# ---- shared -------------------------------------------------------------------------------------------

def test_norm_layers_are_one_node_each():
    x = engine.tensor(arr(4, 3, 2), requires_grad=True)
    for out in (F.batch_norm(x, None, None, training=True), F.layer_norm(x, (2,))):
        assert out.grad_fn.next_functions[0][0].name() == "AccumulateGrad"


def test_graph_is_freed_after_backward():
    import gc
    m = nn.BatchNorm1d(3).double()
    x = engine.tensor(arr(4, 3), requires_grad=True)
    gc.collect()
    m(x).sum().backward()
    assert gc.collect() == 0


@pytest.mark.cuda
def test_norm_layers_on_cuda_match_cpu():
    x = arr(4, 6, 3, 2)
    for make in (lambda: nn.BatchNorm2d(6), lambda: nn.LayerNorm((3, 2)), lambda: nn.GroupNorm(3, 6)):
        results = []
        for dev in ("cpu", "cuda"):
            m = make().double().to(dev)
            xe = engine.tensor(x, device=dev, requires_grad=True)
            m(xe).pow(2).sum().backward()
            out = m.eval()(xe)  # BatchNorm: the running statistics just updated on the device
            assert out.device.type == dev
            results.append([out.cpu().detach().numpy(), xe.grad.cpu().numpy()]
                           + [p.grad.cpu().numpy() for p in m.parameters()] + [b.cpu().numpy() for b in m.buffers()])
        for c, g in zip(*results):
            np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)
