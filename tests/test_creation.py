"""Creation functions against PyTorch: tensor() and its dtype inference, from_numpy/as_tensor memory
sharing, zeros/ones/full/empty and size forms, arange, linspace, eye, the *_like family, and the random
creators' shapes, dtypes and errors."""
import numpy as np
import pytest

import engine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def tname(dt) -> str:
    return str(dt).split(".")[-1]


def assert_same(e, t, exact: bool = True):
    """Same shape, dtype name and values (bitwise when exact)."""
    assert isinstance(e, engine.Tensor)
    assert tuple(e.shape) == tuple(t.shape)
    assert e.dtype.name == tname(t.dtype)
    if exact:
        np.testing.assert_array_equal(e.numpy(), t.numpy())
    else:
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-6, atol=1e-7)


# ---- tensor() ---------------------------------------------------------------------------------------

DATA = {
    "float scalar": 3.5,
    "int scalar": 7,
    "bool scalar": True,
    "float list": [1.0, 2.5, -3.0],
    "int list": [1, 2, 3],
    "bool list": [True, False],
    "nested": [[1.0, 2.0], [3.0, 4.0]],
    "nested ints": [[1, 2, 3], [4, 5, 6]],
    "3-d": [[[1, 2]], [[3, 4]]],
    "int and float": [1, 2.5],
    "bool and int": [True, 2],
    "bool, int and float": [True, 2, 3.5],
    "tuple": (1.0, 2.0),
    "empty": [],
    "empty rows": [[], []],
    "big int": [2 ** 40, -(2 ** 62)],
    "numpy float64 scalar": np.float64(2.5),
    "numpy int32 scalar": np.int32(3),
    "list with numpy float64": [np.float64(1.5), 2],
    "list with numpy float32": [np.float32(1.5), 2.0],
    "list with numpy int8": [np.int8(1), np.int8(2)],
    "list with numpy float16 and int": [np.float16(1), 2],
    "numpy float64": np.array([1.0, 2.0]),
    "numpy float32": np.array([[1.0, 2.0]], dtype=np.float32),
    "numpy float16": np.array([0.5, 1.5], dtype=np.float16),
    "numpy int32": np.array([1, 2], dtype=np.int32),
    "numpy int64": np.arange(4),
    "numpy uint8": np.array([0, 255], dtype=np.uint8),
    "numpy int8": np.array([-1, 1], dtype=np.int8),
    "numpy int16": np.array([-1, 1], dtype=np.int16),
    "numpy bool": np.array([True, False]),
    "numpy 0-d": np.array(2.5),
}


@pytest.mark.parametrize("key", list(DATA))
def test_tensor_dtype_and_values_match_torch(key):
    data = DATA[key]
    assert_same(engine.tensor(data), torch.tensor(data))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "uint8", "bool", "int8"])
@pytest.mark.parametrize("data", [[1.7, -2.2, 0.0], [[1, 0], [2, 3]], [True, False]], ids=["floats", "ints", "bools"])
def test_tensor_with_explicit_dtype_matches_torch(data, dtype):
    if dtype == "uint8" and data == [1.7, -2.2, 0.0]:
        pytest.skip("negative float to uint8 is undefined behaviour in C (torch) and numpy")
    assert_same(engine.tensor(data, dtype=getattr(engine, dtype)), torch.tensor(data, dtype=getattr(torch, dtype)))


def test_tensor_of_tensors():
    assert_same(engine.tensor([engine.tensor(1.5), engine.tensor(2.0)]),
                torch.tensor([torch.tensor(1.5), torch.tensor(2.0)]))
    # a 0-d tensor keeps its dtype in inference, as in torch
    assert_same(engine.tensor([engine.tensor(1.5, dtype=engine.float64), 2.0]),
                torch.tensor([torch.tensor(1.5, dtype=torch.float64), 2.0]))
    # rows that are tensors (torch refuses these; engine stacks them)
    t = engine.tensor([engine.tensor([1, 2]), engine.tensor([3, 4])])
    assert t.tolist() == [[1, 2], [3, 4]] and t.dtype is engine.int64


