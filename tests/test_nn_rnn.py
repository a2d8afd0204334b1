"""engine.nn RNN, LSTM, GRU and their cells against PyTorch: values, gradients of the input, the initial
states and every parameter; gradcheck and double backward; layouts, reprs, state_dict round trips,
dropout between layers, long sequences, freeing, errors."""
import gc
import itertools
import warnings
import weakref

import numpy as np
import pytest

import engine
from engine import nn
from engine.autograd import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-5)

# (class name, constructor kwargs): every recurrence PyTorch has
KINDS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}), ("LSTM", {"proj_size": 3}), ("GRU", {})]
KIND_IDS = ["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]


def _np(t):
    return t.detach().cpu().numpy()  # an engine or a torch tensor


def pair(cls: str, *args, dtype=np.float64, **kwargs):
    """The same layer in the engine and in torch, torch's weights copied from the engine's."""
    engine.manual_seed(0)
    e = getattr(nn, cls)(*args, **kwargs)
    t = getattr(torch.nn, cls)(*args, **kwargs)
    if dtype == np.float64:
        e, t = e.double(), t.double()
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    return e, t


def flat(out):
    """output, h_n[, c_n] (or a cell's states) as a flat list."""
    if isinstance(out, (tuple, list)):
        return [x for o in out for x in flat(o)]
    return [out]


def compare(e, t, x, hx=None, tol=F64, seed=1):
    """Run both layers on the same input (and initial state), compare every output; backpropagate the
    same random upstream gradient through all of them and compare the gradients of the input, the
    initial states and every parameter."""
    ex = engine.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ehx = thx = None
    if hx is not None:
        ehx = tuple(engine.tensor(h, requires_grad=True) for h in hx)
        thx = tuple(torch.tensor(h, requires_grad=True) for h in hx)
    e_out = flat(e(ex, ehx if ehx is None or len(ehx) == 2 else ehx[0]))
    t_out = flat(t(tx, thx if thx is None or len(thx) == 2 else thx[0]))
    assert len(e_out) == len(t_out)
    for k, (a, b) in enumerate(zip(e_out, t_out)):
        assert tuple(a.shape) == tuple(b.shape), f"output {k}: {tuple(a.shape)} != torch {tuple(b.shape)}"
        assert a.dtype.name == str(b.dtype).replace("torch.", "")
        np.testing.assert_allclose(_np(a), _np(b), **tol, err_msg=f"output {k}")
    rng = np.random.default_rng(seed)
    seeds = [rng.standard_normal(tuple(b.shape)).astype(_np(b).dtype) for b in t_out]
    engine.autograd.backward(e_out, [engine.tensor(s) for s in seeds])
    torch.autograd.backward(t_out, [torch.tensor(s) for s in seeds])
    np.testing.assert_allclose(_np(ex.grad), _np(tx.grad), **tol, err_msg="grad of the input")
    for k, (a, b) in enumerate(zip(ehx or (), thx or ())):
        np.testing.assert_allclose(_np(a.grad), _np(b.grad), **tol, err_msg=f"grad of hx[{k}]")
    tparams = dict(t.named_parameters())
    names = [n for n, _ in e.named_parameters()]
    assert names == list(tparams), "parameter names and order differ from torch's"
    for name, p in e.named_parameters():
        np.testing.assert_allclose(_np(p.grad), _np(tparams[name].grad), **tol, err_msg=f"grad of {name}")
    return e_out, t_out


def states(cls, kwargs, layers, directions, N, H, rng, dtype=np.float64):
    """Random initial state(s) of the right shapes: (h0,) or (h0, c0)."""
    H_out = kwargs.get("proj_size") or H
    lead = (layers * directions,) + ((N,) if N else ())
    h0 = rng.standard_normal(lead + (H_out,)).astype(dtype)
    if cls == "LSTM":
        return h0, rng.standard_normal(lead + (H,)).astype(dtype)
    return (h0,)


# ---- RNN, LSTM, GRU against torch ----------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("layers,bidirectional,batch_first,with_hx",
                         list(itertools.product([1, 2], [False, True], [False, True], [False, True])))
