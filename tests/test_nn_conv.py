"""Convolution and pooling vs torch: Conv1d/2d, ConvTranspose1d/2d, MaxPool1d/2d, AvgPool1d/2d,
AdaptiveAvgPool1d/2d and their functionals, unfold/fold. Outputs and gradients (input and parameters) in
float64 and float32, gradcheck and gradgradcheck, init, state_dict, reprs, and shape errors."""
import math

import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from engine.autograd import gradcheck, gradgradcheck
from engine.ops import conv as conv_ops

torch = pytest.importorskip("torch")
TF = torch.nn.functional

pytestmark = [pytest.mark.torch,
              pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")]

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


def arr(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def close(e, t, dtype=np.float64, what=""):
    assert tuple(e.shape) == tuple(t.shape), f"{what}: shape {tuple(e.shape)} != torch {tuple(t.shape)}"
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), err_msg=what, **TOL[dtype])


def twin(m, tm, dtype):
    """Both layers in ``dtype`` with the engine layer's weights copied into torch's."""
    m = m.double() if dtype == np.float64 else m.float()
    tm = tm.double() if dtype == np.float64 else tm.float()
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    return m, tm


def run_layer(m, tm, shape, dtype=np.float64, seed=0, **kwargs):
    """Forward both layers on the same input, backward the same upstream gradient; compare the output and
    the gradients of the input and every parameter."""
    m, tm = twin(m, tm, dtype)
    x = arr(*shape, seed=seed, dtype=dtype)
    xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = m(xe, **kwargs), tm(xt, **kwargs)
    close(out, tout, dtype, "output")
    g = arr(*tout.shape, seed=seed + 1, dtype=dtype)
    out.backward(engine.tensor(g))
    tout.backward(torch.tensor(g))
    close(xe.grad, xt.grad, dtype, "grad of input")
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        close(p.grad, tp.grad, dtype, f"grad of {name}")
    return out


def run_fn(fn, *arrays, dtype=np.float64, **kwargs):
    """``fn(F, *tensors, **kwargs)`` with engine's and torch's functional; compare outputs and gradients."""
    es = [engine.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    ts = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    out, tout = fn(F, *es, **kwargs), fn(TF, *ts, **kwargs)
    close(out, tout, dtype, "output")
    g = arr(*tout.shape, seed=7, dtype=dtype)
    out.backward(engine.tensor(g))
    tout.backward(torch.tensor(g))
    for i, (e, t) in enumerate(zip(es, ts)):
        close(e.grad, t.grad, dtype, f"grad of argument {i}")


def leaf(*shape, seed=0):
    return engine.tensor(arr(*shape, seed=seed), requires_grad=True)


# ---- Conv2d / Conv1d ---------------------------------------------------------------------------------

CONV2D = [
    (dict(in_channels=3, out_channels=4, kernel_size=3), (2, 3, 7, 6)),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding=1), (2, 3, 5, 5)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1), (2, 2, 8, 7)),
    (dict(in_channels=2, out_channels=2, kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), dilation=(2, 1)),
     (1, 2, 9, 8)),
    (dict(in_channels=4, out_channels=6, kernel_size=3, groups=2, bias=False), (2, 4, 5, 6)),
    (dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, padding=1), (2, 4, 5, 5)),  # depthwise
    (dict(in_channels=2, out_channels=3, kernel_size=4, padding="same", dilation=(1, 2)), (2, 2, 6, 9)),  # odd total
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding="valid"), (2, 2, 5, 5)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=(1, 2), padding_mode="reflect"), (2, 2, 5, 6)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="replicate"), (2, 2, 5, 5)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, stride=2, padding_mode="circular"), (1, 2, 6, 5)),
    (dict(in_channels=2, out_channels=2, kernel_size=(4, 3), padding="same", padding_mode="reflect"), (1, 2, 6, 6)),
    (dict(in_channels=3, out_channels=2, kernel_size=3, padding=1), (3, 5, 6)),  # unbatched
    (dict(in_channels=1, out_channels=2, kernel_size=1), (2, 1, 3, 3)),
    (dict(in_channels=1, out_channels=12, kernel_size=3, padding=1), (3, 1, 6, 5)),  # weight grad per sample
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs,shape", CONV2D)
def test_conv2d_matches_torch(kwargs, shape, dtype):
    run_layer(nn.Conv2d(**kwargs), torch.nn.Conv2d(**kwargs), shape, dtype)