def test_tensor_copies_its_input():
    a = np.array([1.0, 2.0])
    t = engine.tensor(a)
    a[0] = 100
    assert t.tolist() == [1.0, 2.0]
    src = engine.tensor([1.0, 2.0], requires_grad=True)
    c = engine.tensor(src)
    assert c.tolist() == [1.0, 2.0] and not c.requires_grad and c.is_leaf
    c[0] = 5.0
    assert src.tolist() == [1.0, 2.0]


def test_tensor_requires_grad():
    t = engine.tensor([1.0, 2.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.grad is None and t.grad_fn is None
    assert not engine.tensor([1.0]).requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        engine.tensor([1, 2], requires_grad=True)


def test_tensor_with_device():
    assert engine.tensor([1.0], device="cpu").device == engine.device("cpu")
    assert engine.tensor([1.0], device=engine.device("cpu")).device.type == "cpu"


@pytest.mark.parametrize("bad, error", [([[1, 2], [3]], ValueError), ("abc", TypeError), ([1, "a"], TypeError),
                                        ([1, None], TypeError), ({1: 2}, TypeError), (object(), TypeError)],
                         ids=["ragged", "str", "list with str", "None", "dict", "object"])
def test_tensor_refuses_bad_data_with_a_clear_error(bad, error):
    with pytest.raises((error, RuntimeError)):
        torch.tensor(bad)
    with pytest.raises(error, match="tensor|dtype"):
        engine.tensor(bad)


def test_tensor_refuses_unsupported_numpy_dtypes():
    with pytest.raises(TypeError, match="not supported"):
        engine.tensor(np.array([1 + 2j]))
    with pytest.raises(TypeError, match="not supported"):
        engine.from_numpy(np.zeros(2, dtype=np.uint16))


def test_tensor_class_constructor_defaults_to_float():
    t = engine.Tensor([1, 2])
    assert t.dtype is engine.float32 and t.tolist() == [1.0, 2.0]
    assert isinstance(t, engine.Tensor)


@pytest.mark.parametrize("args", [(2,), (2, 3), (0,), ()], ids=str)
def test_tensor_class_constructor_with_sizes(args):
    """The legacy ``Tensor(out, in)`` of many custom layers: a float tensor of that shape."""
    e, t = engine.Tensor(*args), torch.Tensor(*args)
    assert e.shape == t.shape and e.dtype.name == tname(t.dtype)
    assert engine.Tensor(engine.Size([2, 3])).shape == (2, 3)
    with pytest.raises(RuntimeError, match="negative dimension"):
        engine.Tensor(-1)


# ---- from_numpy / as_tensor -------------------------------------------------------------------------

def test_from_numpy_shares_memory_both_ways():
    a = np.arange(6.0).reshape(2, 3)
    t = engine.from_numpy(a)
    assert t.dtype is engine.float64 and tuple(t.shape) == (2, 3)
    a[0, 0] = 42.0
    assert t[0, 0].item() == 42.0
    t[1, 2] = -1.0
    assert a[1, 2] == -1.0
    t.add_(1)
    assert a[0, 0] == 43.0
    assert np.shares_memory(t.numpy(), a)


@pytest.mark.parametrize("view", ["a[:, ::2]", "a.T", "a[::-1]", "a[1:, 1:3]"])
def test_from_numpy_of_strided_arrays(view):
    a = np.arange(12.0).reshape(3, 4)
    v = eval(view)
    t, tt = engine.from_numpy(v), torch.from_numpy(v.copy())
    assert_same(t, tt)
    assert t.is_contiguous() == v.flags.c_contiguous
    v[0, 0] = 99.0  # writes through the view reach the tensor
    assert t[0, 0].item() == 99.0
    t[-1, -1] = -7.0
    assert v[-1, -1] == -7.0
    # ops on a strided tensor see the right values
    np.testing.assert_array_equal((t * 2).numpy(), v * 2)
    np.testing.assert_array_equal(t.sum(0).numpy(), v.sum(0))


def test_from_numpy_matches_torch_dtypes():
    for npd in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_):
        a = np.ones(3, dtype=npd)
        assert engine.from_numpy(a).dtype.name == tname(torch.from_numpy(a).dtype)


def test_from_numpy_refuses_other_objects():
    with pytest.raises(TypeError, match="ndarray"):
        engine.from_numpy([1, 2])


def test_as_tensor_shares_when_it_can():
    a = np.arange(3.0)
    t = engine.as_tensor(a)
    a[0] = 9.0
    assert t[0].item() == 9.0
    c = engine.as_tensor(a, dtype=engine.float32)  # a conversion copies
    a[1] = 9.0
    assert c.dtype is engine.float32 and c[1].item() == 1.0
    x = engine.tensor([1.0])
    assert engine.as_tensor(x) is x
    assert engine.as_tensor([1, 2]).dtype is engine.int64


# ---- zeros / ones / full / empty --------------------------------------------------------------------

SIZE_FORMS = [((2, 3), {}), (((2, 3),), {}), (([2, 3],), {}), (((),), {}), (([],), {}), ((0,), {}),
              ((4,), {}), ((1, 0, 2), {})]


@pytest.mark.parametrize("fn", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("args, kw", SIZE_FORMS, ids=[str(a) for a, _ in SIZE_FORMS])
def test_size_forms(fn, args, kw):
    e, t = getattr(engine, fn)(*args, **kw), getattr(torch, fn)(*args, **kw)
    assert tuple(e.shape) == tuple(t.shape)
    assert e.dtype is engine.float32
    if fn != "empty":
        assert_same(e, t)


def test_size_given_as_a_shape():
    x = engine.zeros(2, 3)
    assert tuple(engine.ones(x.shape).shape) == (2, 3)
    assert tuple(engine.zeros(*x.shape).shape) == (2, 3)
    assert tuple(engine.zeros(engine.tensor(2), 3).shape) == (2, 3)


@pytest.mark.parametrize("fn", ["zeros", "ones", "empty", "rand", "randn"])
@pytest.mark.parametrize("size", [(-1,), (2, -3), ((2, -1),)], ids=["-1", "2,-3", "(2,-1)"])
def test_negative_sizes_raise(fn, size):
    with pytest.raises(RuntimeError):
        getattr(torch, fn)(*size)
    with pytest.raises(RuntimeError, match="negative dimension"):
        getattr(engine, fn)(*size)


@pytest.mark.parametrize("size", [(2.5,), ("3",), ((2, 1.0),)])
def test_non_integer_sizes_raise_type_error(size):
    with pytest.raises(TypeError):
        torch.zeros(*size)
    with pytest.raises(TypeError, match="size"):
        engine.zeros(*size)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "uint8", "bool"])
