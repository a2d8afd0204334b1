"""Reductions, scans and the softmax family against PyTorch: values, dtypes, gradients, gradcheck."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from helpers import check, gradcheck, randn, rng  # noqa: E402

pytestmark = pytest.mark.torch

LOOSE = dict(rtol=1e-5, atol=1e-5)

DIMS = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


REDUCTIONS = [(op, dim) for op in ["sum", "mean", "prod", "amax", "amin", "logsumexp"] for dim in DIMS
              if not (op == "prod" and isinstance(dim, tuple))]  # torch's prod takes one dim


@pytest.mark.parametrize("op,dim", REDUCTIONS)
@pytest.mark.parametrize("keepdim", [False, True])
def test_reductions(op, dim, keepdim):
    x = randn(2, 3, 4, seed=1)
    if op == "prod":
        x = np.sign(x) * (np.abs(x) + 0.5)  # keep the product away from 0 and inf
    if op == "logsumexp" and dim is None:
        dim = (0, 1, 2)  # torch's logsumexp needs dim
    if dim is None and op == "prod":
        fn = lambda m, t: t.prod() if not keepdim else t.prod().reshape(1, 1, 1)  # noqa: E731
    elif dim is None and not keepdim:
        fn = lambda m, t: getattr(t, op)()  # noqa: E731
    else:
        fn = lambda m, t: getattr(m, op)(t, dim, keepdim=keepdim)  # noqa: E731
    check(fn, x, **LOOSE)
    gradcheck(fn, x)


@pytest.mark.parametrize("op", ["sum", "mean", "prod", "amax", "amin"])
def test_reduce_over_empty_dim_list_reduces_all(op):
    x = randn(2, 3, seed=2) + 3
    check(lambda m, t: getattr(m, op)(t, dim=()) if op in ("amax", "amin") else getattr(m, op)(t), x)


def test_sum_integer_and_bool_give_int64():
    check(lambda m, t: t.sum(), np.array([[1, 2], [3, 4]], np.int32), grad=False)
    check(lambda m, t: t.sum(1), np.array([[True, False], [True, True]]), grad=False)
    check(lambda m, t: t.prod(0), np.array([[1, 2], [3, 4]], np.int32), grad=False)
    check(lambda m, t: m.sum(t, 0, dtype=m.float64), np.array([[1, 2], [3, 4]], np.int32), grad=False)


def test_mean_of_integers_raises():
    with pytest.raises(RuntimeError, match="mean"):
        engine.tensor([1, 2, 3]).mean()


@pytest.mark.parametrize("zeros", [[(0, 1)], [(0, 1), (0, 3)], [(1, 2), (0, 0)]])
@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1)])
def test_prod_with_zeros(zeros, dim):
    x = randn(2, 4, seed=3) + 0.1
    for i, j in zeros:
        x[i, j] = 0.0
    fn = (lambda m, t: t.prod()) if dim is None else (lambda m, t: m.prod(t, dim))
    if isinstance(dim, tuple):
        fn = lambda m, t: t.prod(1).prod(0)  # noqa: E731  (torch's prod takes one dim)
    check(fn, x, **LOOSE)
    gradcheck(fn, x)


def test_prod_keepdim_with_zeros():
    x = np.array([[0.0, 2.0, 3.0], [1.0, 0.0, 0.0]], np.float32)
    check(lambda m, t: m.prod(t, 1, keepdim=True), x)
    check(lambda m, t: m.prod(t, 0, keepdim=True), x)


# ---- var / std -------------------------------------------------------------------------------------

VAR_ARGS = [
    dict(), dict(dim=0), dict(dim=1, keepdim=True), dict(dim=(0, 2)), dict(dim=-1, correction=0),
    dict(dim=(1, 2), correction=2, keepdim=True), dict(dim=1, unbiased=False), dict(dim=1, unbiased=True),
    dict(correction=0),
]


@pytest.mark.parametrize("kwargs", VAR_ARGS, ids=[str(k) for k in VAR_ARGS])
@pytest.mark.parametrize("op", ["var", "std"])
def test_var_std(op, kwargs):
    x = randn(3, 4, 5, seed=4)
    check(lambda m, t: getattr(m, op)(t, **kwargs), x, **LOOSE)
    check(lambda m, t: getattr(t, op)(**kwargs), x, **LOOSE)
    gradcheck(lambda m, t: getattr(m, op)(t, **kwargs), x[:2, :3, :3])


def test_std_of_constant_has_zero_gradient_like_torch():
    x = np.ones((3, 2), np.float32)
    x[:, 1] = randn(3, seed=15)
    check(lambda m, t: t.std(0), x)
    check(lambda m, t: t.std(), np.ones((2, 2), np.float32))


def test_var_legacy_positional_unbiased():
    x = randn(4, 5, seed=5)
    check(lambda m, t: t.var(False), x, **LOOSE)
    check(lambda m, t: t.std(1, False), x, **LOOSE)


@pytest.mark.filterwarnings("ignore:var.*degrees of freedom:UserWarning")
def test_var_of_single_element_is_nan_like_torch():
    x = randn(1, 3, seed=6)
    check(lambda m, t: t.var(0), x, grad=False)


# ---- max / min with and without dim ----------------------------------------------------------------

@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_with_dim(op, dim, keepdim):
    x = randn(3, 4, 5, seed=7)
    e_out, t_out = check(lambda m, t: getattr(m, op)(t, dim, keepdim=keepdim), x)
    assert isinstance(e_out, tuple) and e_out._fields == ("values", "indices")
    assert e_out.values is e_out[0] and e_out.indices.dtype is engine.int64
    v, i = getattr(engine.tensor(x), op)(dim=dim, keepdim=keepdim)
    assert tuple(v.shape) == tuple(t_out.values.shape)
    gradcheck(lambda m, t: getattr(m, op)(t, dim, keepdim=keepdim).values, x[:2, :3, :2])


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_with_dim_ties_pick_first_index(op):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, -1.0], [-1.0, -1.0, -1.0]], np.float32)
    check(lambda m, t: getattr(t, op)(1), x)
    check(lambda m, t: getattr(t, op)(0), x)


@pytest.mark.parametrize("op", ["max", "min", "amax", "amin"])
def test_max_min_all_ties_spread_gradient(op):
    x = np.array([[1.0, 3.0, 3.0], [3.0, -1.0, -1.0]], np.float32)
    check(lambda m, t: getattr(t, op)(), x)
    if op in ("amax", "amin"):
        check(lambda m, t: getattr(t, op)(1), x)
        check(lambda m, t: getattr(t, op)((0, 1), keepdim=True), x)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_argmax_argmin(op, dim, keepdim):
    x = np.round(randn(3, 4, 5, seed=8) * 2)  # ties: the first index wins in both
    check(lambda m, t: getattr(m, op)(t, dim, keepdim=keepdim), x)


def test_argmax_of_0d():
    check(lambda m, t: t.argmax(), np.array(3.0, np.float32))
    check(lambda m, t: t.argmax(0), np.array(3.0, np.float32))


# ---- norm ------------------------------------------------------------------------------------------

NORMS = [
    dict(), dict(p=2), dict(p=1), dict(p=float("inf")), dict(p=-float("inf")), dict(p=3), dict(p=0.5),
    dict(p="fro"), dict(p=2, dim=1), dict(p=1, dim=0, keepdim=True), dict(p=float("inf"), dim=1),
    dict(p=3, dim=(0, 1)), dict(p="fro", dim=(0, 1)), dict(p=2, dim=-1, keepdim=True), dict(p=0),
]


@pytest.mark.parametrize("kwargs", NORMS, ids=[str(k) for k in NORMS])
def test_norm(kwargs):
    x = randn(3, 4, seed=9)
    x = np.where(np.abs(x) < 0.1, 0.3, x).astype(np.float32)
    grad = kwargs.get("p") != 0  # the 0-"norm" (a count) has no gradient in either library
    check(lambda m, t: m.norm(t, **kwargs), x, grad=grad, **LOOSE)
    check(lambda m, t: t.norm(**kwargs), x, grad=grad, **LOOSE)
    if grad:
        gradcheck(lambda m, t: m.norm(t, **kwargs), x)


def test_norm_of_zero_vector_has_zero_gradient():
    x = np.zeros((2, 3), np.float32)
    check(lambda m, t: t.norm(dim=1), x)
    check(lambda m, t: t.norm(), x)


# ---- all / any / cumsum ----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["all", "any"])
@pytest.mark.parametrize("dim", [None, 0, 1])
def test_all_any(op, dim):
    x = rng(10).random((3, 4)) > 0.3
    x[0] = True
    x[1] = False
    fn = (lambda m, t: getattr(t, op)()) if dim is None else (lambda m, t: getattr(m, op)(t, dim))
    check(fn, x)
    check(fn, x.astype(np.float32))
    check(lambda m, t: getattr(m, op)(t, 1, keepdim=True), x)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum(dim):
    x = randn(3, 4, seed=11)
    check(lambda m, t: m.cumsum(t, dim), x)
    check(lambda m, t: t.cumsum(dim=dim), x)
    gradcheck(lambda m, t: m.cumsum(t, dim), x)


def test_cumsum_integer_dtype():
    check(lambda m, t: t.cumsum(0), np.array([1, 2, 3], np.int32), grad=False)
    check(lambda m, t: t.cumsum(0, dtype=m.float64), np.array([1, 2, 3], np.int32), grad=False)


# ---- softmax family --------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax(op, dim):
    x = randn(3, 4, 5, seed=12)
    check(lambda m, t: getattr(m, op)(t, dim), x)
    check(lambda m, t: getattr(t, op)(dim=dim), x)
    gradcheck(lambda m, t: getattr(m, op)(t, dim), x[:2, :2, :3])


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_softmax_numerically_stable(op, scale):
    x = (randn(3, 5, seed=13) * 3 + scale).astype(np.float32)
    x[0, 0] = scale + 50
    check(lambda m, t: getattr(m, op)(t, 1), x, rtol=1e-5, atol=1e-4)
    check(lambda m, t: getattr(m, op)(t, 0), x, rtol=1e-5, atol=1e-4)


def test_softmax_with_dtype_and_integer_input():
    x = randn(2, 3, seed=14)
    check(lambda m, t: m.softmax(t, 1, dtype=m.float64), x)
    check(lambda m, t: m.softmax(t, 0), np.array([[1, 2], [3, 4]], np.int64), grad=False,
          torch_fn=lambda m, t: m.softmax(t.float(), 0))


def test_softmax_with_minus_inf_rows():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, 2.0]], np.float32)
    check(lambda m, t: m.softmax(t, 1), x)
    check(lambda m, t: m.log_softmax(t, 1), x, grad=False)


def test_logsumexp_with_minus_inf():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]], np.float32)
    check(lambda m, t: m.logsumexp(t, 1), x, grad=False)
    check(lambda m, t: m.logsumexp(t, 1), x[:1])
