"""Indexing against PyTorch: basic and advanced __getitem__, __setitem__ in a graph, gather/scatter
and friends; values, gradients (repeated indices accumulate) and gradcheck."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from helpers import check, gradcheck, randn, rng  # noqa: E402

pytestmark = pytest.mark.torch


def _idx(m, a):
    """An index array as the library's long tensor."""
    return m.tensor(np.asarray(a, np.int64))


def _mask(m, a):
    return m.tensor(np.asarray(a, bool))


GETITEM = [
    ("int", lambda m, x: x[1]),
    ("neg_int", lambda m, x: x[-1]),
    ("int_int", lambda m, x: x[1, 2]),
    ("int_int_int", lambda m, x: x[0, 2, 1]),
    ("slice", lambda m, x: x[1:]),
    ("slice_step", lambda m, x: x[::2]),
    ("slice_neg", lambda m, x: x[-2:, :-1]),
    ("slice_step_inner", lambda m, x: x[:, 1::2, ::3]),
    ("slice_empty", lambda m, x: x[2:1]),
    ("slice_beyond", lambda m, x: x[:, 1:10]),
    ("none", lambda m, x: x[None]),
    ("none_middle", lambda m, x: x[:, None, 1]),
    ("ellipsis", lambda m, x: x[..., 0]),
    ("ellipsis_mid", lambda m, x: x[0, ..., 1:]),
    ("ellipsis_none", lambda m, x: x[..., None]),
    ("int_list", lambda m, x: x[[0, 2]]),
    ("int_list_repeated", lambda m, x: x[[0, 0, 2, 0]]),
    ("int_list_neg", lambda m, x: x[[-1, 0]]),
    ("index_tensor", lambda m, x: x[_idx(m, [2, 0, 2])]),
    ("index_tensor_2d", lambda m, x: x[_idx(m, [[0, 1], [1, 1]])]),
    ("index_tensor_dim1", lambda m, x: x[:, _idx(m, [3, 3, 0])]),
    ("two_index_tensors", lambda m, x: x[_idx(m, [0, 2, 2]), _idx(m, [1, 3, 1])]),
    ("broadcast_index_tensors", lambda m, x: x[_idx(m, [[0], [2]]), _idx(m, [1, 3, 1])]),
    ("index_tensors_separated", lambda m, x: x[_idx(m, [0, 2]), :, _idx(m, [1, 0])]),
    ("index_then_slice", lambda m, x: x[_idx(m, [1, 1]), 1:3]),
    ("int_and_list", lambda m, x: x[1, [0, 0, 3]]),
    ("bool_mask_full", lambda m, x: x[_mask(m, rng(1).random((3, 4, 2)) > 0.5)]),
    ("bool_mask_rows", lambda m, x: x[_mask(m, [True, False, True])]),
    ("bool_mask_2d_prefix", lambda m, x: x[_mask(m, rng(2).random((3, 4)) > 0.4)]),
    ("bool_mask_dim1", lambda m, x: x[:, _mask(m, [True, False, True, True])]),
    ("comparison_mask", lambda m, x: x[x > 0]),
    ("0d_index_tensor", lambda m, x: x[_idx(m, 1)]),
]


@pytest.mark.parametrize("name,fn", GETITEM, ids=[c[0] for c in GETITEM])
def test_getitem(name, fn):
    x = randn(3, 4, 2, seed=1)
    check(fn, x)


@pytest.mark.parametrize("name,fn", GETITEM, ids=[c[0] for c in GETITEM])
def test_getitem_gradcheck(name, fn):
    if name == "comparison_mask":
        fn = lambda m, x: x[_mask(m, randn(3, 4, 2, seed=1) > 0)]  # noqa: E731 (fixed mask under perturbation)
    gradcheck(fn, randn(3, 4, 2, seed=2))


def test_repeated_indices_accumulate_gradient():
    x = np.arange(4, dtype=np.float32)
    e_out, _ = check(lambda m, t: t[[1, 1, 1, 3]], x, seed=3)
    t = engine.tensor(x, requires_grad=True)
    t[[1, 1, 1, 3]].sum().backward()
    np.testing.assert_array_equal(t.grad.numpy(), [0, 3, 0, 1])


def test_getitem_of_1d_and_0d():
    check(lambda m, t: t[2], randn(4, seed=4))
    check(lambda m, t: t[...], np.array(3.0, np.float32))
    check(lambda m, t: t[None], np.array(3.0, np.float32))