def test_zeros_ones_empty_with_dtype(dtype):
    for fn in ("zeros", "ones"):
        assert_same(getattr(engine, fn)(2, 2, dtype=getattr(engine, dtype)),
                    getattr(torch, fn)(2, 2, dtype=getattr(torch, dtype)))
    assert engine.empty(3, dtype=getattr(engine, dtype)).dtype.name == dtype


@pytest.mark.parametrize("fill", [3, 2.5, True, False, -1, 0.0])
def test_full_infers_dtype_from_the_fill_value(fill):
    assert_same(engine.full((2, 3), fill), torch.full((2, 3), fill))


@pytest.mark.parametrize("fill, dtype", [(1.5, "int64"), (7, "float64"), (1, "bool"), (2.5, "float16"),
                                         (255, "uint8")])
def test_full_with_dtype(fill, dtype):
    assert_same(engine.full([2], fill, dtype=getattr(engine, dtype)), torch.full([2], fill, dtype=getattr(torch, dtype)))


def test_full_with_tensor_fill_and_requires_grad():
    t = engine.full((2,), engine.tensor(4.0), requires_grad=True)
    assert t.tolist() == [4.0, 4.0] and t.requires_grad and t.is_leaf


def test_creation_requires_grad():
    for t in (engine.zeros(2, requires_grad=True), engine.ones(2, requires_grad=True),
              engine.empty(2, requires_grad=True), engine.eye(2, requires_grad=True),
              engine.arange(3.0, requires_grad=True), engine.linspace(0, 1, 3, requires_grad=True),
              engine.rand(2, requires_grad=True), engine.randn(2, requires_grad=True)):
        assert t.requires_grad and t.is_leaf and t.grad_fn is None
    with pytest.raises(RuntimeError, match="floating point"):
        engine.zeros(2, dtype=engine.int64, requires_grad=True)


# ---- arange -----------------------------------------------------------------------------------------

