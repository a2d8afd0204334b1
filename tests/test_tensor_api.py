"""The Tensor object against PyTorch: attributes, metadata methods, conversions (to/cpu/float/...),
detach/clone/data, requires_grad rules, new_* constructors, narrow/t, and the Python protocols
(len, iteration, float/int/bool/index, format, in)."""
import numpy as np
import pytest

import engine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def tname(dt) -> str:
    return str(dt).split(".")[-1]


def pair(data, **kw):
    """The same tensor in engine and in torch."""
    ek = {k: (getattr(engine, v) if k == "dtype" else v) for k, v in kw.items()}
    tk = {k: (getattr(torch, v) if k == "dtype" else v) for k, v in kw.items()}
    return engine.tensor(data, **ek), torch.tensor(data, **tk)


def assert_same(e, t):
    assert isinstance(e, engine.Tensor)
    assert tuple(e.shape) == tuple(t.shape)
    assert e.dtype.name == tname(t.dtype)
    np.testing.assert_array_equal(e.detach().numpy(), t.detach().numpy())


# ---- attributes and metadata ------------------------------------------------------------------------

SHAPES = [(), (0,), (3,), (2, 3), (2, 0, 4), (1, 1, 1, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_metadata_matches_torch(shape):
    e, t = engine.zeros(shape), torch.zeros(shape)
    assert e.shape == t.shape and isinstance(e.shape, tuple) and isinstance(e.shape, engine.Size)
    assert e.size() == t.size()
    assert e.ndim == t.ndim == e.dim()
    assert e.numel() == t.numel() == e.nelement() == e.shape.numel()
    assert e.element_size() == t.element_size()
    assert e.is_contiguous()
    assert e.stride() == t.stride()
    for d in range(-len(shape), len(shape)):
        assert e.size(d) == t.size(d)
        assert e.stride(d) == t.stride(d)


@pytest.mark.parametrize("dim", [2, -3, 5])
def test_size_with_out_of_range_dim_raises_index_error(dim):
    with pytest.raises(IndexError):
        torch.zeros(2, 3).size(dim)
    with pytest.raises(IndexError, match="Dimension out of range"):
        engine.zeros(2, 3).size(dim)


def test_size_is_a_tuple_that_slices_and_concatenates_to_sizes():
    s = engine.zeros(2, 3, 4).shape
    assert s == (2, 3, 4) and s[0] == 2 and s[-1] == 4
    assert isinstance(s[1:], engine.Size) and s[1:] == (3, 4)
    assert isinstance(s + (5,), engine.Size) and s + (5,) == (2, 3, 4, 5)
    assert repr(s[1:]) == repr(torch.zeros(2, 3, 4).shape[1:]).replace("torch", "engine")
    assert engine.Size([2, 3]) == (2, 3)


def test_strides_of_views_match_torch():
    e, t = engine.zeros(3, 4), torch.zeros(3, 4)
    for fe, ft in [(lambda x: x.t(), lambda x: x.t()), (lambda x: x[:, 1:], lambda x: x[:, 1:]),
                   (lambda x: x.narrow(1, 1, 2), lambda x: x.narrow(1, 1, 2)),
                   (lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(0)), (lambda x: x[::2], lambda x: x[::2])]:
        assert fe(e).stride() == ft(t).stride()
        assert fe(e).is_contiguous() == ft(t).is_contiguous()


def test_leaf_and_grad_attributes():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    assert x.is_leaf and x.requires_grad and x.grad is None and x.grad_fn is None
    y = x * 2
    assert not y.is_leaf and y.requires_grad and y.grad is None
    assert y.grad_fn.name() == "MulBackward0"
    plain = engine.tensor([1.0])
    assert plain.is_leaf and not plain.requires_grad and plain.grad_fn is None
    with engine.no_grad():
        z = x * 2
    assert z.is_leaf and not z.requires_grad and z.grad_fn is None
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0] and x.grad.shape == x.shape and x.grad.dtype is x.dtype


def test_grad_can_be_assigned():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    x.grad = engine.ones(2)
    assert x.grad.tolist() == [1.0, 1.0]
    x.grad = None
    assert x.grad is None


def test_isinstance_and_is_tensor():
    for t in (engine.zeros(1), engine.tensor(3), engine.tensor([True]), engine.rand(2) * 2):
        assert isinstance(t, engine.Tensor) and engine.is_tensor(t)
    assert not engine.is_tensor(np.zeros(1))
    assert not isinstance(np.zeros(1), engine.Tensor)


# ---- item / tolist ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data, dtype", [(2.5, "float32"), (7, "int64"), (True, "bool"), ([3], "int32"),
                                         ([[1.25]], "float64"), (0.1, "float16"), (255, "uint8")])
