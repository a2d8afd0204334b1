"""Elementwise ops: arithmetic with broadcasting, unary math, comparisons. Each op's forward and
backward sit together; broadcast gradients are reduced by ``sum_to``."""
from __future__ import annotations

import math
import operator

from .. import dtypes
from ..autograd.graph import Op
from ..tensor import Tensor
from .. import _native, _parallel
from ..backend import quietly
from ._util import bind, float_operand, ieee, is_scalar, keep_where, operands, sum_to


def _shape(x):
    """The shape of an array, a Tensor or a number (())."""
    return x._data.shape if isinstance(x, Tensor) else getattr(x, "shape", ())


def _check_broadcast(name, a, b):
    sa, sb = _shape(a), _shape(b)
    if sa == sb:
        return
    for x, y in zip(reversed(sa), reversed(sb)):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"{name}: the shapes {tuple(sa)} and {tuple(sb)} cannot be broadcast together "
                               "(trailing dimensions must be equal or 1)")


class _Binary(Op):
    """Records the input shapes, which backward needs to unbroadcast."""

    def forward(self, a, b):  # (arrays or numbers)
        self.shapes = (getattr(a, "shape", ()), getattr(b, "shape", ()))
        return quietly(self.xp, self.compute, a, b)  # 1/0 = inf, 0*inf = nan: answers, not warnings

    def grads(self, ga, gb):
        sa, sb = self.shapes
        return (sum_to(ga, sa) if ga is not None and self.needs_grad(0) else None,
                sum_to(gb, sb) if gb is not None and self.needs_grad(1) else None)


class Add(_Binary):
    def compute(self, a, b):
        return _parallel.ufunc(self.xp, self.xp.add, a, b)

    def backward(self, g):
        return self.grads(g, g)


class Sub(_Binary):
    def compute(self, a, b):
        return _parallel.ufunc(self.xp, self.xp.subtract, a, b)

    def backward(self, g):
        return self.grads(g, Neg.apply(g) if self.needs_grad(1) else None)


class Mul(_Binary):
    save_inputs = True

    def saves_input(self, i):
        return self.needs_grad(1 - i)  # a's gradient reads b, and b's reads a

    def compute(self, a, b):
        return _parallel.ufunc(self.xp, self.xp.multiply, a, b)

    def backward(self, g):
        # straight to the op: the operands already share a dtype and device, and broadcast
        a, b = self.inputs
        return self.grads(Mul.apply(g, b) if self.needs_grad(0) else None,
                          Mul.apply(g, a) if self.needs_grad(1) else None)


class _ByNumber(Op):
    """tensor * number and tensor / number. Only the number is kept for backward (as in PyTorch), so a
    later in-place change of the tensor is no error: y[1:] = y[:-1] * 0.5."""

    def forward(self, x):
        return quietly(self.xp, _parallel.ufunc, self.xp, getattr(self.xp, self.ufunc), x, self.number)

    def backward(self, g):
        return self.compute(g, self.number)


class MulNumber(_ByNumber):
    compute = staticmethod(operator.mul)
    ufunc = "multiply"

    def name(self) -> str:
        return "MulBackward0"  # PyTorch's name for this node


class DivNumber(_ByNumber):
    compute = staticmethod(operator.truediv)
    ufunc = "true_divide"

    def name(self) -> str:
        return "DivBackward0"


class Div(_Binary):
    save_inputs = True

    def saves_input(self, i):
        return i == 1 or self.needs_grad(1)  # b for both gradients, a only for b's

    def compute(self, a, b):
        return _parallel.ufunc(self.xp, self.xp.true_divide, a, b)

    def backward(self, g):
        a, b = self.inputs
        ga = Div.apply(g, b) if self.needs_grad(0) else None
        gb = DivGradDenominator.apply(g, a, b) if self.needs_grad(1) else None
        return self.grads(ga, gb)


class DivGradDenominator(Op):
    """d(a/b)/db times g = -g a / b^2, in one node; differentiable itself, for higher orders."""
    save_inputs = True

    def forward(self, g, a, b):
        self.shapes = (g.shape, _shape(a), _shape(b))
        with ieee(self.xp):
            return -g * a / (b * b)

    def backward(self, gg):
        g, a, b = self.inputs
        sg, sa, sb = self.shapes
        b2 = b * b
        return (sum_to(-gg * a / b2, sg) if self.needs_grad(0) else None,
                sum_to(-gg * g / b2, sa) if self.needs_grad(1) else None,
                sum_to(2 * gg * g * a / (b2 * b), sb) if self.needs_grad(2) else None)