CONV1D = [
    (dict(in_channels=3, out_channels=4, kernel_size=3), (2, 3, 9)),
    (dict(in_channels=2, out_channels=4, kernel_size=3, stride=2, padding=2, dilation=2), (2, 2, 11)),
    (dict(in_channels=4, out_channels=2, kernel_size=2, groups=2, bias=False, padding="same"), (2, 4, 7)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=1, padding_mode="circular"), (2, 2, 6)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=1), (2, 6)),  # unbatched
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs,shape", CONV1D)
def test_conv1d_matches_torch(kwargs, shape, dtype):
    run_layer(nn.Conv1d(**kwargs), torch.nn.Conv1d(**kwargs), shape, dtype)


CONVT2D = [
    (dict(in_channels=3, out_channels=2, kernel_size=3), (2, 3, 4, 5)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1, output_padding=1), (2, 2, 4, 3)),
    (dict(in_channels=2, out_channels=2, kernel_size=(3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2)),
     (1, 2, 3, 4)),
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, groups=2, bias=False), (2, 4, 3, 3)),
    (dict(in_channels=2, out_channels=2, kernel_size=3, stride=1, dilation=3, output_padding=2), (1, 2, 3, 3)),
    (dict(in_channels=3, out_channels=2, kernel_size=2, stride=2), (3, 4, 4)),  # unbatched
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs,shape", CONVT2D)
def test_conv_transpose2d_matches_torch(kwargs, shape, dtype):
    run_layer(nn.ConvTranspose2d(**kwargs), torch.nn.ConvTranspose2d(**kwargs), shape, dtype)


def test_conv_transpose_output_size_and_1d():
    kw = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1)
    out = run_layer(nn.ConvTranspose2d(**kw), torch.nn.ConvTranspose2d(**kw), (1, 2, 4, 4), output_size=(8, 8))
    assert tuple(out.shape) == (1, 3, 8, 8)  # output_padding 1 chosen to reach the requested size
    m = nn.ConvTranspose2d(**kw)
    with pytest.raises(ValueError, match=r"requested an output size of \[10, 10\], but valid sizes range from "
                                         r"\[7, 7\] to \[8, 8\]"):
        m(engine.zeros(1, 2, 4, 4), output_size=(10, 10))
    kw = dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1, output_padding=1)
    run_layer(nn.ConvTranspose1d(**kw), torch.nn.ConvTranspose1d(**kw), (2, 2, 5))


def test_conv_gradcheck_and_double_backward():
    x, w, b = leaf(2, 4, 5, 4), leaf(6, 2, 3, 2, seed=1), leaf(6, seed=2)
    conv = lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)  # noqa: E731
    assert gradcheck(conv, (x, w, b))
    assert gradgradcheck(conv, (x, w, b))
    xt, wt, bt = leaf(1, 2, 3, 3), leaf(2, 3, 2, 2, seed=1), leaf(3, seed=2)
    convt = lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)  # noqa: E731
    assert gradcheck(convt, (xt, wt, bt))
    assert gradgradcheck(convt, (xt, wt, bt))
    # stride 1 takes the row-columns path (engine/ops/conv.py, _Rows): 'same' with an even, dilated kernel
    # pads unevenly; several blocks of samples
    xs, ws, bs = leaf(3, 4, 5, 6, seed=3), leaf(2, 2, 2, 3, seed=4), leaf(2, seed=5)
    same = lambda x, w, b: F.conv2d(x, w, b, padding="same", dilation=(2, 1), groups=2)  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_ops, "ROW_BLOCK", 100)
        assert gradcheck(same, (xs, ws, bs))
        assert gradgradcheck(same, (xs, ws, bs))
    # thin columns (kh*kw*C < O): the weight gradient multiplies each sample's gradient as it lies
    xo, wo = leaf(3, 1, 5, 4, seed=6), leaf(7, 1, 2, 3, seed=7)
    thin = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
    assert gradcheck(thin, (xo, wo))
    assert gradgradcheck(thin, (xo, wo))
    x1, w1 = leaf(2, 2, 7), leaf(3, 2, 3, seed=1)
    assert gradcheck(lambda x, w: F.conv1d(x, w, stride=2, padding="valid", dilation=2), (x1, w1))
    assert gradcheck(lambda x, w: F.conv1d(x, w, padding="same"), (x1, w1))