def test_item_matches_torch(data, dtype):
    e, t = pair(data, dtype=dtype)
    assert e.item() == t.item()
    assert type(e.item()) is type(t.item())


def test_item_of_many_elements_raises():
    with pytest.raises(RuntimeError, match="2 elements"):
        engine.tensor([1.0, 2.0]).item()
    with pytest.raises(RuntimeError):
        engine.zeros(0).item()


@pytest.mark.parametrize("data, dtype", [([[1.5, 2.0], [3.0, 4.0]], "float32"), ([1, 2], "int64"),
                                         ([True, False], "bool"), (5, "int64"), ([], "float32"),
                                         ([[[1]], [[2]]], "int32"), ([0.1, 0.2], "float16")])
def test_tolist_matches_torch(data, dtype):
    e, t = pair(data, dtype=dtype)
    out = e.tolist()
    assert out == t.tolist()
    for v, w in zip(np.array(out, dtype=object).ravel().tolist(), np.array(t.tolist(), dtype=object).ravel().tolist()):
        assert type(v) is type(w)  # Python ints, floats and bools, not numpy scalars


# ---- conversions ------------------------------------------------------------------------------------

CONVERSIONS = ["float", "double", "half", "long", "int", "bool"]


@pytest.mark.parametrize("method", CONVERSIONS)
@pytest.mark.parametrize("data", [[-1.7, -0.2, 0.0, 0.5, 2.9], [3, 0, -2], [True, False]], ids=["float", "int", "bool"])
def test_conversion_methods_match_torch(method, data):
    e, t = pair(data)
    assert_same(getattr(e, method)(), getattr(t, method)())


@pytest.mark.parametrize("target", ["uint8", "int8", "int16", "int32", "float16", "float64", "bool"])
def test_to_dtype_matches_torch(target):
    e, t = pair([300, -1, 0, 7])
    assert_same(e.to(getattr(engine, target)), t.to(getattr(torch, target)))
    assert_same(e.type(getattr(engine, target)), t.type(getattr(torch, target)))


def test_to_returns_self_when_nothing_changes():
    x = engine.tensor([1.0, 2.0])
    assert x.to(engine.float32) is x
    assert x.to("cpu") is x
    assert x.to(engine.device("cpu")) is x
    assert x.to("cpu", engine.float32) is x
    assert x.cpu() is x
    assert x.float() is x
    assert x.type(engine.float32) is x
    c = x.to(engine.float32, copy=True)
    assert c is not x and c.tolist() == x.tolist() and not np.shares_memory(c.numpy(), x.numpy())


def test_to_forms():
    x = engine.tensor([1.5, 2.5])
    assert x.to("cpu", engine.float64).dtype is engine.float64
    assert x.to(device="cpu", dtype=engine.int32).tolist() == [1, 2]
    assert x.to(dtype=engine.float16).dtype is engine.float16
    other = engine.tensor([1], dtype=engine.int32)
    y = x.to(other)
    assert y.dtype is engine.int32 and y.device == other.device
    assert x.to(float).dtype is engine.float64  # the Python type float means float64, as in torch


def test_to_is_differentiable():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(engine.float64)
    assert y.grad_fn is not None and not y.is_leaf
    (y * y).sum().backward()
    assert x.grad.dtype is engine.float32 and x.grad.tolist() == [2.0, 4.0]