def test_getitem_out_of_range_raises_index_error():
    x = engine.zeros(3, 4)
    with pytest.raises(IndexError):
        x[3]
    with pytest.raises(IndexError):
        x[:, [0, 4]]


# ---- __setitem__ ------------------------------------------------------------------------------------

SETITEM = [
    ("int", lambda x: 1, (4, 2)),
    ("slice", lambda x: slice(0, 2), (2, 4, 2)),
    ("slice_step_broadcast", lambda x: (slice(None), slice(None, None, 2)), (2,)),
    ("ellipsis", lambda x: (Ellipsis, 1), (3, 4)),
    ("int_list", lambda x: [0, 2], (2, 4, 2)),
    ("index_tensors", lambda x: (x.tensor(np.array([0, 2])), x.tensor(np.array([1, 3]))), (2, 2)),
    ("bool_mask", lambda x: x.tensor(np.array([True, False, True])), (2, 4, 2)),
    ("scalar_value_slice", lambda x: slice(1, 3), None),
]


@pytest.mark.parametrize("name,index,value_shape", SETITEM, ids=[c[0] for c in SETITEM])
def test_setitem_in_graph(name, index, value_shape):
    x = randn(3, 4, 2, seed=5)
    v = randn(*value_shape, seed=6) if value_shape is not None else None

    def fn(m, a, *val):
        y = a * 2.0  # a non-leaf
        y[index(m)] = val[0] * 3.0 if val else 1.5
        return y * a

    check(fn, *((x, v) if v is not None else (x,)))
    gradcheck(fn, *((x, v) if v is not None else (x,)))


@pytest.mark.parametrize("index,value_shape", [(0, (1, 4)), ((slice(0, 2), 1), (1,)), ((0, 1), (1, 1))])
def test_setitem_value_with_extra_leading_ones(index, value_shape):
    def fn(m, a, v):
        y = a * 1.0
        y[index] = v
        return y

    check(fn, randn(3, 4, seed=8), randn(*value_shape, seed=9))


@pytest.mark.parametrize("op", ["mul", "div", "rmul", "add"])
def test_setitem_from_own_view_times_number(op):
    # the view on the right is not saved for backward (only the number), so the write is fine
    ops = {"mul": lambda v: v * 0.5, "div": lambda v: v / 4.0, "rmul": lambda v: 3.0 * v, "add": lambda v: v + 1.0}

    def fn(m, a):
        y = a * 1.0
        y[1:] = ops[op](y[:-1])
        return y * a

    check(fn, randn(4, 3, seed=12))
    gradcheck(fn, randn(4, 3, seed=13))


def test_setitem_with_int_tensor_value_is_cast():
    def fn(m, a):
        y = a * 1.0
        y[0] = m.tensor(np.array([1, 2, 3, 4], np.int64))
        return y

    check(fn, randn(2, 4, seed=7))


def test_setitem_value_requires_grad_target_does_not():
    x = randn(3, 4, seed=8)
    v = randn(4, seed=9)

    def fn(m, a, val):
        a = a.clone()
        a[1] = val
        return a * 2

    check(fn, x, v, requires_grad=[False, True])


def test_augmented_assignment_on_indexed_non_leaf():
    def fn(m, a, v):
        y = a * 2.0
        y[0] += v
        y[:, 1] *= a[:, 2]
        return y * a

    check(fn, randn(3, 4, seed=10), randn(4, seed=11))


INPLACE_ON_VIEW = [
    ("t_mul_", lambda y, b: y.t().mul_(2)),
    ("column_clamp_", lambda y, b: y[:, 1].clamp_(-0.3, 0.3)),
    ("flat_view_add_", lambda y, b: y.view(-1)[:4].add_(b)),
    ("nested_views", lambda y, b: y[1:].t()[0].mul_(b[:2])),
    ("twice_same_row", lambda y, b: (y[0].add_(b), y[0].mul_(b))),
    ("unsqueeze_view_sub_", lambda y, b: y.unsqueeze(0)[0, 1].sub_(b)),
    ("setitem_on_view_of_view", lambda y, b: y[1:][0].__setitem__(slice(0, 2), b[:2])),
    ("row_fill_", lambda y, b: y[2].fill_(0.5)),
    ("column_copy_", lambda y, b: y[:, 0].copy_(b[:3])),
    ("row_masked_fill_", lambda y, b: y[1].masked_fill_(b > 0, 0.0)),
    ("reshape_row_mul_", lambda y, b: y.reshape(2, 6)[0].mul_(2)),
    ("t_slice_neg", lambda y, b: y.t()[1:3].mul_(-1)),
]