def test_conv_double_backward_matches_torch():
    """A gradient penalty: d/d(x, w) of |d(sum conv^2)/dx|^2, through the transposed and weight convs."""
    x, w = arr(2, 2, 5, 5), arr(3, 2, 3, 3, seed=1)
    grads = []
    for lib, fn, make in ((engine, F, engine.tensor), (torch, TF, torch.tensor)):
        xe, we = make(x, requires_grad=True), make(w, requires_grad=True)
        y = fn.conv2d(xe, we, stride=2, padding=1)
        (gx,) = lib.autograd.grad((y * y).sum(), [xe], create_graph=True)
        (gx * gx).sum().backward()
        grads.append((gx, xe.grad, we.grad))
    for e, t in zip(*grads):
        close(e, t)


def test_conv_train_step_matches_torch_float32():
    """W2's layers (conv-relu-pool twice, then linear) on a small batch: a step's gradients agree."""
    def build(lib):
        n = lib.nn
        return n.Sequential(n.Conv2d(1, 4, 3, padding=1), n.ReLU(), n.MaxPool2d(2), n.Conv2d(4, 8, 3, padding=1),
                            n.ReLU(), n.MaxPool2d(2), n.Flatten(), n.Linear(8 * 7 * 7, 10))
    m, tm = twin(build(engine), build(torch), np.float32)
    run_layer(m, tm, (3, 1, 28, 28), np.float32)


def test_conv_init_state_dict_and_repr():
    engine.manual_seed(0)
    m = nn.Conv2d(16, 32, 5)
    assert list(m.state_dict()) == ["weight", "bias"]
    assert tuple(m.weight.shape) == (32, 16, 5, 5) and tuple(m.bias.shape) == (32,)
    bound = 1 / math.sqrt(16 * 25)  # kaiming_uniform_(a=sqrt(5)) and the bias: U(-1/sqrt(fan_in), ...)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound
    assert np.abs(b).max() <= bound and b.std() > 0.3 * bound
    t = nn.ConvTranspose2d(8, 6, 3, groups=2)
    assert tuple(t.weight.shape) == (8, 3, 3, 3)  # (in, out/groups, kh, kw)
    assert np.abs(t.bias.detach().numpy()).max() <= 1 / math.sqrt(3 * 9)
    assert tuple(nn.Conv1d(4, 6, 3, groups=2).weight.shape) == (6, 2, 3)
    for cls, kwargs in [
            ("Conv2d", dict(in_channels=1, out_channels=32, kernel_size=3, padding=1)),
            ("Conv2d", dict(in_channels=2, out_channels=4, kernel_size=(2, 3), stride=(2, 1), padding=(1, 0),
                            dilation=2, groups=2, bias=False, padding_mode="reflect")),
            ("Conv2d", dict(in_channels=1, out_channels=1, kernel_size=3, padding="same")),
            ("Conv1d", dict(in_channels=2, out_channels=4, kernel_size=3, padding="valid")),
            ("ConvTranspose2d", dict(in_channels=4, out_channels=2, kernel_size=3, stride=2, output_padding=1)),
            ("ConvTranspose1d", dict(in_channels=4, out_channels=2, kernel_size=3, dilation=2))]:
        assert repr(getattr(nn, cls)(**kwargs)) == repr(getattr(torch.nn, cls)(**kwargs))