def test_type_without_arguments_gives_the_legacy_name():
    for name in ["float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "bool"]:
        e, t = engine.zeros(1, dtype=getattr(engine, name)), torch.zeros(1, dtype=getattr(torch, name))
        assert e.type() == t.type().replace("torch.", "engine.")


def test_type_with_a_legacy_name():
    x = engine.tensor([1.7, -2.2])
    assert x.type("engine.IntTensor").dtype is engine.int32
    assert x.type("torch.DoubleTensor").dtype is engine.float64
    assert x.type("engine.LongTensor").tolist() == torch.tensor([1.7, -2.2]).type("torch.LongTensor").tolist()
    with pytest.raises(ValueError, match="invalid type"):
        x.type("engine.NopeTensor")


def test_to_device_round_trip(device):
    x = engine.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = x.to(device)
    assert y.device == engine.device(device)
    assert y.cpu().tolist() == x.tolist()
    assert (y * 2).device == y.device
    z = engine.zeros(2, 2, device=device)
    assert z.to(x).device == x.device


# ---- detach / clone / data --------------------------------------------------------------------------

def test_detach_shares_storage_without_history():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    d = y.detach()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert np.shares_memory(d.numpy(), y.detach().numpy())
    d[0] = 100.0
    assert y[0].item() == 100.0
    xd = x.detach()
    xd.add_(1)
    assert x.tolist() == [2.0, 3.0]


def test_detach_shares_the_version_counter_so_autograd_notices_in_place_changes():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x.sigmoid()  # backward reads the output
    y.detach().zero_()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_clone_copies_and_records():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.grad_fn.name() == "CloneBackward0" and not c.is_leaf
    assert not np.shares_memory(c.detach().numpy(), x.detach().numpy())
    (c * c).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    p = engine.tensor([1, 2])
    q = p.clone()
    q[0] = 9
    assert p.tolist() == [1, 2] and q.dtype is engine.int64


def test_data_shares_storage_and_changes_are_invisible_to_autograd():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    d = x.data
    assert d is not x and not d.requires_grad and d.is_leaf
    y = x * x
    x.data.mul_(2)  # no version bump, no error: the update is not recorded
    assert x.tolist() == [2.0, 4.0] and x.requires_grad and x.is_leaf
    y.sum().backward()
    tx = torch.tensor([1.0, 2.0], requires_grad=True)
    ty = tx * tx
    tx.data.mul_(2)
    ty.sum().backward()
    assert x.grad.tolist() == tx.grad.tolist()
    x.data[0] = 7.0
    assert x[0].item() == 7.0


def test_data_of_a_non_leaf_is_a_leaf():
    y = engine.tensor([1.0, 2.0], requires_grad=True) * 2
    assert y.data.is_leaf and y.data.grad_fn is None and y.data.tolist() == [2.0, 4.0]


def test_assigning_data():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    x.data = engine.tensor([3.0, 4.0, 5.0])
    assert x.tolist() == [3.0, 4.0, 5.0] and x.shape == (3,) and x.requires_grad and x.is_leaf
    src = engine.zeros(2)
    plain = engine.tensor([1.0, 2.0])
    plain.data = src
    src[0] = 9.0
    assert plain[0].item() == 9.0
    p = engine.tensor([1, 2])
    p.data = engine.tensor([5, 6, 7])
    assert p.tolist() == [5, 6, 7]


def test_assigning_non_float_data_to_a_grad_tensor_raises():
    with pytest.raises(RuntimeError):
        torch.tensor([1.0], requires_grad=True).data = torch.tensor([1])
    x = engine.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        x.data = engine.tensor([1])
    with pytest.raises(TypeError):
        x.data = [1.0]


# ---- requires_grad rules ----------------------------------------------------------------------------

def test_requires_grad_on_integer_tensors_raises():
    for make in (lambda: engine.tensor([1, 2]), lambda: engine.tensor([True])):
        with pytest.raises(RuntimeError, match="floating point"):
            make().requires_grad_()
        t = make()
        with pytest.raises(RuntimeError, match="floating point"):
            t.requires_grad = True
        assert not t.requires_grad
    assert not engine.tensor([1, 2]).requires_grad_(False).requires_grad


def test_requires_grad_on_non_leaf():
    y = engine.tensor([1.0, 2.0], requires_grad=True) * 2
    assert y.requires_grad_() is y and y.requires_grad
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad = False
    assert y.requires_grad


def test_requires_grad_toggle_on_leaf():
    x = engine.tensor([1.0, 2.0])
    assert x.requires_grad_() is x and x.requires_grad
    x.requires_grad = False
    assert not x.requires_grad
    x.requires_grad = True
    assert x.requires_grad and x.is_leaf
    h = engine.tensor([1.0], dtype=engine.float16).requires_grad_()
    assert h.requires_grad


# ---- zero_ ------------------------------------------------------------------------------------------

def test_zero_():
    for x in (engine.tensor([1.5, -2.0]), engine.tensor([[1, 2]]), engine.tensor([True])):
        dt = x.dtype
        assert x.zero_() is x
        assert x.dtype is dt and not x.numpy().any()
    v = engine.arange(6.0).reshape(2, 3)
    v.narrow(1, 0, 2).zero_()  # through a view
    assert v.tolist() == [[0.0, 0.0, 2.0], [0.0, 0.0, 5.0]]


def test_zero_on_a_grad_leaf_needs_no_grad():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x.zero_()
    with engine.no_grad():
        x.zero_()
    assert x.tolist() == [0.0, 0.0] and x.requires_grad and x.is_leaf


def test_zero_on_a_non_leaf_cuts_the_gradient():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    y.zero_()
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0]


