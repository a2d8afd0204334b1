"""Elementwise ops against PyTorch: values, dtypes and gradients (with broadcasting), and gradcheck."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from helpers import away_from, check, check_dtype, gradcheck, randn, rng  # noqa: E402

pytestmark = pytest.mark.torch

BROADCAST = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((2, 1, 4), (3, 1)),
    ((3, 1), (1, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
]


def _pair(sa, sb, seed=0):
    return randn(*sa, seed=seed), randn(*sb, seed=seed + 100)


def _positive(shape, seed=0, lo=0.5):
    return np.asarray(np.abs(randn(*shape, seed=seed)) + lo, dtype=np.float32)


def test_check_helper_catches_mismatches():
    # the oracle comparison itself must be able to fail: on values, on dtypes and on gradients
    x = randn(3, seed=1)
    with pytest.raises(AssertionError, match="output 0"):
        check(lambda m, t: t * 2, x, torch_fn=lambda m, t: t * 2.001)
    with pytest.raises(AssertionError, match="dtype"):
        check(lambda m, t: t * 2, x, torch_fn=lambda m, t: (t * 2).double())
    with pytest.raises(AssertionError, match="grad of input 0"):
        check(lambda m, t: t * 2, x, torch_fn=lambda m, t: t * 2 + (t - t.detach()) * 1e-3)
    with pytest.raises(engine.autograd.GradcheckError):
        gradcheck(lambda m, t: _WrongGrad.apply(t), x)


class _WrongGrad(engine.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        return t * 2

    @staticmethod
    def backward(ctx, g):
        return g * 3


# ---- binary arithmetic -----------------------------------------------------------------------------

ARITH = {
    "add": lambda m, a, b: a + b,
    "sub": lambda m, a, b: a - b,
    "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b,
    "add_alpha": lambda m, a, b: m.add(a, b, alpha=2.5),
    "sub_alpha": lambda m, a, b: m.sub(a, b, alpha=-1.5),
    "maximum": lambda m, a, b: m.maximum(a, b),
    "minimum": lambda m, a, b: m.minimum(a, b),
}


@pytest.mark.parametrize("name", list(ARITH))
@pytest.mark.parametrize("sa,sb", BROADCAST)
def test_binary_tensor_tensor(name, sa, sb):
    a, b = _pair(sa, sb)
    if name == "div":
        b = np.where(np.abs(b) < 0.3, 0.3, b).astype(np.float32)
    check(ARITH[name], a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(ARITH))
def test_binary_gradcheck(name):
    a, b = _pair((2, 1, 3), (4, 1), seed=3)
    if name == "div":
        b = np.where(np.abs(b) < 0.3, 0.3, b)
    gradcheck(ARITH[name], a, b)


SCALAR_FORMS = {
    "t+s": lambda m, a: a + 2.5, "s+t": lambda m, a: 2.5 + a,
    "t-s": lambda m, a: a - 1.5, "s-t": lambda m, a: 1.5 - a,
    "t*s": lambda m, a: a * -3.0, "s*t": lambda m, a: -3.0 * a,
    "t/s": lambda m, a: a / 4.0, "s/t": lambda m, a: 4.0 / a,
    "t**s": lambda m, a: a ** 3, "s**t": lambda m, a: 2.0 ** a,
    "t**half": lambda m, a: m.abs(a) ** 0.5, "t**-1": lambda m, a: a ** -1,
    "t**0": lambda m, a: a ** 0, "t%s": lambda m, a: a % 0.7, "s%t": lambda m, a: 5.0 % a,
    "t+int": lambda m, a: a + 2, "int*t": lambda m, a: 2 * a,
    "neg": lambda m, a: -a,
}


@pytest.mark.parametrize("name", list(SCALAR_FORMS))
def test_tensor_scalar_forms(name):
    a = away_from(randn(3, 4, seed=7), points=(0.0,), gap=0.3)
    if name == "t%s":  # keep away from the jumps at multiples of 0.7
        a = np.round(a / 0.7).astype(np.float32) * 0.7 + 0.3
    if name == "s%t":
        a = (np.abs(a) + 0.5).astype(np.float32)
    # torch has no derivative of remainder(Scalar, Tensor); gradcheck covers it
    check(SCALAR_FORMS[name], a, rtol=1e-5, atol=1e-5, grad=name != "s%t")
    gradcheck(SCALAR_FORMS[name], a)


def test_pow_tensor_tensor():
    a, b = _positive((3, 4), seed=1), randn(4, seed=2)
    check(lambda m, x, y: x ** y, a, b, rtol=1e-5, atol=1e-5)
    check(lambda m, x, y: m.pow(x, y), a, b, rtol=1e-5, atol=1e-5)
    gradcheck(lambda m, x, y: x ** y, a, b)


def test_pow_zero_base_gradient_matches_torch():
    # d/da a**2 at a=0 is 0; d/db a**b at a=0 (b>0) is taken as 0 by torch
    a = np.array([0.0, 1.0, 2.0], np.float32)
    b = np.array([2.0, 2.0, 0.0], np.float32)
    check(lambda m, x, y: x ** y, a, b)


def test_floor_divide_and_remainder_values():
    a = randn(3, 4, seed=4) * 5
    b = _positive((4,), seed=5) * np.array([1, -1, 1, -1], np.float32)
    check(lambda m, x, y: x // y, a, b, grad=False)
    check(lambda m, x, y: m.floor_divide(x, y), a, b, grad=False)
    check(lambda m, x, y: x % y, a, b, grad=False)
    ia = np.array([[-7, 7, 5, -5]], np.int64)
    ib = np.array([2, -3, 3, 2], np.int64)
    check(lambda m, x, y: x // y, ia, ib, grad=False)
    check(lambda m, x, y: x % y, ia, ib, grad=False)
    check(lambda m, x: 7 // x, ib, grad=False)
    check(lambda m, x: x // 2, ia, grad=False)


@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_div_rounding_modes(mode):
    big = np.array([2**25 + 1, -(2**25 + 1), 7, -7, 2**40 + 3], np.int64)  # exact, not through float32
    check(lambda m, a: m.div(a, 2, rounding_mode=mode), big)
    check(lambda m, a, b: m.div(a, b, rounding_mode=mode), big, np.array([3, -3, 2, 2, -5]))
    check(lambda m, a, b: a.div(b, rounding_mode=mode), big.astype(np.int32) % 1000, np.array([3, -3, 2, 2, -5]))
    a, b = randn(5, seed=6) * 5, _positive((5,), seed=7) * np.array([1, -1, 1, -1, 1], np.float32)
    check(lambda m, x, y: m.div(x, y, rounding_mode=mode), a, b, grad=mode == "trunc")


@pytest.mark.parametrize("op", [lambda a, b: a // b, lambda a, b: a % b,
                                lambda a, b: engine.div(a, b, rounding_mode="trunc"), lambda a, b: a // 0])
def test_integer_division_by_zero_raises_like_torch(op):
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        op(engine.tensor([1, 2]), engine.tensor([0, 1]))
    # float division by zero is inf/nan, not an error
    op(engine.tensor([1.0, 2.0]), engine.tensor([0.0, 1.0]))


def test_remainder_gradient():
    a = np.array([[0.3, 1.4, -2.2, 3.9]], np.float32)
    b = np.array([[0.8], [-1.7]], np.float32)
    check(lambda m, x, y: x % y, a, b)
    gradcheck(lambda m, x, y: m.remainder(x, y), a, b)


# ---- unary math ------------------------------------------------------------------------------------

def _domain(name, shape, seed=0):
    x = randn(*shape, seed=seed)
    if name in ("log", "sqrt", "rsqrt"):
        return _positive(shape, seed)
    if name == "log1p":
        return (np.abs(x) - 0.5).clip(-0.6, None).astype(np.float32)
    if name in ("abs", "relu", "sign"):
        return away_from(x, (0.0,))
    return x


UNARY = {
    "exp": lambda m, x: m.exp(x), "log": lambda m, x: m.log(x), "log1p": lambda m, x: m.log1p(x),
    "expm1": lambda m, x: m.expm1(x), "sqrt": lambda m, x: m.sqrt(x), "rsqrt": lambda m, x: m.rsqrt(x),
    "sin": lambda m, x: m.sin(x), "cos": lambda m, x: m.cos(x), "tanh": lambda m, x: m.tanh(x),
    "sigmoid": lambda m, x: m.sigmoid(x), "relu": lambda m, x: m.relu(x), "abs": lambda m, x: m.abs(x),
    "sign": lambda m, x: m.sign(x), "erf": lambda m, x: m.erf(x), "neg": lambda m, x: m.neg(x),
    "method_exp": lambda m, x: x.exp(), "method_tanh": lambda m, x: x.tanh(),
    "method_sigmoid": lambda m, x: x.sigmoid(), "method_abs": lambda m, x: abs(x),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name):
    x = _domain(name.replace("method_", ""), (3, 5), seed=11)
    check(UNARY[name], x, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_gradcheck(name):
    x = _domain(name.replace("method_", ""), (2, 3), seed=12)
    gradcheck(UNARY[name], x)


def test_relu_of_nan_passes_gradient_like_torch():
    check(lambda m, t: m.relu(t), np.array([0.5, np.nan, -1.0], np.float32))


def test_sigmoid_large_inputs():
    x = np.array([-100.0, -30.0, 0.0, 30.0, 100.0], np.float32)
    check(lambda m, t: m.sigmoid(t), x)
    check(lambda m, t: m.tanh(t), x)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "sigmoid", "tanh", "erf"])
def test_unary_on_integers_promotes_to_float(name):
    x = np.array([[1, 2, 3]], np.int64)
    check(UNARY[name], x, grad=False)


def test_relu_and_abs_keep_integer_dtype():
    x = np.array([-2, 0, 3], np.int64)
    check(lambda m, t: m.relu(t), x, grad=False)
    check(lambda m, t: m.abs(t), x, grad=False)
    check(lambda m, t: -t, x, grad=False)


def test_ieee_special_values():
    x = np.array([0.0, -1.0, 1.0, np.inf], np.float32)
    e_out, _ = check(lambda m, t: m.log(t), x, grad=False)
    assert e_out.numpy()[0] == -np.inf and np.isnan(e_out.numpy()[1])
    check(lambda m, t: m.sqrt(t), x, grad=False)
    check(lambda m, t: m.rsqrt(t), x, grad=False)
    check(lambda m, t: m.log1p(t - 1), x, grad=False)
    check(lambda m, t: t / 0.0, x, grad=False)


def test_special_values_quietly_whatever_numpy_is_told_and_its_state_kept():
    """The ops answer inf and nan without a warning, also where the user had numpy raise; the user's
    numpy error state is as it was afterwards (also after a backward's gradient sums)."""
    old = np.seterr(all="raise")
    try:
        x = engine.tensor([0.0, 1.0, 3e38], requires_grad=True)
        z = (x / 0.0).detach().numpy()
        assert np.isnan(z[0]) and z[1] == np.inf
        y = x * 10.0
        assert y.detach().numpy()[2] == np.inf             # overflow
        (y.sum() + x.sum()).backward()                     # two gradients summed for x
        assert x.grad.tolist() == [11.0, 11.0, 11.0]
        assert np.geterr() == {"divide": "raise", "over": "raise", "under": "raise", "invalid": "raise"}
        with pytest.raises(FloatingPointError):
            np.float32(1.0) / np.float32(0.0)
    finally:
        np.seterr(**old)


def test_softmax_row_with_minus_inf():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, 2.0, -np.inf], [1.0, 2.0, 3.0]], np.float32)
    check(lambda m, t: m.softmax(t, dim=1), x)
    check(lambda m, t: m.log_softmax(t, dim=1), x[[2]])