ARANGE = [
    ((5,), {}), ((0, 5, 2), {}), ((5, 0, -1), {}), ((-3, 3, 2), {}), ((0, 0), {}), ((5, 5, -1), {}),
    ((1.0, 4.0), {}), ((0, 1, 0.1), {}), ((0, 1, 0.25), {}), ((1, 2.5, 0.3), {}), ((0, 5, 1.5), {}),
    ((5.5,), {}), ((0, -1, -0.1), {}), ((10, ), {"dtype": "float64"}), ((0, 1, 0.1), {"dtype": "float64"}),
    ((10,), {"dtype": "int32"}), ((0.5, 3), {"dtype": "int64"}), ((-2.5, 3, 1.5), {"dtype": "int64"}),
    ((-2.5, 3, 1.5), {"dtype": "int32"}), ((3,), {"dtype": "uint8"}), ((5,), {"dtype": "float16"}),
    ((10 ** 10, 10 ** 10 + 3), {}), ((0, 10, 3), {"dtype": "float32"}),
]


@pytest.mark.parametrize("args, kw", ARANGE, ids=[f"{a}{k.get('dtype', '')}" for a, k in ARANGE])
def test_arange_matches_torch_exactly(args, kw):
    ek = {k: getattr(engine, v) for k, v in kw.items()}
    tk = {k: getattr(torch, v) for k, v in kw.items()}
    assert_same(engine.arange(*args, **ek), torch.arange(*args, **tk))


def test_arange_with_tensor_bounds():
    assert_same(engine.arange(engine.tensor(3)), torch.arange(torch.tensor(3)))
    assert_same(engine.arange(0, engine.tensor(1.0), 0.5), torch.arange(0, torch.tensor(1.0), 0.5))


@pytest.mark.parametrize("args", [(0, 5, 0), (3, 0), (0, 3, -1), (0, float("inf")), (float("nan"), 3)])
def test_arange_bad_ranges_raise(args):
    with pytest.raises(RuntimeError):
        torch.arange(*args)
    with pytest.raises(RuntimeError, match="arange"):
        engine.arange(*args)


# ---- linspace / eye ---------------------------------------------------------------------------------

LINSPACE = [(0, 1, 5, None), (0, 1, 7, None), (0, 1, 7, "float64"), (-1, 1, 4, "float64"), (3, -1, 5, "int64"),
            (0.5, 3.7, 4, "int32"), (0, 10, 1, None), (0, 10, 0, None), (2, 2, 3, None), (-5.5, 100.25, 33, None),
            (0, 1, 11, "float16"), (1e-3, 1e3, 50, None)]


@pytest.mark.parametrize("start, end, steps, dtype", LINSPACE)
def test_linspace_matches_torch(start, end, steps, dtype):
    ek = {} if dtype is None else {"dtype": getattr(engine, dtype)}
    tk = {} if dtype is None else {"dtype": getattr(torch, dtype)}
    e, t = engine.linspace(start, end, steps, **ek), torch.linspace(start, end, steps, **tk)
    # same algorithm; torch's vectorized kernel may fuse a multiply-add (one rounding less)
    assert_same(e, t, exact=not e.dtype.is_floating_point)
    if steps:
        assert e[0].item() == t[0].item() and e[-1].item() == t[-1].item()  # the ends are exact


def test_linspace_negative_steps_raise():
    with pytest.raises(RuntimeError):
        torch.linspace(0, 1, -1)
    with pytest.raises(RuntimeError, match="non-negative"):
        engine.linspace(0, 1, -1)


@pytest.mark.parametrize("args, dtype", [((3,), None), ((2, 3), None), ((3, 2), "int64"), ((2,), "bool"),
                                         ((0,), None), ((3, 0), "float64")])
def test_eye_matches_torch(args, dtype):
    ek = {} if dtype is None else {"dtype": getattr(engine, dtype)}
    tk = {} if dtype is None else {"dtype": getattr(torch, dtype)}
    assert_same(engine.eye(*args, **ek), torch.eye(*args, **tk))


@pytest.mark.parametrize("args", [(-1,), (2, -1)])
def test_eye_negative_sizes_raise(args):
    with pytest.raises(RuntimeError):
        torch.eye(*args)
    with pytest.raises(RuntimeError, match="greater or equal to 0"):
        engine.eye(*args)


# ---- the *_like family ------------------------------------------------------------------------------