class Pow(_Binary):
    save_inputs = True
    save_output = True

    def compute(self, a, b):
        if self.xp.issubdtype(_dtype_of(a), self.xp.integer) and (
                (is_scalar(b) and b < 0) or (not is_scalar(b) and (b < 0).any())):
            raise RuntimeError("Integers to negative integer powers are not allowed; "
                               "convert the base to float first, e.g. x.float() ** -1")
        return a ** b

    def backward(self, g):
        a, b = self.inputs
        if not isinstance(a, Tensor):  # a Python-number base (2 ** t): a 0-d tensor for the math below
            a = Tensor._make(self.xp.asarray(a), self.device)
        ga = gb = None
        if self.needs_grad(0):
            ga = where(b == 0, 0.0, g * b * a ** (b - 1)) if isinstance(b, Tensor) else (
                g * 0.0 if b == 0 else g * b * a ** (b - 1))
        if self.needs_grad(1):
            # d(a^b)/db = a^b log a, taken as 0 where a == 0 and b >= 0 (PyTorch's convention)
            gb = g * where((a == 0) & (b >= 0), 0.0, self.output * log(a))
        return self.grads(ga, gb)


def _dtype_of(x):
    return x.dtype if hasattr(x, "dtype") else type(x)


class Maximum(_Binary):
    save_inputs = True

    def compute(self, a, b):
        return self.xp.maximum(a, b)

    def backward(self, g):
        a, b = self.inputs
        half = where(a == b, g / 2, g)
        return self.grads(where(a < b, 0.0, half), where(a > b, 0.0, half))


class Minimum(_Binary):
    save_inputs = True

    def compute(self, a, b):
        return self.xp.minimum(a, b)

    def backward(self, g):
        a, b = self.inputs
        half = where(a == b, g / 2, g)
        return self.grads(where(a > b, 0.0, half), where(a < b, 0.0, half))


class Remainder(_Binary):
    save_inputs = True

    def compute(self, a, b):
        return self.xp.remainder(a, b)

    def backward(self, g):
        a, b = self.inputs
        return self.grads(g, -g * floor_divide(a, b) if self.needs_grad(1) else None)


class Where(Op):
    def forward(self, cond, a, b):
        self.cond = cond
        self.shapes = (_shape(a), _shape(b))
        return self.xp.where(cond, a, b)

    def backward(self, g):
        cond = Tensor._make(self.cond, self.device)
        zero = g.new_zeros(())
        sa, sb = self.shapes
        return (None,
                sum_to(where(cond, g, zero), sa) if self.needs_grad(1) else None,
                sum_to(where(cond, zero, g), sb) if self.needs_grad(2) else None)


class Lerp(Op):
    save_inputs = True

    def forward(self, start, end, weight):
        self.shapes = (_shape(start), _shape(end), _shape(weight))
        return start + weight * (end - start)

    def backward(self, g):
        start, end, w = self.inputs
        ss, se, sw = self.shapes
        return (sum_to(g * (1 - w), ss) if self.needs_grad(0) else None,
                sum_to(g * w, se) if self.needs_grad(1) else None,
                sum_to(g * (end - start), sw) if self.needs_grad(2) else None)


class Clamp(Op):
    save_inputs = True

    def forward(self, x, lo, hi):
        xp = self.xp
        out = x
        if lo is not None:
            out = xp.maximum(out, lo)
        if hi is not None:
            out = xp.minimum(out, hi)
        self.shapes = (_shape(x), _shape(lo), _shape(hi))
        return out

    def backward(self, g):
        x, lo, hi = self.inputs
        keep = None
        if lo is not None:
            keep = x >= lo
        if hi is not None:
            keep = (x <= hi) if keep is None else keep & (x <= hi)
        zero = g.new_zeros(())
        sx, slo, shi = self.shapes
        glo = ghi = None
        # where min > max the output is max, so the gradient goes to max only (as in PyTorch)
        if self.needs_grad(1):
            below = (x < lo) if hi is None else (x < lo) & (lo < hi)
            glo = sum_to(where(below, g, zero), slo)
        if self.needs_grad(2):
            above = (x > hi) if lo is None else (x > hi) | (hi < lo)
            ghi = sum_to(where(above, g, zero), shi)
        return sum_to(where(keep, g, zero), sx) if self.needs_grad(0) else None, glo, ghi