# ---- comparisons (no grad) -------------------------------------------------------------------------

COMPARE = {
    "==": lambda m, a, b: a == b, "!=": lambda m, a, b: a != b, "<": lambda m, a, b: a < b,
    "<=": lambda m, a, b: a <= b, ">": lambda m, a, b: a > b, ">=": lambda m, a, b: a >= b,
    "eq": lambda m, a, b: m.eq(a, b), "lt": lambda m, a, b: m.lt(a, b), "ge": lambda m, a, b: a.ge(b),
}


@pytest.mark.parametrize("name", list(COMPARE))
@pytest.mark.parametrize("sa,sb", BROADCAST[:4])
def test_comparisons(name, sa, sb):
    a, b = _pair(sa, sb, seed=21)
    a = np.round(a)  # ties, so == and <= see equal elements
    b = np.round(b)
    e_out, t_out = check(COMPARE[name], a, b)
    assert e_out.dtype is engine.bool and not e_out.requires_grad


@pytest.mark.parametrize("name", ["==", "<", ">="])
def test_comparisons_with_scalars(name):
    a = np.round(randn(3, 4, seed=22))
    check(lambda m, t: COMPARE[name](m, t, 0.0), a)
    check(lambda m, t: COMPARE[name](m, t, 1), a.astype(np.int64))
    check(lambda m, t: COMPARE[name](m, 0.5, t), a)