def test_matches_torch_float64(kind, layers, bidirectional, batch_first, with_hx):
    cls, kwargs = kind
    L, N, H_in, H = 4, 3, 5, 6
    e, t = pair(cls, H_in, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first, **kwargs)
    rng = np.random.default_rng(layers * 8 + bidirectional * 4 + batch_first * 2 + with_hx)
    x = rng.standard_normal((N, L, H_in) if batch_first else (L, N, H_in))
    hx = states(cls, kwargs, layers, 1 + bidirectional, N, H, rng) if with_hx else None
    compare(e, t, x, hx)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("with_hx,batch_first", [(False, False), (True, False), (True, True)])
def test_unbatched_input(kind, with_hx, batch_first):
    cls, kwargs = kind
    e, t = pair(cls, 4, 5, num_layers=2, bidirectional=True, batch_first=batch_first, **kwargs)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4))
    hx = states(cls, kwargs, 2, 2, None, 5, rng) if with_hx else None
    e_out, _ = compare(e, t, x, hx)
    H_out = kwargs.get("proj_size") or 5
    assert tuple(e_out[0].shape) == (6, 2 * H_out) and tuple(e_out[1].shape) == (4, H_out)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_no_bias_matches_torch(kind):
    cls, kwargs = kind
    e, t = pair(cls, 3, 4, num_layers=2, bias=False, **kwargs)
    assert not any("bias" in n for n, _ in e.named_parameters())
    compare(e, t, np.random.default_rng(4).standard_normal((5, 2, 3)))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_float32_matches_torch(kind):
    cls, kwargs = kind
    e, t = pair(cls, 8, 16, num_layers=2, bidirectional=True, dtype=np.float32, **kwargs)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((10, 4, 8)).astype(np.float32)
    out, _ = compare(e, t, x, states(cls, kwargs, 2, 2, 4, 16, rng, np.float32), tol=F32)
    assert out[0].dtype is engine.float32


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_gradcheck_and_double_backward(kind):
    """Finite differences for the input, the initial states and every parameter; then the backward's
    own gradient (create_graph=True), which re-runs the recurrence on Tensors."""
    cls, kwargs = kind
    engine.manual_seed(1)
    m = getattr(nn, cls)(2, 4, num_layers=2, bidirectional=True, **kwargs).double()
    rng = np.random.default_rng(6)
    x = engine.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    hx = [engine.tensor(h, requires_grad=True) for h in states(cls, kwargs, 2, 2, 2, 4, rng)]
    params = tuple(m.parameters())

    def fn(x, *rest):
        init = tuple(rest[:len(hx)])
        return flat(m(x, init if cls == "LSTM" else init[0]))

    assert gradcheck(fn, (x, *hx, *params), eps=1e-6, atol=1e-6, rtol=1e-4)
    assert gradgradcheck(fn, (x, *hx, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_double_backward_matches_torch():
    """A gradient penalty through an LSTM: d/dW of |d out / d x|^2 against torch."""
    e, t = pair("LSTM", 3, 4, num_layers=2, bidirectional=True)
    x = np.random.default_rng(7).standard_normal((5, 2, 3))
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (gx,) = engine.autograd.grad(e(ex)[0].tanh().sum(), [ex], create_graph=True)
    (tgx,) = torch.autograd.grad(t(tx)[0].tanh().sum(), [tx], create_graph=True)
    np.testing.assert_allclose(_np(gx), _np(tgx), **F64)
    (gx * gx).sum().backward()
    (tgx * tgx).sum().backward()
    np.testing.assert_allclose(_np(ex.grad), _np(tx.grad), **F64)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(_np(e.get_parameter(name).grad), _np(p.grad), **F64, err_msg=name)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_only_some_outputs_used(kind):
    """Gradient from h_n alone (the output unused), and from the output alone, as torch."""
    cls, kwargs = kind
    e, t = pair(cls, 3, 4, num_layers=2, **kwargs)
    x = np.random.default_rng(8).standard_normal((5, 2, 3))
    for pick in (lambda out: out[0].sum(), lambda out: flat(out[1])[0].pow(2).sum()):
        ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        pick(e(ex)).backward()
        pick(t(tx)).backward()
        np.testing.assert_allclose(_np(ex.grad), _np(tx.grad), **F64)


# ---- dropout between layers, train and eval --------------------------------------------------------

@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_dropout_only_in_training(cls):
    e, t = pair(cls, 3, 8, num_layers=2, dropout=0.5)
    x = np.random.default_rng(9).standard_normal((6, 4, 3))
    e.eval(), t.eval()
    compare(e, t, x)  # eval: no dropout, exactly torch's
    e.train()
    ex = engine.tensor(x)
    train_out, eval_out = e(ex)[0], e.eval()(ex)[0]
    assert not np.allclose(_np(train_out), _np(eval_out)), "dropout did nothing in train mode"


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_dropout_one_zeroes_the_input_of_later_layers(cls):
    """p=1 is deterministic: layer 2 sees zeros, in both libraries, and layer 1 is untouched."""
    e, t = pair(cls, 3, 5, num_layers=2, dropout=1.0)
    e.train(), t.train()
    out, _ = compare(e, t, np.random.default_rng(10).standard_normal((4, 2, 3)))
    e2, _ = pair(cls, 3, 5, num_layers=2)
    e2.weight_ih_l1.data.zero_()  # a zero input projection is what a zeroed input gives
    np.testing.assert_allclose(_np(e2(engine.tensor(np.random.default_rng(10).standard_normal((4, 2, 3))))[0]),
                               _np(out[0]), **F64)


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.LSTM(3, 4, dropout=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn.LSTM(3, 4, num_layers=2, dropout=0.2)


# ---- cells -----------------------------------------------------------------------------------------

CELLS = [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}), ("LSTMCell", {}), ("GRUCell", {})]
CELL_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]