def test_conv_state_dict_loads_into_torch_and_back():
    m, tm = nn.Conv2d(3, 5, 3), torch.nn.Conv2d(3, 5, 3)
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in m.state_dict().items()})
    m2 = nn.Conv2d(3, 5, 3)
    m2.load_state_dict({k: engine.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})
    np.testing.assert_array_equal(m2.weight.detach().numpy(), m.weight.detach().numpy())


def test_conv_bad_input_names_the_layer():
    m = nn.Conv2d(1, 32, 3, padding=1)
    expected = (r"^Conv2d\(1, 32, kernel_size=\(3, 3\), stride=\(1, 1\), padding=\(1, 1\)\): expected input of "
                r"shape \(N, 1, H, W\) or \(1, H, W\), got \(8, 3, 28, 28\)$")
    with pytest.raises(RuntimeError, match=expected):
        m(engine.zeros(8, 3, 28, 28))
    with pytest.raises(RuntimeError, match=r"expected input of shape \(N, 1, H, W\) or \(1, H, W\), got \(28, 28\)"):
        m(engine.zeros(28, 28))
    with pytest.raises(RuntimeError, match=r"^Conv1d\(2, 3, .*expected input of shape \(N, 2, L\) or \(2, L\), "
                                           r"got \(4, 2, 5, 5\)"):
        nn.Conv1d(2, 3, 3)(engine.zeros(4, 2, 5, 5))
    with pytest.raises(RuntimeError, match=r"^Conv2d\(1, 2, kernel_size=\(5, 5\).*Kernel size can't be greater"):
        nn.Conv2d(1, 2, 5)(engine.zeros(1, 1, 4, 8))
    with pytest.raises(RuntimeError, match=r"^ConvTranspose2d\(4, 2.*expected input of shape \(N, 4, H, W\)"):
        nn.ConvTranspose2d(4, 2, 3)(engine.zeros(1, 2, 4, 4))
    with pytest.raises(RuntimeError, match=r"same dtype, got input float64, weight float32"):
        nn.Conv2d(1, 2, 3)(engine.zeros(1, 1, 4, 4, dtype=engine.float64))
    with pytest.raises(RuntimeError, match=r"conv2d: given groups=1, expected weight .*|conv2d: expected input of "
                                           r"shape \(N, 2, H, W\) or \(2, H, W\), got \(1, 3, 4, 4\)"):
        F.conv2d(engine.zeros(1, 3, 4, 4), engine.zeros(4, 2, 3, 3))
    with pytest.raises(RuntimeError, match=r"expected weight to be divisible by 2 at dimension 0"):
        F.conv2d(engine.zeros(1, 4, 4, 4), engine.zeros(3, 2, 3, 3), groups=2)
    with pytest.raises(RuntimeError, match=r"non-positive stride"):
        F.conv2d(engine.zeros(1, 1, 4, 4), engine.zeros(1, 1, 3, 3), stride=0)
    with pytest.raises(RuntimeError, match=r"output padding must be smaller than either stride or dilation"):
        F.conv_transpose2d(engine.zeros(1, 1, 4, 4), engine.zeros(1, 1, 3, 3), output_padding=1)