def _binary(op, name, a, b, dtype=None):
    a, b = operands(a, b, dtype=dtype)
    _check_broadcast(name, a, b)
    return op.apply(a, b)


def add(input, other, *, alpha=1):
    if alpha != 1:
        other = other * alpha
    return _binary(Add, "add", input, other)


def _is_bool(x) -> bool:
    return x._data.dtype.kind == "b" if isinstance(x, Tensor) else isinstance(x, bool)


def _refuse_bool(name: str, *xs) -> None:
    """PyTorch has no bool arithmetic for these ops (numpy would compute them as int8)."""
    if all(_is_bool(x) for x in xs):
        raise NotImplementedError(f'"{name}" not implemented for \'Bool\'; convert first, e.g. x.int()')


def sub(input, other, *, alpha=1):
    if _is_bool(input) or _is_bool(other):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    if alpha != 1:
        other = other * alpha
    return _binary(Sub, "sub", input, other)


def mul(input, other):
    a, b = operands(input, other)
    _check_broadcast("mul", a, b)
    if not isinstance(a, Tensor):
        a, b = b, a
    return MulNumber.apply(a, number=b) if not isinstance(b, Tensor) else Mul.apply(a, b)


def div(input, other, *, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        if dtypes.result_type(input, other).is_floating_point:
            return trunc(div(input, other))
        a, b = _integer_division_operands("div", input, other)
        # exact for integers (not through float32): floor, plus one where the signs differ and it isn't exact
        return _nondiff(lambda xp, x, y: xp.floor_divide(x, y) + ((xp.remainder(x, y) != 0) & ((x < 0) != (y < 0))),
                        a, b)
    if rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    a, b = operands(input, other)
    if (a if isinstance(a, Tensor) else b)._data.dtype.kind != "f":  # true division of integers
        a, b = operands(input, other, dtype=dtypes.get_default_dtype())
    _check_broadcast("div", a, b)
    return DivNumber.apply(a, number=b) if not isinstance(b, Tensor) else Div.apply(a, b)


def true_divide(input, other):
    return div(input, other)


def pow(input, exponent):
    _refuse_bool("pow", input, exponent)
    return _binary(Pow, "pow", input, exponent)


def maximum(input, other):
    return _binary(Maximum, "maximum", input, other)


def minimum(input, other):
    return _binary(Minimum, "minimum", input, other)


def remainder(input, other):
    a, b = _integer_division_operands("remainder", input, other)
    return Remainder.apply(a, b)


def floor_divide(input, other):
    _refuse_bool("floor_divide", input, other)
    a, b = _integer_division_operands("floor_divide", input, other)
    return _nondiff(lambda xp, x, y: xp.floor_divide(x, y), a, b)


def _integer_division_operands(name, input, other):
    """Operands of //, % and trunc division; an integer division by zero is an error (as in PyTorch),
    not numpy's silent 0."""
    a, b = operands(input, other)
    _check_broadcast(name, a, b)
    if not (a.dtype if isinstance(a, Tensor) else b.dtype).is_floating_point:
        divisor = b._data if isinstance(b, Tensor) else b
        if (divisor == 0) if is_scalar(divisor) else bool((divisor == 0).any()):
            raise RuntimeError(f"ZeroDivisionError: {name}: integer division by zero")
    return a, b


def where(condition, input=None, other=None):
    if input is None and other is None:
        from .index import nonzero
        return nonzero(condition, as_tuple=True)
    cond = condition._data if isinstance(condition, Tensor) else condition
    if cond.dtype.kind != "b":
        raise RuntimeError(f"where: expected condition to be a bool tensor, got {condition.dtype}")
    a, b = operands(input, other)
    dev = a._device if isinstance(a, Tensor) else (b._device if isinstance(b, Tensor) else condition._device)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor._make(dev.xp.asarray(a), dev)
    return Where.apply(cond, a, b)


def lerp(input, end, weight):
    start, end_, w = operands(input, end, weight)
    return Lerp.apply(start, end_, w)


def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
    x, lo, hi = operands(input, min, max)
    return Clamp.apply(x, lo, hi)


clip = clamp


# ---- unary math -----------------------------------------------------------------------------------

class Neg(Op):
    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Op):
    save_output = True

    def forward(self, x):
        with ieee(self.xp):
            return _parallel.ufunc(self.xp, self.xp.exp, x)

    def backward(self, g):
        return g * self.output