@pytest.mark.parametrize("name,body", INPLACE_ON_VIEW, ids=[c[0] for c in INPLACE_ON_VIEW])
def test_inplace_on_view_of_non_leaf(name, body):
    def fn(m, a, b):
        y = a * 2.0
        body(y, b)
        return y * a

    x = randn(3, 4, seed=14)
    x[:, 1] = np.where(np.abs(np.abs(2 * x[:, 1]) - 0.3) < 0.05, 1.0, x[:, 1])  # off the clamp bounds
    check(fn, x, randn(4, seed=15))
    gradcheck(fn, x, randn(4, seed=15))


def test_setitem_without_grad_writes_through():
    x = engine.zeros(2, 3)
    x[0, [0, 2]] = engine.tensor([1.0, 2.0])
    x[1] = 5
    np.testing.assert_array_equal(x.numpy(), [[1, 0, 2], [5, 5, 5]])


def test_setitem_on_leaf_requiring_grad_raises():
    x = engine.zeros(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 1.0


# ---- gather / scatter family -------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather(dim):
    x = randn(3, 4, seed=10)
    shape = (5, 4) if dim == 0 else (3, 6)
    n = x.shape[dim]
    index = rng(11).integers(0, n, size=shape)  # repeats: the gradient accumulates
    check(lambda m, t, i: m.gather(t, dim, i), x, index)
    check(lambda m, t, i: t.gather(dim, i), x, index)
    gradcheck(lambda m, t, i: m.gather(t, dim, i), x, index)


def test_gather_smaller_index():
    x = randn(3, 4, seed=12)
    index = np.array([[0, 0], [3, 1]])
    check(lambda m, t, i: m.gather(t, 1, i), x, index)


@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_src_tensor(dim):
    x = randn(3, 4, seed=13)
    # scatter with unique targets (duplicates are nondeterministic in torch)
    if dim == 0:
        index = np.array([[2, 0, 1, 1], [0, 2, 0, 2]])
    else:
        index = np.array([[3, 0], [1, 2], [0, 1]])
    src = randn(*index.shape, seed=14)
    check(lambda m, t, i, s: m.scatter(t, dim, i, s), x, index, src)
    check(lambda m, t, i, s: t.scatter(dim, i, s), x, index, src)
    gradcheck(lambda m, t, i, s: m.scatter(t, dim, i, s), x, index, src)


def test_scatter_larger_src_uses_leading_part():
    x = randn(3, 4, seed=15)
    index = np.array([[3, 0], [1, 2]])
    src = randn(3, 5, seed=16)
    # torch's backward rejects a src larger than index: compare the gradient of x only
    check(lambda m, t, i, s: m.scatter(t, 1, i, s), x, index, src, requires_grad=[True, False, False])


def test_scatter_value():
    x = randn(3, 4, seed=17)
    index = np.array([[3, 0], [1, 2], [0, 0]])
    check(lambda m, t, i: m.scatter(t, 1, i, 2.5), x, index)
    check(lambda m, t, i: t.scatter(1, i, value=-1.0), x, index,
          torch_fn=lambda m, t, i: t.scatter(1, i, value=-1.0))
    gradcheck(lambda m, t, i: m.scatter(t, 1, i, 2.5), x, index)


@pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter:UserWarning")
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_add(dim):
    x = randn(3, 4, seed=18)
    shape = (5, 4) if dim == 0 else (3, 7)
    index = rng(19).integers(0, x.shape[dim], size=shape)  # repeats accumulate
    src = randn(*shape, seed=20)
    check(lambda m, t, i, s: m.scatter_add(t, dim, i, s), x, index, src)
    check(lambda m, t, i, s: t.scatter_add(dim, i, s), x, index, src)
    check(lambda m, t, i, s: m.scatter(t, dim, i, s, reduce="add"), x, index, src, grad=False)
    gradcheck(lambda m, t, i, s: m.scatter_add(t, dim, i, s), x, index, src)


def test_scatter_inplace_on_non_leaf():
    x = randn(3, 4, seed=21)
    index = np.array([[3, 0], [1, 2], [0, 1]])
    src = randn(3, 2, seed=22)

    def fn(m, t, i, s):
        y = t * 2
        y.scatter_(1, i, s)
        z = t * 1
        z.scatter_add_(1, i, s)
        return y * z

    check(fn, x, index, src)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select(dim):
    x = randn(3, 4, seed=23)
    index = np.array([2, 0, 2, 1]) if dim == 0 else np.array([3, 3, 0])
    check(lambda m, t, i: m.index_select(t, dim, i), x, index)
    check(lambda m, t, i: t.index_select(dim, i), x, index)
    gradcheck(lambda m, t, i: m.index_select(t, dim, i), x, index)


def test_index_select_0d_index():
    x = randn(3, 4, seed=24)
    check(lambda m, t, i: m.index_select(t, 1, i), x, np.array(2))


@pytest.mark.parametrize("mask_shape", [(3, 4), (4,), (3, 1)])
def test_masked_fill(mask_shape):
    x = randn(3, 4, seed=25)
    mask = rng(26).random(mask_shape) > 0.5
    check(lambda m, t, k: m.masked_fill(t, k, -1.5), x, mask)
    check(lambda m, t, k: t.masked_fill(k, float("-inf")), x, mask, grad=False)
    gradcheck(lambda m, t, k: m.masked_fill(t, k, 0.0), x, mask)


def test_masked_fill_with_tensor_value_gets_gradient():
    x = randn(3, 4, seed=27)
    mask = rng(28).random((3, 4)) > 0.5
    v = np.array(0.75, np.float32)
    check(lambda m, t, k, val: m.masked_fill(t, k, val), x, mask, v)


def test_masked_fill_inplace_on_non_leaf():
    x = randn(3, 4, seed=29)
    mask = rng(30).random((4,)) > 0.5

    def fn(m, t, k):
        y = t * 3
        y.masked_fill_(k, 0.5)
        return y * t

    check(fn, x, mask)


@pytest.mark.parametrize("mask_shape", [(3, 4), (4,), (2, 3, 4)])
def test_masked_select(mask_shape):
    x = randn(3, 4, seed=31)
    mask = rng(32).random(mask_shape) > 0.5
    check(lambda m, t, k: m.masked_select(t, k), x, mask)
    check(lambda m, t, k: t.masked_select(k), x, mask)
    gradcheck(lambda m, t, k: m.masked_select(t, k), x, mask)


@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_take_along_dim(dim):
    x = randn(3, 4, seed=33)
    if dim is None:
        index = np.array([11, 0, 5, 5])
    elif dim == 0:
        index = rng(34).integers(0, 3, size=(2, 4))
    else:
        index = rng(34).integers(0, 4, size=(3, 5))
    check(lambda m, t, i: m.take_along_dim(t, i, dim), x, index)
    check(lambda m, t, i: t.take_along_dim(i, dim=dim), x, index)
    gradcheck(lambda m, t, i: m.take_along_dim(t, i, dim), x, index)


def test_take_along_dim_broadcasts():
    x = randn(3, 4, seed=35)
    index = np.array([[0, 3]])
    check(lambda m, t, i: m.take_along_dim(t, i, 1), x, index)
    check(lambda m, t, i: m.take_along_dim(t, i, 0), x, np.argsort(x, 0)[:1])


def test_take_along_dim_with_argsort_like_indices():
    x = randn(3, 4, seed=36)
    idx = np.argsort(x, axis=1)
    check(lambda m, t, i: m.take_along_dim(t, i, 1), x, idx)


def test_index_add():
    x = randn(4, 3, seed=37)
    index = np.array([0, 2, 0])
    src = randn(3, 3, seed=38)
    check(lambda m, t, i, s: m.index_add(t, 0, i, s), x, index, src)
    check(lambda m, t, i, s: t.index_add(0, i, s, alpha=2.0), x, index, src)


def test_gather_index_errors():
    x = engine.zeros(3, 4)
    with pytest.raises(RuntimeError, match="out of bounds"):
        x.gather(1, engine.tensor([[4]]))
    with pytest.raises(RuntimeError, match="int64"):
        x.gather(1, engine.tensor([[1.0]]))