# ---- clamp, maximum/minimum ties, where, lerp ------------------------------------------------------

@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (None, 0.3), (-0.3, None), (0.5, -0.5)])
def test_clamp_scalar_bounds(lo, hi):
    x = away_from(randn(4, 5, seed=31), points=tuple(v for v in (lo, hi) if v is not None), gap=0.05)
    check(lambda m, t: m.clamp(t, lo, hi), x)
    check(lambda m, t: t.clamp(min=lo, max=hi), x)
    check(lambda m, t: m.clip(t, lo, hi), x)
    gradcheck(lambda m, t: m.clamp(t, lo, hi), x)


@pytest.mark.parametrize("shape_lo,shape_hi", [((4, 5), (4, 5)), ((5,), (4, 1)), ((), (5,))])
def test_clamp_tensor_bounds(shape_lo, shape_hi):
    x = randn(4, 5, seed=32)
    lo = np.asarray(randn(*shape_lo, seed=33) - 0.5, np.float32)
    hi = np.asarray(randn(*shape_hi, seed=34) + 0.5, np.float32)
    # keep x away from both bounds (the kinks)
    x = np.where(np.abs(x - lo) < 0.05, x + 0.1, x)
    x = np.where(np.abs(x - hi) < 0.05, x + 0.1, x).astype(np.float32)
    check(lambda m, t, a, b: m.clamp(t, a, b), x, lo.astype(np.float32), hi.astype(np.float32))
    check(lambda m, t, a: m.clamp(t, min=a), x, lo.astype(np.float32))
    check(lambda m, t, b: m.clamp(t, max=b), x, hi.astype(np.float32))
    gradcheck(lambda m, t, a, b: m.clamp(t, a, b), x, lo, hi)