@pytest.mark.parametrize("kind", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("batched,with_hx,bias", list(itertools.product([True, False], [True, False], [True, False])))
def test_cell_matches_torch(kind, batched, with_hx, bias):
    cls, kwargs = kind
    e, t = pair(cls, 4, 5, bias=bias, **kwargs)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4) if batched else (4,))
    hx = None
    if with_hx:
        shape = (3, 5) if batched else (5,)
        hx = tuple(rng.standard_normal(shape) for _ in range(2 if cls == "LSTMCell" else 1))
    compare(e, t, x, hx)


@pytest.mark.parametrize("kind", CELLS, ids=CELL_IDS)
def test_cell_gradcheck_and_double_backward(kind):
    cls, kwargs = kind
    engine.manual_seed(2)
    m = getattr(nn, cls)(3, 4, **kwargs).double()
    rng = np.random.default_rng(12)
    x = engine.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    hx = [engine.tensor(rng.standard_normal((2, 4)), requires_grad=True) for _ in range(2 if cls == "LSTMCell" else 1)]

    def fn(x, *rest):
        init = tuple(rest[:len(hx)])
        return flat(m(x, init if cls == "LSTMCell" else init[0]))

    args = (x, *hx, *m.parameters())
    assert gradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-4)
    assert gradgradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_cell_loop_matches_torch_and_lstm_layer():
    """An LSTMCell stepped by hand equals torch's, and equals an LSTM layer with the same weights."""
    e, t = pair("LSTMCell", 3, 4)
    x = np.random.default_rng(13).standard_normal((6, 2, 3))
    ex = engine.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    eh = th = None
    for k in range(6):
        eh, th = e(ex[k], eh), t(tx[k], th)
    (eh[0].sum() + eh[1].sum()).backward()
    (th[0].sum() + th[1].sum()).backward()
    np.testing.assert_allclose(_np(eh[0]), _np(th[0]), **F64)
    np.testing.assert_allclose(_np(ex.grad), _np(tx.grad), **F64)
    layer = nn.LSTM(3, 4).double()
    layer.load_state_dict({k + "_l0": v for k, v in e.state_dict().items()})
    _, (h, c) = layer(engine.tensor(x))
    np.testing.assert_allclose(_np(h[0]), _np(eh[0]), **F64)
    np.testing.assert_allclose(_np(c[0]), _np(eh[1]), **F64)