def test_conv_bad_arguments():
    with pytest.raises(ValueError, match="in_channels .* divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="invalid padding string 'full'"):
        nn.Conv2d(1, 1, 3, padding="full")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        F.conv1d(engine.zeros(1, 1, 5), engine.zeros(1, 1, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="Only 'zeros' padding mode is supported for ConvTranspose2d"):
        nn.ConvTranspose2d(1, 1, 3, padding_mode="reflect")


def test_conv_no_grad_and_grad_fn():
    m = nn.Conv2d(2, 3, 3)
    x = engine.tensor(arr(1, 2, 5, 5, dtype=np.float32), requires_grad=True)
    assert m(x).grad_fn.name() == "ConvolutionBackward0"
    with engine.no_grad():
        y = m(x)
    assert y.grad_fn is None and not y.requires_grad
    w2 = engine.tensor(arr(3, 2, 3, 3, seed=3, dtype=np.float32))  # a reparametrised weight, as weight_norm does
    np.testing.assert_allclose(m._conv_forward(x, w2, None).detach().numpy(),
                               TF.conv2d(torch.tensor(x.detach().numpy()), torch.tensor(w2.numpy())).numpy(),
                               rtol=1e-5, atol=1e-5)


# ---- unfold / fold -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=(2, 3), dilation=(2, 1), padding=1,
                                                               stride=(1, 2))])
def test_unfold_fold_match_torch(kwargs):
    run_fn(lambda f, x: f.unfold(x, **kwargs), arr(2, 3, 6, 7))
    cols = TF.unfold(torch.zeros(2, 3, 6, 7), **kwargs)
    run_fn(lambda f, c: f.fold(c, (6, 7), **kwargs), arr(*cols.shape))
    assert gradcheck(lambda x: F.unfold(x, **kwargs), (leaf(1, 2, 4, 5),))
    assert gradgradcheck(lambda c: F.fold(c, (4, 5), **kwargs),
                         (leaf(*TF.unfold(torch.zeros(1, 2, 4, 5), **kwargs).shape),))
    with pytest.raises(RuntimeError, match="expected size of input's last dimension to match"):
        F.fold(engine.zeros(1, 12, 5), (4, 4), 2)


# ---- pooling -----------------------------------------------------------------------------------------

MAXPOOL2D = [
    (dict(kernel_size=2), (2, 3, 8, 6)),
    (dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 8)),
    (dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1)), (1, 2, 7, 9)),
    (dict(kernel_size=3, stride=2, ceil_mode=True), (2, 2, 8, 6)),
    (dict(kernel_size=2, stride=2, padding=1, ceil_mode=True), (1, 2, 5, 5)),
    (dict(kernel_size=3, stride=1, padding=1), (2, 3, 5, 5)),  # overlapping windows
    (dict(kernel_size=2), (3, 6, 6)),  # unbatched
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs,shape", MAXPOOL2D)
def test_max_pool2d_matches_torch(kwargs, shape, dtype):
    run_layer(nn.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs), shape, dtype)
    x = arr(*shape)
    (y, idx), (ty, tidx) = F.max_pool2d(engine.tensor(x), return_indices=True, **kwargs), \
        TF.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    close(y, ty)
    assert idx.dtype == engine.int64
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = np.zeros((1, 1, 4, 4))  # every window is a tie, as after a ReLU
    x[0, 0, 1, 1] = x[0, 0, 3, 2] = 1.0
    run_layer(nn.MaxPool2d(2), torch.nn.MaxPool2d(2), (1, 1, 4, 4))  # (random input: no ties)
    xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    F.max_pool2d(xe, 2).sum().backward()
    TF.max_pool2d(xt, 2).sum().backward()
    np.testing.assert_array_equal(xe.grad.numpy(), xt.grad.numpy())
    (_, idx), (_, tidx) = (F.max_pool2d(engine.tensor(x), 3, 1, 1, return_indices=True),
                           TF.max_pool2d(torch.tensor(x), 3, 1, 1, return_indices=True))
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())


def test_max_pool_integer_input():
    x = np.arange(30).reshape(1, 1, 5, 6) % 7
    y, ty = F.max_pool2d(engine.tensor(x), 2, padding=1), TF.max_pool2d(torch.tensor(x), 2, padding=1)
    assert y.dtype == engine.int64
    np.testing.assert_array_equal(y.numpy(), ty.numpy())


