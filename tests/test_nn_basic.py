"""Linear, Bilinear, activations, Dropout, Embedding, init, nn.functional basics and nn.utils vs torch."""
import math

import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from engine.autograd import gradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional
F64 = dict(rtol=1e-10, atol=1e-12)


def arr(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def both(a, requires_grad=True):
    return engine.tensor(a, requires_grad=requires_grad), torch.tensor(a, requires_grad=requires_grad)


def check(e, t, **tol):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), **(tol or F64))


def copy_weights(src, dst):
    dst.load_state_dict({k: torch.tensor(v.numpy()) for k, v in src.state_dict().items()})


def run_layer(m, tm, *inputs, **tol):
    """Forward both layers, backward a random upstream gradient; compare outputs and all gradients."""
    ins = [both(a) for a in inputs]
    out, tout = m(*[e for e, _ in ins]), tm(*[t for _, t in ins])
    check(out, tout, **tol)
    g = arr(*out.shape, seed=9)
    out.backward(engine.tensor(g))
    tout.backward(torch.tensor(g))
    for (e, t) in ins:
        check(e.grad, t.grad, **tol)
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        check(p.grad, tp.grad, **tol)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
def test_linear_matches_torch(bias, shape):
    m = nn.Linear(4, 3, bias=bias).double()
    tm = torch.nn.Linear(4, 3, bias=bias).double()
    copy_weights(m, tm)
    run_layer(m, tm, arr(*shape))


def test_linear_gradcheck_and_wrong_shape():
    m = nn.Linear(3, 2).double()
    x = engine.tensor(arr(2, 3), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), (x, m.weight, m.bias))
    with pytest.raises(RuntimeError, match=r"Linear\(in_features=3, out_features=2, bias=True\): expected input "
                                           r"with last dimension in_features=3, got input of shape \(2, 5\)"):
        m(engine.zeros(2, 5, dtype=engine.float64))


def test_bilinear_matches_torch():
    m = nn.Bilinear(3, 4, 2).double()
    tm = torch.nn.Bilinear(3, 4, 2).double()
    copy_weights(m, tm)
    run_layer(m, tm, arr(5, 3), arr(5, 4, seed=1))


def test_linear_init_bounds_like_torch():
    engine.manual_seed(0)
    m = nn.Linear(100, 50)
    w, b = m.weight.detach().numpy(), m.bias.detach().numpy()
    bound = 1 / math.sqrt(100)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.005  # uniform(-b, b) has std b / sqrt(3)


@pytest.mark.parametrize("name,args", [
    ("ReLU", ()), ("LeakyReLU", (0.2,)), ("ELU", (0.7,)), ("GELU", ()), ("GELU", ("tanh",)), ("SiLU", ()),
    ("Tanh", ()), ("Sigmoid", ()), ("Softplus", (2.0, 5.0)), ("Softmax", (1,)), ("LogSoftmax", (1,)),
    ("ReLU6", ()), ("Hardtanh", ()), ("Mish", ()), ("SELU", ()), ("CELU", (0.5,)), ("LogSigmoid", ()),
    ("Softsign", ()), ("Tanhshrink", ()), ("Hardswish", ()), ("Hardsigmoid", ()), ("GLU", ()),
])
def test_activations_match_torch(name, args):
    m, tm = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
    x = arr(4, 6) * 3
    x = np.where(np.abs(x) < 0.05, 0.1, x)  # keep away from the kink of relu-like functions
    x[0, :3] = [10.0, -10.0, 30.0]  # saturated regions and softplus' threshold
    # torch's hard* backward kernels use a float32 constant 1/6 even in float64
    run_layer(m, tm, x, **(dict(rtol=1e-7) if name.startswith("Hard") else {}))
    small = engine.tensor(arr(2, 4, seed=3) + 0.3, requires_grad=True)
    assert gradcheck(m, (small,))
    assert repr(m) == repr(tm)


def test_activation_inplace():
    x = engine.randn(3) * 1
    y = F.relu(x, inplace=True)
    assert y is x and float(x.min()) >= 0