# ---- new_* ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "int32", "float16", "bool"])
def test_new_constructors_take_dtype_and_device_from_self(dtype):
    e, t = engine.ones(2, dtype=getattr(engine, dtype)), torch.ones(2, dtype=getattr(torch, dtype))
    assert_same(e.new_zeros(2, 3), t.new_zeros(2, 3))
    assert_same(e.new_zeros((2, 3)), t.new_zeros((2, 3)))
    assert_same(e.new_ones([4]), t.new_ones([4]))
    assert_same(e.new_full((2,), 7), t.new_full((2,), 7))
    assert_same(e.new_tensor([1, 0, 3]), t.new_tensor([1, 0, 3]))
    n = e.new_empty((1, 2))
    assert n.shape == (1, 2) and n.dtype is e.dtype
    assert e.new_zeros(2).device == e.device


def test_new_constructors_overrides_and_no_grad_inheritance():
    x = engine.tensor([1.0, 2.0], dtype=engine.float64, requires_grad=True)
    assert x.new_zeros(2, dtype=engine.int32).dtype is engine.int32
    assert x.new_tensor([1.5]).dtype is engine.float64
    assert x.new_tensor([1.5], dtype=engine.float16).dtype is engine.float16
    for n in (x.new_zeros(2), x.new_ones(2), x.new_full((2,), 1.0), x.new_tensor([1.0]), x.new_empty(1)):
        assert not n.requires_grad and n.is_leaf
    assert x.new_ones(2, requires_grad=True).requires_grad
    src = engine.tensor([3.0, 4.0], requires_grad=True)
    copy = x.new_tensor(src)
    assert not copy.requires_grad and copy.dtype is engine.float64
    copy[0] = 0.0
    assert src[0].item() == 3.0
    with pytest.raises(RuntimeError, match="negative dimension"):
        x.new_zeros(-1)


# ---- narrow / t -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, start, length", [(0, 1, 2), (1, 0, 1), (-1, 2, 2), (0, -2, 1), (1, 4, 0), (0, 0, 3)])
def test_narrow_matches_torch(dim, start, length):
    e, t = engine.arange(12).reshape(3, 4), torch.arange(12).reshape(3, 4)
    assert_same(e.narrow(dim, start, length), t.narrow(dim, start, length))
    assert_same(engine.narrow(e, dim, start, length), torch.narrow(t, dim, start, length))


def test_narrow_is_a_view():
    x = engine.arange(6.0).reshape(2, 3)
    n = x.narrow(1, 1, 2)
    n[0, 0] = -1.0
    assert x[0, 1].item() == -1.0


@pytest.mark.parametrize("dim, start, length", [(0, 2, 2), (2, 0, 1), (0, 0, -1)])
def test_narrow_out_of_range_raises(dim, start, length):
    with pytest.raises((RuntimeError, IndexError)):
        torch.arange(12).reshape(3, 4).narrow(dim, start, length)
    with pytest.raises((RuntimeError, IndexError)):
        engine.arange(12).reshape(3, 4).narrow(dim, start, length)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (1, 4)])
def test_t_matches_torch(shape):
    n = int(np.prod(shape))
    e, t = engine.arange(n).reshape(shape), torch.arange(n).reshape(shape)
    assert_same(e.t(), t.t())
    assert_same(engine.t(e), torch.t(t))


def test_t_is_a_view_and_refuses_3d():
    x = engine.arange(6.0).reshape(2, 3)
    x.t()[2, 1] = 100.0
    assert x[1, 2].item() == 100.0
    with pytest.raises(RuntimeError, match="<= 2 dimensions"):
        engine.zeros(2, 3, 4).t()
    x = engine.zeros(2, 3, requires_grad=True)
    x.t().sum().backward()
    assert x.grad.shape == (2, 3)


# ---- Python protocols -------------------------------------------------------------------------------