def test_clamp_at_bounds_gradient_matches_torch():
    # at x == min or x == max torch passes the gradient to x
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32)
    check(lambda m, t: m.clamp(t, -0.5, 0.5), x)
    lo = np.full(5, -0.5, np.float32)
    hi = np.full(5, 0.5, np.float32)
    check(lambda m, t, a, b: m.clamp(t, a, b), x, lo, hi)


def test_clamp_integer_tensor():
    x = np.array([-3, 0, 3, 7], np.int64)
    check(lambda m, t: m.clamp(t, -1, 4), x, grad=False)
    check(lambda m, t: m.clamp(t, -1.5, 4.5), x, grad=False)


@pytest.mark.parametrize("fn", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_gradient(fn):
    a = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]], np.float32)
    b = np.array([1.0, 0.0, 3.0], np.float32)
    check(lambda m, x, y: getattr(m, fn)(x, y), a, b)
    check(lambda m, x: getattr(m, fn)(x, x), a)


def test_max_min_with_tensor_other():
    a, b = _pair((3, 4), (4,), seed=35)
    check(lambda m, x, y: m.max(x, y), a, b)
    check(lambda m, x, y: m.min(x, y), a, b)


@pytest.mark.parametrize("sc,sa,sb", [((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), (3, 4)), ((4,), (3, 4), ())])
def test_where(sc, sa, sb):
    cond = rng(41).random(sc) > 0.5
    a, b = _pair(sa, sb, seed=42)
    check(lambda m, c, x, y: m.where(c, x, y), cond, a, b)
    check(lambda m, c, x, y: x.where(c, y), cond, a, b)
    gradcheck(lambda m, c, x, y: m.where(c, x, y), cond, a, b)


def test_where_with_scalars():
    cond = rng(43).random((3, 4)) > 0.5
    a = randn(3, 4, seed=44)
    check(lambda m, c, x: m.where(c, x, 0.0), cond, a)
    check(lambda m, c, x: m.where(c, 1.5, x), cond, a)


@pytest.mark.parametrize("weight", ["scalar", "tensor"])
def test_lerp(weight):
    start, end = _pair((3, 4), (4,), seed=45)
    if weight == "scalar":
        check(lambda m, s, e: m.lerp(s, e, 0.3), start, end)
        gradcheck(lambda m, s, e: m.lerp(s, e, 0.3), start, end)
    else:
        w = rng(46).random((3, 1)).astype(np.float32)
        check(lambda m, s, e, ww: m.lerp(s, e, ww), start, end, w)
        check(lambda m, s, e, ww: s.lerp(e, ww), start, end, w)
        gradcheck(lambda m, s, e, ww: m.lerp(s, e, ww), start, end, w)


# ---- in-place ops inside a graph -------------------------------------------------------------------