@pytest.mark.parametrize("src_dtype", ["float32", "float64", "int64", "bool", "float16"])
def test_like_functions_keep_shape_dtype_and_device(src_dtype):
    e = engine.ones(2, 3, dtype=getattr(engine, src_dtype))
    t = torch.ones(2, 3, dtype=getattr(torch, src_dtype))
    assert_same(engine.zeros_like(e), torch.zeros_like(t))
    assert_same(engine.ones_like(e), torch.ones_like(t))
    assert_same(engine.full_like(e, 7), torch.full_like(t, 7))
    assert_same(engine.full_like(e, 2.7), torch.full_like(t, 2.7))
    assert engine.empty_like(e).dtype is e.dtype and engine.empty_like(e).shape == e.shape
    for fn in (engine.zeros_like, engine.ones_like, engine.empty_like):
        assert fn(e).device == e.device


def test_like_functions_with_dtype_override_and_no_grad_inheritance():
    src = engine.tensor([[1.0, 2.0]], requires_grad=True)
    z = engine.zeros_like(src)
    assert not z.requires_grad and z.is_leaf
    assert engine.ones_like(src, dtype=engine.int32).dtype is engine.int32
    assert engine.full_like(src, 3, dtype=engine.float64).dtype is engine.float64
    assert engine.zeros_like(src, requires_grad=True).requires_grad
    r = engine.rand_like(src)
    assert r.shape == src.shape and r.dtype is engine.float32 and not r.requires_grad
    assert engine.randn_like(src, dtype=engine.float64).dtype is engine.float64
    assert engine.rand_like(engine.ones(2, 2, dtype=engine.float16)).dtype is engine.float16


@pytest.mark.parametrize("fn", ["rand_like", "randn_like"])
def test_rand_like_of_integer_tensors_raises(fn):
    with pytest.raises(RuntimeError):
        getattr(torch, fn)(torch.tensor([1, 2]))
    with pytest.raises(RuntimeError, match="floating point"):
        getattr(engine, fn)(engine.tensor([1, 2]))


# ---- random creators: shapes, dtypes, errors --------------------------------------------------------

@pytest.mark.parametrize("fn", ["rand", "randn"])
def test_rand_randn_shapes_and_dtypes(fn):
    f = getattr(engine, fn)
    assert tuple(f(2, 3).shape) == (2, 3)
    assert tuple(f((2, 3)).shape) == (2, 3)
    assert tuple(f([4]).shape) == (4,)
    assert tuple(f().shape) == ()
    assert f(3).dtype is engine.float32
    for dt in (engine.float16, engine.float64):
        assert f(3, dtype=dt).dtype is dt
    with pytest.raises(RuntimeError, match="floating point"):
        f(3, dtype=engine.int64)


@pytest.mark.parametrize("args, kw", [((0, 10, (3,)), {}), ((10, (2, 2)), {}), ((5,), {"size": (3,)}),
                                      ((2, 5), {"size": [4]}), ((3, 10, (2,)), {"dtype": "int32"}),
                                      ((-5, 5, (6,)), {}), ((0, 2, ()), {})])
def test_randint_forms_match_torch(args, kw):
    ek = {k: (getattr(engine, v) if k == "dtype" else v) for k, v in kw.items()}
    tk = {k: (getattr(torch, v) if k == "dtype" else v) for k, v in kw.items()}
    e, t = engine.randint(*args, **ek), torch.randint(*args, **tk)
    assert tuple(e.shape) == tuple(t.shape) and e.dtype.name == tname(t.dtype)


@pytest.mark.parametrize("low, high", [(5, 5), (6, 2)])
def test_randint_empty_range_raises(low, high):
    with pytest.raises(RuntimeError):
        torch.randint(low, high, (2,))
    with pytest.raises(RuntimeError, match="less than"):
        engine.randint(low, high, (2,))


def test_randint_without_size_raises():
    with pytest.raises(TypeError, match="size"):
        engine.randint(5)
    with pytest.raises(TypeError, match="size"):
        engine.randint(0, 5)


def test_randperm():
    p = engine.randperm(10)
    assert p.dtype is engine.int64 and sorted(p.tolist()) == list(range(10))
    assert engine.randperm(4, dtype=engine.int32).dtype is engine.int32
    assert engine.randperm(0).shape == (0,)
    with pytest.raises(RuntimeError):
        torch.randperm(-1)
    with pytest.raises(RuntimeError, match="non-negative"):
        engine.randperm(-1)