def test_len_and_iteration_match_torch():
    e, t = pair([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert len(e) == len(t) == 3
    rows = list(e)
    assert len(rows) == 3 and all(isinstance(r, engine.Tensor) for r in rows)
    assert [r.tolist() for r in rows] == [r.tolist() for r in t]
    assert [v.item() for v in engine.tensor([1, 2, 3])] == [1, 2, 3]
    assert all(v.ndim == 0 for v in engine.tensor([1, 2, 3]))
    assert len(engine.zeros(0, 2)) == 0 and list(engine.zeros(0)) == []
    a, b = engine.tensor([1, 2])  # unpacking
    assert (a.item(), b.item()) == (1, 2)


def test_len_and_iteration_of_0d_raise():
    with pytest.raises(TypeError, match="0-d"):
        len(engine.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(engine.tensor(1.0))


def test_iteration_rows_share_storage():
    x = engine.zeros(2, 2)
    for row in x:
        row[0] = 1.0
    assert x.tolist() == [[1.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize("data", [2.5, [3.5], [[-1.25]], 7, [True], -0.0])
def test_float_int_bool_of_one_element(data):
    e, t = pair(data)
    assert float(e) == float(t)
    assert int(e) == int(t)
    assert bool(e) is bool(t)


@pytest.mark.parametrize("data", [[1.0, 2.0], [[1, 2]], []])
def test_float_int_of_many_elements_raise_value_error(data):
    e, t = pair(data)
    for conv in (float, int):
        with pytest.raises(ValueError):
            conv(t)
        with pytest.raises(ValueError, match="one element"):
            conv(e)


@pytest.mark.parametrize("data", [[1.0, 2.0], [[True, False]], []])
def test_bool_of_many_elements_raises_runtime_error(data):
    e, t = pair(data)
    with pytest.raises(RuntimeError):
        bool(t)
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(e)
    with pytest.raises(RuntimeError, match="ambiguous"):
        if e:
            pass


def test_index_protocol():
    assert [10, 20, 30][engine.tensor(1)] == 20
    assert list(range(engine.tensor(3))) == [0, 1, 2]
    assert engine.tensor([5, 6])[engine.tensor(1)].item() == 6
    with pytest.raises(TypeError, match="integer tensors"):
        [1, 2][engine.tensor(1.0)]
    with pytest.raises(TypeError, match="integer tensors"):
        [1, 2][engine.tensor([0, 1])]


@pytest.mark.parametrize("value, spec", [(1.23456, ".3f"), (1.23456, ""), (2.5, "e"), (1234.5, ",.1f"),
                                         (7, "d"), (7, "04d"), (0.25, ".1%"), (3.0, ">8.2f")])
def test_format_of_0d_tensors_matches_torch(value, spec):
    e, t = engine.tensor(value), torch.tensor(value)
    assert format(e, spec) == format(t, spec)
    assert f"{e}" == f"{t}"


def test_format_in_f_strings():
    loss = engine.tensor(0.123456, requires_grad=True) * 1
    assert f"loss {loss:.4f}" == "loss 0.1235"
    assert "{:.2f}".format(engine.tensor(2.0)) == "2.00"


def test_format_of_multi_dim_tensors():
    e, t = engine.tensor([1.5, 2.0]), torch.tensor([1.5, 2.0])
    assert format(e) == format(t).replace("torch.", "engine.") == repr(e)
    assert f"{e}" == str(e) == repr(e)
    for x in (t, e):
        with pytest.raises(TypeError):
            format(x, ".3f")
    with pytest.raises(TypeError):
        format(torch.tensor([1.5]), ".3f")
    with pytest.raises(TypeError, match="0-d"):
        format(engine.tensor([1.5]), ".3f")


def test_contains_matches_torch():
    e, t = pair([[1, 2], [3, 4]])
    for v in (4, 5, 2.0, True):
        assert (v in e) == (v in t)
    assert engine.tensor(3) in e
    assert (2 in engine.tensor([1, 2, 3])) and (7 not in engine.tensor([1, 2, 3]))
    with pytest.raises(RuntimeError, match="__contains__"):
        "a" in e  # noqa: B015


def test_tensors_are_hashable_by_identity():
    a, b = engine.tensor([1.0]), engine.tensor([1.0])
    assert len({a, b}) == 2
    d = {a: "a"}
    assert d[a] == "a"


def test_copy_and_deepcopy():
    import copy
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    c = copy.deepcopy(x)
    assert c.tolist() == x.tolist() and c.requires_grad and c.is_leaf
    c.detach()[0] = 9.0
    assert x[0].item() == 1.0