class Log(Op):
    save_inputs = True

    def forward(self, x):
        with ieee(self.xp):
            return self.xp.log(x)

    def backward(self, g):
        return g / self.inputs[0]


class Log2(Op):
    save_inputs = True

    def forward(self, x):
        with ieee(self.xp):
            return self.xp.log2(x)

    def backward(self, g):
        return g / (self.inputs[0] * math.log(2.0))


class Log1p(Op):
    save_inputs = True

    def forward(self, x):
        with ieee(self.xp):
            return self.xp.log1p(x)

    def backward(self, g):
        return g / (self.inputs[0] + 1)


class Expm1(Op):
    save_output = True

    def forward(self, x):
        with ieee(self.xp):
            return self.xp.expm1(x)

    def backward(self, g):
        return g * (self.output + 1)


class Sqrt(Op):
    save_output = True

    def forward(self, x):
        with ieee(self.xp):
            return self.xp.sqrt(x)

    def backward(self, g):
        return g / (2 * self.output)


class Rsqrt(Op):
    save_output = True

    def forward(self, x):
        with ieee(self.xp):
            return 1 / self.xp.sqrt(x)

    def backward(self, g):
        y = self.output
        return g * -0.5 * y * y * y


class Sin(Op):
    save_inputs = True

    def forward(self, x):
        return self.xp.sin(x)

    def backward(self, g):
        return g * cos(self.inputs[0])


class Cos(Op):
    save_inputs = True

    def forward(self, x):
        return self.xp.cos(x)

    def backward(self, g):
        return -g * sin(self.inputs[0])


class Tanh(Op):
    save_output = True

    def forward(self, x):
        return self.xp.tanh(x)

    def backward(self, g):
        return TanhGrad.apply(g, self.output)


class TanhGrad(Op):
    """g * (1 - y^2) in one pass; differentiable itself, for higher-order gradients."""
    save_inputs = True

    def forward(self, g, y):
        return g * (1 - y * y)

    def backward(self, gg):
        g, y = self.inputs
        return (TanhGrad.apply(gg, y) if self.needs_grad(0) else None,
                -2 * gg * g * y if self.needs_grad(1) else None)


class Sigmoid(Op):
    save_output = True

    def forward(self, x):
        xp = self.xp
        # exp of a non-positive number only: no overflow warnings for large |x|
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def backward(self, g):
        return SigmoidGrad.apply(g, self.output)


class SigmoidGrad(Op):
    """g * y (1 - y) in one pass; differentiable itself, for higher-order gradients."""
    save_inputs = True

    def forward(self, g, y):
        return g * y * (1 - y)

    def backward(self, gg):
        g, y = self.inputs
        return (SigmoidGrad.apply(gg, y) if self.needs_grad(0) else None,
                gg * g * (1 - 2 * y) if self.needs_grad(1) else None)


class Relu(Op):
    save_output = True

    def forward(self, x):
        if _native.usable(self.xp, x):
            return _native.relu(x)
        return _parallel.ufunc(self.xp, self.xp.maximum, x, x.dtype.type(0))

    def backward(self, g):
        return ReluGrad.apply(g, self.output)


class ReluGrad(Op):
    """The gradient where y > 0 (and where y is nan, as in PyTorch), else 0."""
    save_inputs = True

    def saves_input(self, i):
        return i == 1

    def forward(self, g, y):
        xp = self.xp
        out = xp.empty_like(g)
        if g.shape == y.shape and _native.usable(xp, g, y):
            _native.relu_grad(g, y, out)
            return out
        # not y > 0: nan passes the gradient
        _parallel.map_chunks(xp, lambda g, y, out: keep_where(xp, g, y <= 0, out), g, y, out, chunk=None)
        return out

    def backward(self, gg):
        return ReluGrad.apply(gg, self.inputs[1]) if self.needs_grad(0) else None, None