MAXPOOL1D = [
    (dict(kernel_size=2), (2, 3, 8)),
    (dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True), (2, 2, 10)),
    (dict(kernel_size=3), (2, 9)),  # unbatched
]


@pytest.mark.parametrize("kwargs,shape", MAXPOOL1D)
def test_max_pool1d_matches_torch(kwargs, shape):
    run_layer(nn.MaxPool1d(**kwargs), torch.nn.MaxPool1d(**kwargs), shape)
    x = arr(*shape)
    (_, idx), (_, tidx) = (F.max_pool1d(engine.tensor(x), return_indices=True, **kwargs),
                           TF.max_pool1d(torch.tensor(x), return_indices=True, **kwargs))
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())


def test_max_pool_gradcheck_and_double_backward():
    x = leaf(1, 2, 5, 6)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
               dict(kernel_size=2, stride=1, dilation=2)):
        assert gradcheck(lambda x: F.max_pool2d(x, **kw), (x,))
        assert gradgradcheck(lambda x: F.max_pool2d(x, **kw), (x,))
    assert gradcheck(lambda x: F.max_pool1d(x, 3, 2), (leaf(2, 2, 7),))


AVGPOOL2D = [
    (dict(kernel_size=2), (2, 3, 8, 6)),
    (dict(kernel_size=3, stride=2, padding=1), (2, 2, 7, 8)),
    (dict(kernel_size=3, stride=2, padding=1, count_include_pad=False), (2, 2, 7, 8)),
    (dict(kernel_size=3, stride=2, ceil_mode=True), (2, 2, 8, 6)),
    (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (1, 2, 8, 6)),
    (dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True), (1, 2, 5, 6)),
    (dict(kernel_size=3, stride=1, padding=1, divisor_override=4), (2, 2, 5, 5)),
    (dict(kernel_size=2, stride=2), (3, 6, 6)),  # unbatched
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kwargs,shape", AVGPOOL2D)
def test_avg_pool2d_matches_torch(kwargs, shape, dtype):
    run_layer(nn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs), shape, dtype)


@pytest.mark.parametrize("kwargs,shape", [(dict(kernel_size=3), (2, 3, 9)),
                                          (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                                count_include_pad=False), (2, 10))])
def test_avg_pool1d_matches_torch(kwargs, shape):
    run_layer(nn.AvgPool1d(**kwargs), torch.nn.AvgPool1d(**kwargs), shape)


def test_avg_pool_gradcheck_and_double_backward():
    x = leaf(1, 2, 5, 6)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                         count_include_pad=False), dict(kernel_size=2, stride=1)):
        assert gradcheck(lambda x: F.avg_pool2d(x, **kw), (x,))
        assert gradgradcheck(lambda x: F.avg_pool2d(x, **kw), (x,))


ADAPTIVE2D = [((2, 2), (2, 3, 8, 6)), ((3, 5), (2, 2, 7, 11)), ((None, 3), (1, 2, 5, 7)), (1, (2, 3, 5, 5)),
              (4, (1, 2, 3, 3)), ((5, 2), (3, 7, 4))]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("size,shape", ADAPTIVE2D)
def test_adaptive_avg_pool2d_matches_torch(size, shape, dtype):
    run_layer(nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size), shape, dtype)


def test_adaptive_avg_pool1d_and_gradcheck():
    run_layer(nn.AdaptiveAvgPool1d(3), torch.nn.AdaptiveAvgPool1d(3), (2, 3, 7))
    run_layer(nn.AdaptiveAvgPool1d(2), torch.nn.AdaptiveAvgPool1d(2), (3, 8))
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), (leaf(1, 2, 5, 4),))
    assert gradcheck(lambda x: F.adaptive_avg_pool2d(x, 2), (leaf(1, 2, 4, 4),))