# ---- layouts, reprs, state_dict, init ---------------------------------------------------------------

CONFIGS = [("RNN", (10, 20), {}), ("RNN", (10, 20), {"nonlinearity": "relu", "num_layers": 3}),
           ("LSTM", (10, 20), {"num_layers": 2, "batch_first": True}),
           ("LSTM", (10, 20), {"proj_size": 5, "bidirectional": True, "bias": False}),
           ("GRU", (10, 20), {"num_layers": 2, "dropout": 0.5, "bidirectional": True}),
           ("RNNCell", (10, 20), {"nonlinearity": "relu", "bias": False}), ("LSTMCell", (10, 20), {}),
           ("GRUCell", (10, 20), {"bias": False})]


@pytest.mark.parametrize("cls,args,kwargs", CONFIGS)
def test_parameters_state_dict_and_repr_as_torch(cls, args, kwargs):
    e, t = getattr(nn, cls)(*args, **kwargs), getattr(torch.nn, cls)(*args, **kwargs)
    assert repr(e) == repr(t)
    e_sd, t_sd = e.state_dict(), t.state_dict()
    assert list(e_sd) == list(t_sd)
    for k in t_sd:
        assert tuple(e_sd[k].shape) == tuple(t_sd[k].shape), k


def test_torch_state_dict_loads_and_gives_identical_outputs():
    t = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3).double()
    e = nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3).double()
    e.load_state_dict({k: engine.tensor(v.numpy()) for k, v in t.state_dict().items()})
    x = np.random.default_rng(14).standard_normal((5, 2, 4))
    (eo, (eh, ec)), (to, (th, tc)) = e(engine.tensor(x)), t(torch.tensor(x))
    for a, b in ((eo, to), (eh, th), (ec, tc)):
        np.testing.assert_allclose(_np(a), _np(b), **F64)


def test_lstm_gate_order_is_ifgo():
    """With W = 0, a bias opening only the forget gate keeps c0 (f=1, i=0): the gate at [H:2H] is f;
    the g block at [2H:3H] is the candidate, o at [3H:]."""
    H = 2
    m = nn.LSTM(1, H, bias=True).double()
    for p in m.parameters():
        p.data.zero_()
    big = 50.0
    b = np.zeros(4 * H)
    b[:H], b[H:2 * H], b[2 * H:3 * H], b[3 * H:] = -big, big, 0.0, big
    m.bias_ih_l0.data.copy_(engine.tensor(b))
    c0 = engine.tensor(np.array([[[0.3, -0.7]]]))
    _, (h, c) = m(engine.zeros(1, 1, 1, dtype=engine.float64), (engine.zeros(1, 1, H, dtype=engine.float64), c0))
    np.testing.assert_allclose(_np(c), _np(c0), atol=1e-12)
    np.testing.assert_allclose(_np(h), np.tanh(_np(c0)), atol=1e-12)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_init_is_uniform_within_one_over_sqrt_hidden(cls):
    engine.manual_seed(3)
    H = 64
    m = getattr(nn, cls)(32, H)
    bound = 1 / np.sqrt(H)
    values = np.concatenate([_np(p).ravel() for p in m.parameters()])
    assert np.abs(values).max() <= bound
    assert values.min() < -0.95 * bound and values.max() > 0.95 * bound
    assert abs(values.std() - bound / np.sqrt(3)) < 0.02 * bound  # the std of U(-b, b)
    assert abs(values.mean()) < 0.02 * bound


