"""Shape and layout ops against PyTorch: values, gradients, gradcheck; views share storage."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from helpers import check, gradcheck, randn  # noqa: E402

pytestmark = pytest.mark.torch

# each case: (name, fn(m, x), input shape)
UNARY_SHAPE = [
    ("reshape", lambda m, x: x.reshape(4, 6), (2, 3, 4)),
    ("reshape-1", lambda m, x: x.reshape(-1, 3), (2, 3, 4)),
    ("reshape_tuple", lambda m, x: m.reshape(x, (6, -1)), (2, 3, 4)),
    ("reshape_same", lambda m, x: x.reshape(2, 3, 4), (2, 3, 4)),
    ("reshape_0d", lambda m, x: x.reshape(1, 1), ()),
    ("view", lambda m, x: x.view(3, 8), (2, 3, 4)),
    ("view-1", lambda m, x: x.view(-1), (2, 3, 4)),
    ("view_after_transpose_compatible", lambda m, x: x.transpose(0, 1).view(3, 2, 2, 2), (2, 3, 4)),
    ("flatten", lambda m, x: x.flatten(), (2, 3, 4)),
    ("flatten_1", lambda m, x: m.flatten(x, 1), (2, 3, 4)),
    ("flatten_0_1", lambda m, x: x.flatten(0, 1), (2, 3, 4)),
    ("flatten_0d", lambda m, x: x.flatten(), ()),
    ("unflatten", lambda m, x: x.unflatten(1, (2, 2)), (3, 4, 2)),
    ("unflatten-1", lambda m, x: m.unflatten(x, -1, (2, -1)), (3, 4)),
    ("squeeze", lambda m, x: x.squeeze(), (1, 3, 1, 4)),
    ("squeeze_dim", lambda m, x: x.squeeze(2), (1, 3, 1, 4)),
    ("squeeze_non1", lambda m, x: x.squeeze(1), (1, 3, 1, 4)),
    ("squeeze_tuple", lambda m, x: m.squeeze(x, (0, 2)), (1, 3, 1, 4)),
    ("unsqueeze0", lambda m, x: x.unsqueeze(0), (3, 4)),
    ("unsqueeze-1", lambda m, x: m.unsqueeze(x, -1), (3, 4)),
    ("unsqueeze1", lambda m, x: x.unsqueeze(1), (3, 4)),
    ("transpose", lambda m, x: x.transpose(0, 2), (2, 3, 4)),
    ("transpose_neg", lambda m, x: m.transpose(x, -1, -2), (2, 3, 4)),
    ("swapaxes", lambda m, x: x.swapaxes(0, 1), (2, 3, 4)),
    ("permute", lambda m, x: x.permute(2, 0, 1), (2, 3, 4)),
    ("permute_tuple", lambda m, x: m.permute(x, (1, -1, 0)), (2, 3, 4)),
    ("permute_neg", lambda m, x: x.permute(-1, 0, -2), (2, 3, 4)),
    ("permute_list", lambda m, x: x.permute([0, 2, 1]), (2, 3, 4)),
    ("movedim", lambda m, x: m.movedim(x, 0, -1), (2, 3, 4)),
    ("T_2d", lambda m, x: x.T, (3, 4)),
    ("mT", lambda m, x: x.mT, (2, 3, 4)),
    ("t", lambda m, x: x.t(), (3, 4)),
    ("t_fn", lambda m, x: m.t(x), (4,)),
    ("expand", lambda m, x: x.expand(2, 3, 4), (3, 1)),
    ("expand-1", lambda m, x: x.expand(-1, 4), (3, 1)),
    ("expand_new_dims", lambda m, x: x.expand(2, 5, 3), (3,)),
    ("expand_0d", lambda m, x: x.expand(3, 2), ()),
    ("broadcast_to", lambda m, x: m.broadcast_to(x, (2, 3, 4)), (1, 4)),
    ("repeat", lambda m, x: x.repeat(2, 3), (2, 3)),
    ("repeat_more_dims", lambda m, x: x.repeat(2, 1, 2), (2, 3)),
    ("repeat_1d", lambda m, x: x.repeat(3), (2,)),
    ("contiguous", lambda m, x: x.t().contiguous(), (3, 4)),
    ("flip", lambda m, x: x.flip(0), (2, 3, 4)),
    ("flip_many", lambda m, x: m.flip(x, (0, 2)), (2, 3, 4)),
    ("flip_neg", lambda m, x: x.flip(-1), (2, 3, 4)),
    ("roll", lambda m, x: x.roll(1, 0), (3, 4)),
    ("roll_neg", lambda m, x: m.roll(x, -2, 1), (3, 4)),
    ("roll_many", lambda m, x: x.roll((1, -1), (0, 1)), (3, 4)),
    ("roll_flat", lambda m, x: x.roll(5), (3, 4)),
    ("tril", lambda m, x: x.tril(), (4, 4)),
    ("tril_k", lambda m, x: m.tril(x, -1), (3, 5)),
    ("tril_k+", lambda m, x: x.tril(2), (3, 5)),
    ("triu", lambda m, x: x.triu(), (4, 4)),
    ("triu_k", lambda m, x: m.triu(x, 1), (2, 3, 5)),
    ("triu_k-", lambda m, x: x.triu(-1), (5, 3)),
    ("narrow", lambda m, x: x.narrow(1, 1, 2), (3, 4)),
    ("narrow_neg_start", lambda m, x: m.narrow(x, 0, -2, 2), (3, 4)),
    ("clone", lambda m, x: x.clone(), (3, 4)),
    ("view_as", lambda m, x: x.view_as(x.t()), (3, 4)),
]


@pytest.mark.parametrize("name,fn,shape", UNARY_SHAPE, ids=[c[0] for c in UNARY_SHAPE])
def test_shape_op(name, fn, shape):
    x = randn(*shape, seed=1)
    check(fn, x)


@pytest.mark.parametrize("name,fn,shape", UNARY_SHAPE, ids=[c[0] for c in UNARY_SHAPE])
def test_shape_op_gradcheck(name, fn, shape):
    gradcheck(fn, randn(*shape, seed=2))


def test_expand_as():
    x, y = randn(3, 1, seed=3), randn(2, 3, 4, seed=4)
    check(lambda m, a, b: a.expand_as(b) * b, x, y)


def test_shape_op_then_elementwise_chain():
    # several views in a row, then math: the gradient walks back through all of them
    x = randn(2, 3, 4, seed=5)
    check(lambda m, t: (t.permute(1, 0, 2).reshape(3, 8)[:, ::2].t().unsqueeze(0).expand(2, 4, 3) ** 2).sum(0), x)


# ---- multi-input / multi-output -------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat(dim):
    shapes = {0: [(1, 3, 2), (2, 3, 2), (3, 3, 2)], 1: [(2, 1, 2), (2, 4, 2)], -1: [(2, 3, 1), (2, 3, 3)]}[dim]
    arrays = [randn(*s, seed=10 + i) for i, s in enumerate(shapes)]
    fn = lambda m, *xs: m.cat(xs, dim)  # noqa: E731
    check(fn, *arrays)
    check(lambda m, *xs: m.concat(list(xs), dim=dim), *arrays)
    gradcheck(fn, *arrays)


def test_cat_promotes_and_skips_empty_1d():
    a = randn(2, 3, seed=12)
    b = np.arange(6, dtype=np.int64).reshape(2, 3)
    check(lambda m, x, y: m.cat([x, y]), a, b)
    check(lambda m, x, y: m.cat([x.new_zeros(0), x, y.double()], 0), a, b)


def test_cat_only_some_inputs_need_grad():
    a, b = randn(2, 3, seed=13), randn(1, 3, seed=14)
    check(lambda m, x, y: m.cat([x, y]), a, b, requires_grad=[False, True])


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_stack(dim):
    arrays = [randn(2, 3, seed=20 + i) for i in range(3)]
    fn = lambda m, *xs: m.stack(xs, dim)  # noqa: E731
    check(fn, *arrays)
    gradcheck(fn, *arrays)


SPLITS = [
    ("split_int", lambda m, x: x.split(2), (5, 3)),
    ("split_int_dim", lambda m, x: m.split(x, 2, dim=1), (2, 5)),
    ("split_sizes", lambda m, x: x.split([1, 3, 1]), (5, 3)),
    ("split_sizes_dim", lambda m, x: m.split(x, [2, 0, 3], -1), (2, 5)),
    ("split_big", lambda m, x: x.split(10), (5, 3)),
    ("chunk", lambda m, x: x.chunk(3), (5, 3)),
    ("chunk_even", lambda m, x: m.chunk(x, 2, 1), (2, 4)),
    ("chunk_more_than_size", lambda m, x: x.chunk(8), (5, 3)),
    ("chunk_6_of_6", lambda m, x: x.chunk(4), (6, 2)),
    ("unbind", lambda m, x: x.unbind(), (3, 2)),
    ("unbind_dim", lambda m, x: m.unbind(x, 1), (3, 2)),
]


@pytest.mark.parametrize("name,fn,shape", SPLITS, ids=[c[0] for c in SPLITS])
def test_split_family(name, fn, shape):
    x = randn(*shape, seed=30)
    e_out, t_out = check(fn, x)
    assert isinstance(e_out, tuple) and len(e_out) == len(t_out)
    gradcheck(lambda m, t: tuple(fn(m, t)), x)


def test_split_only_some_pieces_used():
    x = randn(6, 2, seed=31)
    check(lambda m, t: t.split(2)[1] * 3, x)
    check(lambda m, t: t.chunk(3)[0] + t.chunk(3)[2], x)
    check(lambda m, t: t.unbind(1)[0], x)


# ---- views share storage and version -------------------------------------------------------------

def test_views_share_storage():
    x = engine.zeros(2, 3)
    for v in (x.view(6), x.reshape(3, 2), x.t(), x.unsqueeze(0), x.expand(4, 2, 3), x[0], x[1, 2], x.transpose(0, 1),
              x.permute(1, 0), x.squeeze(), x.flatten(), x.narrow(1, 0, 2)):
        assert np.shares_memory(v.numpy(), x.numpy())


def test_write_through_a_view_is_seen():
    x = engine.zeros(2, 3)
    v = x.view(6)
    v[1] = 5.0
    assert x[0, 1].item() == 5.0
    x.t()[2, 1] = 7.0
    assert x[1, 2].item() == 7.0


def test_single_element_index_is_a_view():
    x = engine.zeros(2, 3)
    v = x[0, 1]
    assert v.ndim == 0 and np.shares_memory(v.numpy(), x.numpy())
    v.fill_(5.0)
    assert x[0, 1].item() == 5.0


def test_copying_ops_do_not_share():
    x = engine.zeros(2, 3)
    for c in (x.clone(), x.flip(0), x.repeat(1, 1), x.t().contiguous(), x.roll(1, 0)):
        assert not np.shares_memory(c.numpy(), x.numpy())


# ---- errors -----------------------------------------------------------------------------------------

def test_shape_errors():
    x = engine.zeros(2, 3)
    with pytest.raises(RuntimeError, match="invalid for input of size 6"):
        x.reshape(4, 2)
    with pytest.raises(RuntimeError, match="view"):
        x.t().view(6)
    with pytest.raises(RuntimeError, match="expand"):
        x.expand(4, 3)
    with pytest.raises(RuntimeError, match="sizes of tensors must match"):
        engine.cat([x, engine.zeros(2, 4)])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        engine.stack([x, engine.zeros(3, 2)])
    with pytest.raises(RuntimeError, match="split"):
        x.split([1, 2])
    with pytest.raises(RuntimeError, match="narrow"):
        x.narrow(1, 2, 2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.transpose(0, 2)
    with pytest.raises(RuntimeError, match="permute"):
        x.permute(0, 0)