def test_pool_reprs_match_torch():
    for cls, args in [("MaxPool2d", (2,)), ("MaxPool2d", ((2, 3), 1, 1, 2, False, True)), ("MaxPool1d", (3, 2)),
                      ("AvgPool2d", (3, 1, 1)), ("AvgPool1d", (3,)), ("AdaptiveAvgPool2d", ((None, 3),)),
                      ("AdaptiveAvgPool1d", (4,))]:
        assert repr(getattr(nn, cls)(*args)) == repr(getattr(torch.nn, cls)(*args))


def test_pool_bad_input_names_the_layer():
    with pytest.raises(RuntimeError, match=r"^MaxPool2d\(kernel_size=2, stride=2, padding=0, dilation=1, "
                                           r"ceil_mode=False\): expected input of shape \(N, C, H, W\) or "
                                           r"\(C, H, W\), got \(4, 4\)$"):
        nn.MaxPool2d(2)(engine.zeros(4, 4))
    with pytest.raises(RuntimeError, match=r"^MaxPool2d\(.*output size \(3x0x0\) is too small"):
        nn.MaxPool2d(2)(engine.zeros(1, 3, 1, 1))
    with pytest.raises(RuntimeError, match=r"^AvgPool2d\(.*pad should be at most half of kernel size"):
        nn.AvgPool2d(2, padding=2)(engine.zeros(1, 1, 4, 4))
    with pytest.raises(RuntimeError, match=r"^MaxPool1d\(.*expected input of shape \(N, C, L\) or \(C, L\)"):
        nn.MaxPool1d(2)(engine.zeros(1, 1, 4, 4))
    with pytest.raises(RuntimeError, match=r"^AdaptiveAvgPool2d\(output_size=2\): expected input of shape"):
        nn.AdaptiveAvgPool2d(2)(engine.zeros(4))
    with pytest.raises(RuntimeError, match=r"avg_pool2d: expected a floating point input, got int64"):
        F.avg_pool2d(engine.zeros(1, 1, 4, 4, dtype=engine.int64), 2)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    x = arr(2, 3, 9, 8, dtype=np.float32)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.ConvTranspose2d(4, 2, 2, stride=2),
                      nn.AvgPool2d(3, 2, 1, count_include_pad=False), nn.AdaptiveAvgPool2d((3, 2)))
    xc, xg = engine.tensor(x, requires_grad=True), engine.tensor(x, device="cuda", requires_grad=True)
    yc = m(xc)
    yc.sum().backward()
    grads = [p.grad.numpy() for p in m.parameters()]
    m.zero_grad()
    m.cuda()
    yg = m(xg)
    assert yg.device.type == "cuda"
    yg.sum().backward()
    np.testing.assert_allclose(yg.detach().cpu().numpy(), yc.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(xg.grad.cpu().numpy(), xc.grad.numpy(), rtol=1e-4, atol=1e-5)
    for p, g in zip(m.parameters(), grads):
        np.testing.assert_allclose(p.grad.cpu().numpy(), g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fn", [
    lambda f, x, w: f.conv2d(x, w, padding=1),
    lambda f, x, w: f.conv2d(x, w[:, :1, :2], groups=3, stride=2),  # a non-contiguous weight
    lambda f, x, w: f.conv_transpose2d(x, w, stride=2),
    lambda f, x, w: f.max_pool2d(x, 2) * w.sum(),
    lambda f, x, w: f.avg_pool2d(x, 3, 1, 1, count_include_pad=False) * w.sum(),
    lambda f, x, w: f.unfold(x, 2) * w.sum(),
])
def test_empty_batch_and_non_contiguous_input(fn):
    w = arr(3, 3, 3, 3, seed=1)
    run_fn(fn, np.zeros((0, 3, 5, 5)), w)
    run_fn(lambda f, x, w: fn(f, x.permute(3, 0, 1, 2), w), arr(3, 5, 6, 2), w)  # a non-contiguous input