def test_flatten_parameters_and_all_weights():
    m = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    assert m.flatten_parameters() is None
    assert [[tuple(p.shape) for p in ws] for ws in m.all_weights] == \
        [[tuple(p.shape) for p in ws] for ws in torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).all_weights]


def _graph_size(t) -> int:
    seen, stack = set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(edge[0] for edge in node.next_edges if edge is not None)
    return len(seen)


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
def test_graph_does_not_grow_with_sequence_length(cls):
    """The input projection is one GEMM per layer and direction and the time loop one node: the
    recorded graph has as many nodes for 50 steps as for 2."""
    m = getattr(nn, cls)(3, 4, num_layers=2, bidirectional=True)
    sizes = [_graph_size(m(engine.randn(L, 2, 3, requires_grad=True))[0]) for L in (2, 50)]
    assert sizes[0] == sizes[1] < 60, sizes


# ---- long sequences, freeing, repeated backward ----------------------------------------------------------

def test_long_sequence_no_recursion_and_graph_freed():
    m = nn.GRU(3, 4)
    m(engine.randn(3, 2, 3))[0].sum().backward()  # first uses (thread pools, caches) make garbage of their own
    gc.collect()
    x = engine.randn(2000, 2, 3, requires_grad=True)
    out, h = m(x)
    node = weakref.ref(out.grad_fn)
    (out.sum() + h.sum()).backward()
    assert x.grad is not None and np.isfinite(_np(x.grad)).all()
    del out, h
    assert node() is None, "the graph outlived backward"
    assert gc.collect() == 0, "the graph formed reference cycles"


def test_second_backward_needs_retain_graph():
    m = nn.LSTM(2, 3)
    x = engine.randn(4, 1, 2, requires_grad=True)
    out = m(x)[0].sum()
    out.backward(retain_graph=True)
    first = _np(x.grad).copy()
    out.backward()
    np.testing.assert_allclose(_np(x.grad), 2 * first, rtol=1e-6)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"])
def test_output_modified_in_place_before_backward_is_an_error(cls):
    """The outputs share memory with what backward reads: changing one in place must not go unnoticed."""
    m = getattr(nn, cls)(2, 3)
    x = engine.randn(4, 1, 2, requires_grad=True)
    out = flat(m(x) if "Cell" not in cls else m(x[0]))[0]
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_no_grad_forward_records_nothing():
    m = nn.LSTM(2, 3)
    with engine.no_grad():
        out, (h, c) = m(engine.randn(4, 1, 2))
    assert out.grad_fn is None and not out.requires_grad and h.grad_fn is None


def test_module_to_float64_after_construction():
    e = nn.GRU(3, 4, num_layers=2)
    t = torch.nn.GRU(3, 4, num_layers=2)
    t.load_state_dict({k: torch.tensor(v.numpy()) for k, v in e.state_dict().items()})
    e.double(), t.double()
    compare(e, t, np.random.default_rng(15).standard_normal((3, 2, 3)))


# ---- errors -----------------------------------------------------------------------------------------------

def test_wrong_input_size_names_the_layer():
    m = nn.LSTM(10, 20)
    with pytest.raises(RuntimeError, match=r"LSTM\(10, 20\): expected input with last dimension "
                                           r"input_size=10, got input of shape \(5, 3, 7\)"):
        m(engine.randn(5, 3, 7))
    with pytest.raises(RuntimeError, match=r"GRUCell\(10, 20\): expected input with last dimension input_size=10"):
        nn.GRUCell(10, 20)(engine.randn(3, 7))