class Abs(Op):
    save_inputs = True

    def forward(self, x):
        return self.xp.abs(x)

    def backward(self, g):
        return g * sign(self.inputs[0])


class Erf(Op):
    save_inputs = True

    def forward(self, x):
        if self.xp.__name__ == "numpy":
            from scipy.special import erf as _erf
        else:
            from cupyx.scipy.special import erf as _erf
        return _erf(x).astype(x.dtype, copy=False)

    def backward(self, g):
        x = self.inputs[0]
        return g * (2 / math.sqrt(math.pi)) * exp(-(x * x))


def _unary(op, float_only=True):
    def fn(input):
        x = float_operand(input) if float_only else input
        return op.apply(x)
    fn.__name__ = op.__name__.lower()
    return fn


neg = negative = _unary(Neg, float_only=False)
exp = _unary(Exp)
log = _unary(Log)
log2 = _unary(Log2)
log1p = _unary(Log1p)
expm1 = _unary(Expm1)
sqrt = _unary(Sqrt)
rsqrt = _unary(Rsqrt)
sin = _unary(Sin)
cos = _unary(Cos)
tanh = _unary(Tanh)
sigmoid = _unary(Sigmoid)
relu = _unary(Relu, float_only=False)
abs = _unary(Abs, float_only=False)
erf = _unary(Erf)


def square(input):
    return input * input


def reciprocal(input):
    return div(1.0, float_operand(input))


# ---- non-differentiable: comparisons, rounding, sign ---------------------------------------------

def _nondiff(fn, *xs):
    """Ops whose result has no gradient (PyTorch's comparison and rounding ops)."""
    dev = next(x._device for x in xs if isinstance(x, Tensor))
    xp = dev.xp
    arrays = [x._data if isinstance(x, Tensor) else x for x in xs]
    with ieee(xp):  # 1.0 // 0.0 = inf, quietly
        return Tensor._make(xp.asarray(fn(xp, *arrays)), dev)


def _compare(ufunc_name):
    def fn(input, other):
        a, b = operands(input, other)
        _check_broadcast(ufunc_name, a, b)
        return _nondiff(lambda xp, x, y: getattr(xp, ufunc_name)(x, y), a, b)
    fn.__name__ = ufunc_name
    return fn


eq = _compare("equal")
ne = _compare("not_equal")
lt = _compare("less")
le = _compare("less_equal")
gt = _compare("greater")
ge = _compare("greater_equal")
logical_and = _compare("logical_and")
logical_or = _compare("logical_or")
logical_xor = _compare("logical_xor")


def logical_not(input):
    return _nondiff(lambda xp, x: xp.logical_not(x), input)


def _zero_grad_unary(xp_name):
    """Piecewise-constant functions: their gradient is zero almost everywhere."""
    class ZeroGrad(Op):
        def forward(self, x):
            return getattr(self.xp, xp_name)(x)

        def backward(self, g):
            return g.new_zeros(g.shape)
    ZeroGrad.__name__ = xp_name.capitalize()
    return _unary(ZeroGrad, float_only=False)


sign = _zero_grad_unary("sign")
floor = _zero_grad_unary("floor")
ceil = _zero_grad_unary("ceil")
round = _zero_grad_unary("round")
trunc = _zero_grad_unary("trunc")


def isnan(input):
    return _nondiff(lambda xp, x: xp.isnan(x), input)


def isinf(input):
    return _nondiff(lambda xp, x: xp.isinf(x), input)


def isfinite(input):
    return _nondiff(lambda xp, x: xp.isfinite(x), input)


def bitwise_not(input):
    return _nondiff(lambda xp, x: xp.invert(x), input)


def _bitwise(name):
    def fn(input, other):
        a, b = operands(input, other)
        if a.dtype.is_floating_point:
            raise RuntimeError(f"{name} is only supported for integer and bool tensors, got {a.dtype}")
        return _nondiff(lambda xp, x, y: getattr(xp, name)(x, y), a, b)
    return fn


bitwise_and, bitwise_or, bitwise_xor = _bitwise("bitwise_and"), _bitwise("bitwise_or"), _bitwise("bitwise_xor")


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    return bool(input._device.xp.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return _nondiff(lambda xp, x, y: xp.isclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan), input, other)