INPLACE = {
    "add_": lambda y, o: y.add_(o),
    "add_alpha": lambda y, o: y.add_(o, alpha=-2.0),
    "sub_": lambda y, o: y.sub_(o),
    "mul_": lambda y, o: y.mul_(o),
    "div_": lambda y, o: y.div_(o),
    "copy_": lambda y, o: y.copy_(o),
    "iadd": lambda y, o: y.__iadd__(o),
    "isub": lambda y, o: y.__isub__(o),
    "imul": lambda y, o: y.__imul__(o),
    "idiv": lambda y, o: y.__itruediv__(o),
}


@pytest.mark.parametrize("name", list(INPLACE))
@pytest.mark.parametrize("other_shape", [(3, 4), (4,)])
def test_inplace_on_non_leaf(name, other_shape):
    x = randn(3, 4, seed=51)
    o = _positive(other_shape, seed=52)

    def fn(m, a, b):
        y = a * 2  # a non-leaf
        z = INPLACE[name](y, b)
        return (z * a).sum(), y

    check(fn, x, o, atol=1e-5, rtol=1e-5)
    gradcheck(fn, x, o)


@pytest.mark.parametrize("name", ["add_", "sub_", "iadd"])
def test_inplace_with_itself_as_argument(name):
    # y.add_(y): nothing saved, so both libraries allow it (y.mul_(y) is refused by both)
    x = randn(3, 4, seed=55)

    def fn(m, a):
        y = a + 1.0
        INPLACE[name](y, y)
        return y * a

    check(fn, x)
    gradcheck(fn, x)


def test_inplace_mul_with_itself_is_refused_like_torch():
    x = engine.tensor(randn(3), requires_grad=True)
    y = x + 1.0
    y.mul_(y)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_inplace_augmented_assignment_rebinds_same_tensor():
    x = engine.tensor(randn(2, 3), requires_grad=True)
    y = x * 1.0
    before = y
    y += 1
    y *= x
    y -= 0.5
    y /= 2
    assert y is before


@pytest.mark.parametrize("name", ["fill_", "clamp_", "zero_", "add_scalar", "mul_scalar"])
def test_inplace_unary_on_non_leaf(name):
    x = randn(3, 4, seed=53)
    ops = {
        "fill_": lambda y: y.fill_(0.25),
        "clamp_": lambda y: y.clamp_(-0.5, 0.5),
        "zero_": lambda y: y.zero_(),
        "add_scalar": lambda y: y.add_(3.0),
        "mul_scalar": lambda y: y.mul_(-2.0),
    }
    x = away_from(x / 2, points=(-0.25, 0.25), gap=0.05)  # y = 2x: keep y off the clamp bounds

    def fn(m, a):
        y = a * 2
        ops[name](y)
        return y * a + y

    check(fn, x)
    gradcheck(fn, x)


@pytest.mark.parametrize("how", ["iadd", "add_", "setitem", "no_grad_zero_"])
def test_inplace_on_0d_op_result(how):
    def fn(m, a):
        total = (a * 2).sum()
        if how == "iadd":
            total += a.sum()
        elif how == "add_":
            total.add_(a.prod())
        elif how == "setitem":
            total[...] = a[0] * 3
        else:
            with m.no_grad():
                s = a.sum()
                s.zero_()
            total = total + s
        return total

    check(fn, randn(3, seed=56))