def test_wrong_input_dims_and_types():
    with pytest.raises(ValueError, match=r"GRU\(3, 4, batch_first=True\): expected a 3-D input \(N, L, H_in\)"):
        nn.GRU(3, 4, batch_first=True)(engine.randn(2, 2, 2, 3))
    with pytest.raises(TypeError, match=r"RNN\(3, 4\): expected input to be a Tensor"):
        nn.RNN(3, 4)([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"LSTMCell\(3, 4\): expected input \(N, input_size\)"):
        nn.LSTMCell(3, 4)(engine.randn(1, 2, 3))
    with pytest.raises(ValueError, match="sequence of length > 0"):
        nn.LSTM(3, 4)(engine.randn(0, 2, 3))


def test_wrong_hidden_state_shapes():
    m = nn.LSTM(3, 4, num_layers=2)
    x = engine.randn(5, 2, 3)
    good = engine.zeros(2, 2, 4)
    with pytest.raises(RuntimeError, match=r"LSTM\(3, 4, num_layers=2\): expected h_0 of shape \(2, 2, 4\).*"
                                           r"got \(1, 2, 4\)"):
        m(x, (engine.zeros(1, 2, 4), good))
    with pytest.raises(RuntimeError, match=r"expected c_0 of shape \(2, 2, 4\)"):
        m(x, (good, engine.zeros(2, 3, 4)))
    with pytest.raises(TypeError, match=r"expected hx to be a tuple \(h_0, c_0\)"):
        m(x, good)
    with pytest.raises(RuntimeError, match=r"GRU\(3, 4\): expected h_0 of shape \(1, 4\)"):
        nn.GRU(3, 4)(engine.randn(5, 3), engine.zeros(1, 1, 4))  # unbatched input, batched state
    with pytest.raises(RuntimeError, match=r"RNNCell\(3, 4\): expected hx of shape \(2, 4\)"):
        nn.RNNCell(3, 4)(engine.randn(2, 3), engine.zeros(3, 4))
    with pytest.raises(RuntimeError, match=r"LSTMCell\(3, 4\): expected hx\[1\] of shape \(2, 4\)"):
        nn.LSTMCell(3, 4)(engine.randn(2, 3), (engine.zeros(2, 4), engine.zeros(2, 5)))


def test_dtype_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"LSTM\(3, 4\): input dtype \(engine.float64\) does not match "
                                         r"weight dtype \(engine.float32\)"):
        nn.LSTM(3, 4)(engine.randn(2, 1, 3, dtype=engine.float64))
    with pytest.raises(ValueError, match=r"h_0 dtype \(engine.float64\) does not match"):
        nn.GRU(3, 4)(engine.randn(2, 1, 3), engine.zeros(1, 1, 4, dtype=engine.float64))


def test_constructor_errors():
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        nn.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        nn.RNN(3, 4, proj_size=2)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="dropout should be a number in range"):
        nn.LSTM(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="hidden_size must be greater than zero"):
        nn.LSTM(3, 0)
    with pytest.raises(TypeError, match="num_layers should be of type int"):
        nn.GRU(3, 4, num_layers=2.0)


# ---- GPU (runs where CuPy and a GPU are present) -------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_cuda_matches_cpu(kind):
    cls, kwargs = kind
    engine.manual_seed(4)
    cpu = getattr(nn, cls)(3, 8, num_layers=2, bidirectional=True, **kwargs).double()
    gpu = getattr(nn, cls)(3, 8, num_layers=2, bidirectional=True, **kwargs).double()
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    x = np.random.default_rng(16).standard_normal((6, 2, 3))
    xc, xg = engine.tensor(x, requires_grad=True), engine.tensor(x, device="cuda", requires_grad=True)
    oc, og = flat(cpu(xc)), flat(gpu(xg))
    assert og[0].device.type == "cuda"
    for a, b in zip(oc, og):
        np.testing.assert_allclose(_np(a), _np(b), **F64)
    sum(o.sum() for o in oc).backward()
    sum(o.sum() for o in og).backward()
    np.testing.assert_allclose(_np(xc.grad), _np(xg.grad), **F64)
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        assert q.grad.device.type == "cuda"
        np.testing.assert_allclose(_np(p.grad), _np(q.grad), **F64, err_msg=name)