def equal(input, other) -> bool:
    return tuple(input.shape) == tuple(other.shape) and bool((input == other).all())


# ---- in-place variants (out-of-place math written back by Tensor._inplace) ------------------------

def _inplace_variant(fn):
    def method(self, *args, **kwargs):
        return self._inplace(fn, *args, **kwargs)
    method.__name__ = fn.__name__ + "_"
    return method


def _everywhere(t: Tensor) -> Tensor:
    return Tensor._make(t._device.xp.ones(t._data.shape, dtype=bool), t._device)


def _fill_(self, value):
    if isinstance(value, Tensor) and value.ndim != 0:
        raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} dimensions.")
    return self._inplace(lambda t: where(_everywhere(t), value, t).to(self.dtype))


def _zero_(self):
    return _fill_(self, 0)


def _copy_(self, src, non_blocking: bool = False):
    """Writes ``src`` (broadcast, cast to this tensor's dtype and device) into this tensor."""
    if not isinstance(src, Tensor):
        raise TypeError(f"copy_: expected a Tensor as src, got {type(src).__name__}")
    src = src.to(self._device, self.dtype)
    return self._inplace(lambda t: where(_everywhere(t), src, t))


def _rpow(self, other):
    return pow(other, self)


bind(
    add=add, sub=sub, subtract=sub, mul=mul, multiply=mul, div=div, divide=div, true_divide=true_divide,
    pow=pow, maximum=maximum, minimum=minimum, remainder=remainder, floor_divide=floor_divide,
    lerp=lerp, clamp=clamp, clip=clamp, where=lambda self, cond, other: where(cond, self, other),
    neg=neg, negative=neg, exp=exp, log=log, log2=log2, log1p=log1p, expm1=expm1, sqrt=sqrt, rsqrt=rsqrt,
    sin=sin, cos=cos, tanh=tanh, sigmoid=sigmoid, relu=relu, abs=abs, erf=erf, square=square,
    reciprocal=reciprocal, sign=sign, floor=floor, ceil=ceil, round=round, trunc=trunc,
    eq=eq, ne=ne, lt=lt, le=le, gt=gt, ge=ge, logical_and=logical_and, logical_or=logical_or,
    logical_xor=logical_xor, logical_not=logical_not, isnan=isnan, isinf=isinf, isfinite=isfinite,
    allclose=allclose, isclose=isclose, equal=equal,
    __add__=add, __radd__=lambda self, o: add(o, self), __sub__=sub, __rsub__=lambda self, o: sub(o, self),
    __mul__=mul, __rmul__=lambda self, o: mul(o, self), __truediv__=div,
    __rtruediv__=lambda self, o: div(o, self), __floordiv__=floor_divide,
    __rfloordiv__=lambda self, o: floor_divide(o, self), __mod__=remainder,
    __rmod__=lambda self, o: remainder(o, self), __pow__=pow, __rpow__=_rpow,
    __neg__=neg, __abs__=abs, __eq__=eq, __ne__=ne, __lt__=lt, __le__=le, __gt__=gt, __ge__=ge,
    __and__=bitwise_and, __or__=bitwise_or, __xor__=bitwise_xor, __invert__=bitwise_not,
    __rand__=bitwise_and, __ror__=bitwise_or,
    add_=_inplace_variant(add), sub_=_inplace_variant(sub), mul_=_inplace_variant(mul),
    div_=_inplace_variant(div), pow_=_inplace_variant(pow), clamp_=_inplace_variant(clamp),
    clip_=_inplace_variant(clamp), exp_=_inplace_variant(exp), log_=_inplace_variant(log),
    sqrt_=_inplace_variant(sqrt), tanh_=_inplace_variant(tanh), sigmoid_=_inplace_variant(sigmoid),
    relu_=_inplace_variant(relu), neg_=_inplace_variant(neg), abs_=_inplace_variant(abs),
    lerp_=_inplace_variant(lerp), fill_=_fill_, zero_=_zero_, copy_=_copy_,
    __iadd__=_inplace_variant(add), __isub__=_inplace_variant(sub), __imul__=_inplace_variant(mul),
    __itruediv__=_inplace_variant(div),
)

divide, multiply, subtract = div, mul, sub