def test_inplace_on_leaf_requiring_grad_raises():
    x = engine.tensor(randn(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        x.add_(1)
    with engine.no_grad():
        x.add_(1)  # allowed outside autograd


def test_inplace_modifying_saved_tensor_is_detected():
    x = engine.tensor(randn(3), requires_grad=True)
    y = x.exp()  # exp saves its output, y, for backward
    z = y.exp()
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (z * y).sum().backward()


def test_inplace_fill_with_0d_tensor_value_gets_gradient():
    x = randn(3, 4, seed=54)
    v = np.array(0.7, np.float32)

    def fn(m, a, val):
        y = a * 1.5
        y.fill_(val)
        return y * a

    check(fn, x, v)


# ---- type promotion --------------------------------------------------------------------------------

PROMOTION = [
    ("int32 + 2.5", lambda m, a: a + 2.5, np.array([1, 2], np.int32), ()),
    ("int32 + 2", lambda m, a: a + 2, np.array([1, 2], np.int32), ()),
    ("int32 * True", lambda m, a: a * True, np.array([1, 2], np.int32), ()),
    ("uint8 + 300 wraps like torch", lambda m, a: a + 3, np.array([1, 250], np.uint8), ()),
    ("int32 / int32", lambda m, a, b: a / b, np.array([1, 7], np.int32), (np.array([2, 2], np.int32),)),
    ("int64 / 2", lambda m, a: a / 2, np.array([1, 7], np.int64), ()),
    ("int ** 2", lambda m, a: a ** 2, np.array([1, 3], np.int32), ()),
    ("int ** 0.5", lambda m, a: a ** 0.5, np.array([1, 4], np.int64), ()),
    ("2 ** int", lambda m, a: 2 ** a, np.array([1, 3], np.int64), ()),
    ("2.0 ** int", lambda m, a: 2.0 ** a, np.array([1, 3], np.int64), ()),
    ("bool + int", lambda m, a, b: a + b, np.array([True, False]), (np.array([3, 4], np.int64),)),
    ("bool + bool", lambda m, a, b: a + b, np.array([True, False]), (np.array([True, True]),)),
    ("bool * 2.5", lambda m, a: a * 2.5, np.array([True, False]), ()),
    ("int64 + float16", lambda m, a, b: a + b, np.array([1, 2], np.int64), (np.array([0.5, 1.5], np.float16),)),
    ("float16 + float64 0-d", lambda m, a, b: a + b, np.array([0.5, 1.5], np.float16), (np.array(2.0),)),
    ("int32 + float64 0-d", lambda m, a, b: a + b, np.array([1, 2], np.int32), (np.array(2.5),)),
    ("int32 + int64 0-d", lambda m, a, b: a + b, np.array([1, 2], np.int32), (np.array(3, np.int64),)),
    ("int8 + uint8", lambda m, a, b: a + b, np.array([1, -2], np.int8), (np.array([3, 4], np.uint8),)),
    ("float32 + float64", lambda m, a, b: a + b, np.array([1.0], np.float32), (np.array([2.0], np.float64),)),
    ("0-d f64 + 0-d f32", lambda m, a, b: a + b, np.array(1.0), (np.array(2.0, np.float32),)),
    ("int32 maximum float", lambda m, a, b: m.maximum(a, b), np.array([1, 5], np.int32),
     (np.array([2.5, 0.5], np.float32),)),
    ("where int/float", lambda m, c, b: m.where(c, 1, b), np.array([True, False]),
     (np.array([2.5, 0.5], np.float32),)),
    ("int32 - 1.0", lambda m, a: a - 1.0, np.array([1, 2], np.int32), ()),
    ("float16 * 2.0", lambda m, a: a * 2.0, np.array([1, 2], np.float16), ()),
    ("int32 // 2.0", lambda m, a: a // 2.0, np.array([3, 7], np.int32), ()),
    ("int32 % 2", lambda m, a: a % 2, np.array([3, 7], np.int32), ()),
]


@pytest.mark.parametrize("name,fn,a,rest", PROMOTION, ids=[p[0] for p in PROMOTION])
def test_type_promotion(name, fn, a, rest):
    check_dtype(fn, a, *rest)


def test_inplace_promotion_rules():
    x = engine.tensor([1, 2], dtype=engine.int64)
    with pytest.raises(RuntimeError, match="can't be cast"):
        x += 2.5
    y = engine.tensor([1.0, 2.0], dtype=engine.float16)
    y += engine.tensor([1.0, 1.0], dtype=engine.float64)
    assert y.dtype is engine.float16


# ---- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("op,name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                     (lambda a, b: a - b, "sub"), (lambda a, b: a / b, "div")])
def test_incompatible_shapes_name_op_and_shapes(op, name):
    a, b = engine.ones(3, 4), engine.ones(5)
    with pytest.raises(RuntimeError) as info:
        op(a, b)
    msg = str(info.value)
    assert name in msg and "(3, 4)" in msg and "(5,)" in msg


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_inf_and_nan_results_do_not_warn():
    x = engine.tensor([0.0, -1.0, 1.0, 100.0, float("inf"), float("nan")])
    for f in (engine.log, engine.sqrt, engine.rsqrt, engine.log1p, engine.exp, engine.expm1, engine.log2):
        f(x)
    x / 0.0, x * float("inf"), x % 0.0, x // 0.0, x ** -1.0, 0.0 ** -x, x - float("inf")
    (x * 1e5).half()
    engine.softmax(engine.tensor([[float("-inf"), float("-inf")]]), 1)
    engine.tensor([1000.0]).exp()