def test_dropout_train_and_eval():
    engine.manual_seed(0)
    m = nn.Dropout(0.25)
    x = engine.ones(1000, 100)
    y = m(x).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    m.eval()
    assert m(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    d2 = nn.Dropout2d(0.5)(engine.ones(4, 8, 3, 3)).numpy()
    assert np.all((d2 == 0).all(axis=(2, 3)) | (d2 != 0).all(axis=(2, 3)))  # whole channels


def test_embedding_matches_torch_with_padding_idx():
    m, tm = nn.Embedding(10, 3, padding_idx=1).double(), torch.nn.Embedding(10, 3, padding_idx=1).double()
    copy_weights(m, tm)
    assert float(m.weight[1].abs().sum()) == 0
    idx = np.array([[1, 2, 2, 9], [0, 1, 5, 2]])
    out, tout = m(engine.tensor(idx)), tm(torch.tensor(idx))
    check(out, tout)
    g = arr(*out.shape, seed=4)
    out.backward(engine.tensor(g))
    tout.backward(torch.tensor(g))
    check(m.weight.grad, tm.weight.grad)  # repeated indices accumulate; the padding row gets none
    with pytest.raises(IndexError, match="out of range"):
        m(engine.tensor([10]))


def test_embedding_max_norm_matches_torch():
    m, tm = nn.Embedding(6, 4, max_norm=1.0).double(), torch.nn.Embedding(6, 4, max_norm=1.0).double()
    copy_weights(m, tm)
    idx = np.array([0, 3, 3, 5])
    check(m(engine.tensor(idx)), tm(torch.tensor(idx)), rtol=1e-6)
    check(m.weight, tm.weight, rtol=1e-6)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_matches_torch(mode):
    x = arr(2, 3, 5, 6)
    pad = (2, 1, 1, 3) if mode != "reflect" else (2, 1, 1, 3)
    e, t = both(x)
    out = F.pad(e, pad, mode=mode, **({"value": 1.5} if mode == "constant" else {}))
    tout = TF.pad(t, pad, mode=mode, **({"value": 1.5} if mode == "constant" else {}))
    check(out, tout)
    g = arr(*out.shape, seed=2)
    out.backward(engine.tensor(g))
    tout.backward(torch.tensor(g))
    check(e.grad, t.grad)


def test_pad_negative_crops():
    x = arr(3, 6)
    check(F.pad(engine.tensor(x), (-1, 2)), TF.pad(torch.tensor(x), (-1, 2)))


def test_one_hot_normalize_interpolate_cosine():
    idx = np.array([0, 2, 1, 2])
    assert F.one_hot(engine.tensor(idx)).tolist() == TF.one_hot(torch.tensor(idx)).tolist()
    assert F.one_hot(engine.tensor(idx), 5).dtype == engine.int64
    x = arr(4, 5)
    check(F.normalize(engine.tensor(x)), TF.normalize(torch.tensor(x)))
    check(F.normalize(engine.tensor(x), p=1, dim=0), TF.normalize(torch.tensor(x), p=1, dim=0))
    img = arr(2, 3, 4, 5)
    for kw in [dict(scale_factor=2), dict(size=(7, 3)), dict(size=9)]:
        e, t = both(img)
        out, tout = F.interpolate(e, **kw), TF.interpolate(t, **kw)
        check(out, tout)
        out.sum().backward()
        tout.sum().backward()
        check(e.grad, t.grad)
    a, b = arr(4, 6), arr(4, 6, seed=1)
    check(F.cosine_similarity(engine.tensor(a), engine.tensor(b)), TF.cosine_similarity(torch.tensor(a),
                                                                                     torch.tensor(b)))


def test_clip_grad_norm_and_value_match_torch():
    ps = [arr(3, 4), arr(5, seed=1)]
    grads = [arr(3, 4, seed=2) * 5, arr(5, seed=3) * 5]
    for norm_type in (2.0, 1.0, float("inf")):
        ep = [engine.tensor(p, requires_grad=True) for p in ps]
        tp = [torch.tensor(p, requires_grad=True) for p in ps]
        for e, t, g in zip(ep, tp, grads):
            e.grad, t.grad = engine.tensor(g), torch.tensor(g)
        total = nn.utils.clip_grad_norm_(ep, 1.5, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(tp, 1.5, norm_type)
        check(total, ttotal)
        for e, t in zip(ep, tp):
            check(e.grad, t.grad)
    e = engine.tensor(ps[0], requires_grad=True)
    e.grad = engine.tensor(grads[0])
    nn.utils.clip_grad_value_([e], 0.5)
    assert float(e.grad.abs().max()) == 0.5


def test_parameters_vector_round_trip():
    m = nn.Linear(3, 2)
    v = nn.utils.parameters_to_vector(m.parameters())
    assert v.shape == (8,)
    nn.utils.vector_to_parameters(v * 0 + 1, m.parameters())
    assert float(m.weight.sum()) == 6.0 and float(m.bias.sum()) == 2.0


@pytest.mark.parametrize("fn,args", [
    ("xavier_uniform_", ()), ("xavier_normal_", ()), ("kaiming_uniform_", ()), ("kaiming_normal_", ()),
    ("uniform_", (-0.5, 0.5)), ("normal_", (1.0, 0.2)), ("trunc_normal_", (0.0, 1.0, -0.5, 0.5)),
    ("orthogonal_", ()),
])
def test_init_distributions_match_torch(fn, args):
    """Same distribution: compare moments and bounds of a large draw with torch's."""
    engine.manual_seed(0)
    torch.manual_seed(0)
    e = getattr(nn.init, fn)(engine.empty(300, 200), *args).numpy()
    t = getattr(torch.nn.init, fn)(torch.empty(300, 200), *args).numpy()
    assert abs(e.mean() - t.mean()) < 0.01 and abs(e.std() / t.std() - 1) < 0.02
    assert e.min() >= t.min() - 0.2 * t.std() and e.max() <= t.max() + 0.2 * t.std()
    if fn == "orthogonal_":
        np.testing.assert_allclose(e @ e.T, np.eye(300), atol=1e-4) if e.shape[0] <= e.shape[1] else None


def test_init_helpers():
    assert nn.init.calculate_gain("leaky_relu", 0.2) == torch.nn.init.calculate_gain("leaky_relu", 0.2)
    w = nn.init.eye_(engine.empty(3, 4))
    assert w.tolist() == torch.nn.init.eye_(torch.empty(3, 4)).tolist()
    assert nn.init.constant_(engine.empty(2), 0.3).tolist() == pytest.approx([0.3, 0.3])
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")
