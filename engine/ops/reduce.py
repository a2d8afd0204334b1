"""Reductions over ``dim`` (int or tuple) with ``keepdim``, scans, and the softmax family."""
from __future__ import annotations

import builtins
import math
from collections import namedtuple

from .. import _native, _parallel, dtypes
from ..autograd.graph import Op
from ..tensor import Tensor
from ._util import bind, float_operand, ieee, normalize_dims, wrap_dim
from .elementwise import _nondiff, exp, where

values_indices = namedtuple("values_indices", ["values", "indices"])


def _keep_shape(shape, dims):
    return tuple(1 if i in dims else s for i, s in enumerate(shape))


def _expand_back(g: Tensor, shape, dims, keepdim: bool) -> Tensor:
    """A reduced gradient broadcast back over the input's shape."""
    from .shape import expand, reshape
    if not keepdim:
        g = reshape(g, _keep_shape(shape, dims))
    return expand(g, shape)


class _Reduce(Op):
    def forward(self, x):
        self.shape = x.shape
        return self.compute(x, self.dims, self.keepdim)


def _sum(xp, x, dims, keepdim: bool, dtype=None):
    """x summed over dims: over leading dims of a contiguous float array (a bias's gradient) by the
    kernel, else by numpy, split over the threads where that keeps the bits."""
    lead = len(dims)
    if 0 < lead < x.ndim and dims == tuple(range(lead)) and dtype in (None, x.dtype) and _native.usable(xp, x):
        out = _native.sum_rows(x.reshape(-1, math.prod(x.shape[lead:])))
        return out.reshape(_keep_shape(x.shape, dims) if keepdim else x.shape[lead:])
    return _parallel.reduce(xp, x, "sum", dims, keepdim, dtype=dtype)


class Sum(_Reduce):
    def compute(self, x, dims, keepdim):
        return _sum(self.xp, x, dims, keepdim, self.out_dtype)

    def backward(self, g):
        return SpreadBack.apply(g, shape=self.shape, dims=self.dims, keepdim=self.keepdim, scale=None)


class Mean(_Reduce):
    def compute(self, x, dims, keepdim):
        self.scale = 1.0 / _count(x.shape, dims)
        return _parallel.reduce(self.xp, x, "mean", dims, keepdim)

    def backward(self, g):
        return SpreadBack.apply(g, shape=self.shape, dims=self.dims, keepdim=self.keepdim, scale=self.scale)


class SpreadBack(Op):
    """The backward of sum and mean as one node: the reduced gradient broadcast over the input's
    shape (times 1/n for mean). Its own backward reduces again, for higher-order gradients."""

    def forward(self, g):
        keep = g if self.keepdim else g.reshape(_keep_shape(self.shape, self.dims))
        out = self.xp.broadcast_to(keep, self.shape)
        return out if self.scale is None else out * out.dtype.type(self.scale)

    def backward(self, gg):
        out = sum(gg, self.dims, self.keepdim)
        return out if self.scale is None else out * self.scale


class SumTo(Op):
    """``sum_to`` as one node: sum over the dims broadcasting added or stretched, then reshape.
    Its backward broadcasts back (``expand``, whose own backward is ``sum_to``)."""

    def forward(self, g):
        shape = self.shape
        self.input_shape = g.shape
        if g.ndim < len(shape):  # an input with extra leading 1s (x[0] = v, v of shape (1, n))
            g = g.reshape((1,) * (len(shape) - g.ndim) + g.shape)
        self.grad_shape = g.shape
        lead = g.ndim - len(shape)
        dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
        return (_sum(self.xp, g, dims, True) if dims else g).reshape(shape)

    def backward(self, gg):
        from .shape import expand, reshape
        out = expand(gg, self.grad_shape)
        return out if len(self.grad_shape) == len(self.input_shape) else reshape(out, self.input_shape)


def _count(shape, dims) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


class Prod(_Reduce):
    save_inputs = True
    save_output = True

    def compute(self, x, dims, keepdim):
        return self.xp.prod(x, axis=dims, keepdims=keepdim, dtype=self.out_dtype)

    def backward(self, g):
        x = self.inputs[0]
        xp = self.xp
        g = _expand_back(g, self.shape, self.dims, self.keepdim)
        if not bool((x._data == 0).any()):
            out = _expand_back(self.output, self.shape, self.dims, self.keepdim)
            return g * out / x
        # with zeros: the product of the others, as exclusive cumulative products from both sides
        # (a constant here: a higher-order gradient through a product holding zeros is not supported)
        data = x._data
        others = xp.ones_like(data)
        moved = xp.moveaxis(data, self.dims, tuple(range(len(self.dims))))
        flat = moved.reshape((-1,) + moved.shape[len(self.dims):])
        left = xp.concatenate([xp.ones_like(flat[:1]), xp.cumprod(flat, axis=0)[:-1]], axis=0)
        right = xp.flip(xp.cumprod(xp.flip(flat, 0), axis=0), 0)
        right = xp.concatenate([right[1:], xp.ones_like(flat[:1])], axis=0)
        others = xp.moveaxis((left * right).reshape(moved.shape), tuple(range(len(self.dims))), self.dims)
        return g * Tensor._make(others, self.device)


class AmaxAmin(_Reduce):
    """amax/amin, and max()/min() without dim: the gradient is shared evenly among ties."""
    save_inputs = True
    save_output = True

    def compute(self, x, dims, keepdim):
        return (self.xp.amax if self.is_max else self.xp.amin)(x, axis=dims, keepdims=keepdim)

    def backward(self, g):
        x = self.inputs[0]
        out = _expand_back(self.output, self.shape, self.dims, self.keepdim)
        mask = (x == out).to(g.dtype)
        count = sum(mask, dim=self.dims, keepdim=True)
        return _expand_back(g, self.shape, self.dims, self.keepdim) * mask / count


class LogSumExp(_Reduce):
    save_inputs = True
    save_output = True

    def compute(self, x, dims, keepdim):
        xp = self.xp
        m = xp.amax(x, axis=dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        with ieee(xp):
            out = xp.log(xp.sum(xp.exp(x - m), axis=dims, keepdims=True)) + m
        return out if keepdim else out.squeeze(axis=dims)

    def backward(self, g):
        x = self.inputs[0]
        out = _expand_back(self.output, self.shape, self.dims, self.keepdim)
        return _expand_back(g, self.shape, self.dims, self.keepdim) * exp(x - out)


class Norm2(_Reduce):
    """The 2-norm; its gradient x / norm is taken as 0 where the norm is 0 (as PyTorch does)."""
    save_inputs = True
    save_output = True

    def compute(self, x, dims, keepdim):
        xp = self.xp
        return xp.sqrt(xp.sum(x * x, axis=dims, keepdims=keepdim))

    def backward(self, g):
        x = self.inputs[0]
        norm = _expand_back(self.output, self.shape, self.dims, self.keepdim)
        scale = where(norm == 0, 0.0, _expand_back(g, self.shape, self.dims, self.keepdim) / norm)
        return x * scale


def _reduce(op, input, dim, keepdim, **params):
    dims = normalize_dims(dim, input.ndim)
    if dim is not None and not isinstance(dim, int) and len(dim) == 0:
        dims = tuple(range(input.ndim))  # PyTorch: dim=() or [] reduces over all dims
    return op.apply(input, dims=dims, keepdim=keepdim, **params)


def sum(input, dim=None, keepdim: bool = False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    out_dtype = dtypes.int64.np if input._data.dtype.kind in "biu" else None
    return _reduce(Sum, input, dim, keepdim, out_dtype=out_dtype)


def mean(input, dim=None, keepdim: bool = False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating "
                           f"point or complex dtype. Got: {input.dtype.name}; use x.float().mean()")
    if _count(input.shape, normalize_dims(dim, input.ndim)) == 0:
        return sum(input, dim, keepdim) * float("nan")  # the mean of nothing, quietly (numpy would warn)
    return _reduce(Mean, input, dim, keepdim)


def prod(input, dim=None, keepdim: bool = False, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    out_dtype = dtypes.int64.np if input._data.dtype.kind in "biu" else None
    return _reduce(Prod, input, dim, keepdim, out_dtype=out_dtype)


def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    if isinstance(dim, bool):  # legacy var(x, unbiased)
        dim, unbiased = None, dim
    if correction is None:
        correction = 0 if unbiased is False else 1
    x = float_operand(input)
    dims = normalize_dims(dim, x.ndim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    centered = x - mean(x, dims, keepdim=True)
    return sum(centered * centered, dims, keepdim) / builtins.max(n - correction, 0)


class StdFromVar(Op):
    """std = sqrt(var), with the gradient taken as 0 where std is 0 (as PyTorch), not inf * 0 = nan."""
    save_output = True

    def forward(self, v):
        with ieee(self.xp):
            return self.xp.sqrt(v)

    def backward(self, g):
        y = self.output
        return where(y == 0, 0.0, g / (2 * y))


def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    return StdFromVar.apply(var(input, dim, unbiased, keepdim, correction=correction))


def _arg(fn_name):
    def fn(input, dim=None, keepdim: bool = False):
        xp = input._device.xp
        if dim is None:
            out = getattr(xp, fn_name)(input._data.reshape(-1))
            out = out.reshape((1,) * input.ndim) if keepdim else out
        else:
            d = wrap_dim(dim, input.ndim)
            out = getattr(xp, fn_name)(input._data, axis=d, keepdims=keepdim) if input.ndim else xp.asarray(0)
        return Tensor._make(xp.asarray(out, dtype=xp.int64), input._device)
    fn.__name__ = fn_name
    return fn


argmax, argmin = _arg("argmax"), _arg("argmin")


def _max_min(is_max):
    name = "max" if is_max else "min"

    def fn(input, dim=None, keepdim: bool = False):
        from .elementwise import maximum, minimum
        if isinstance(dim, Tensor):
            return (maximum if is_max else minimum)(input, dim)
        if dim is None:
            if input.numel() == 0:
                raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                                   "Specify the reduction dim with the 'dim' argument.")
            return _reduce(AmaxAmin, input, None, False, is_max=is_max)
        from .index import gather
        indices = (argmax if is_max else argmin)(input, dim, keepdim=True)
        values = gather(input, dim, indices)
        if not keepdim and input.ndim:
            values, indices = values.squeeze(dim), indices.squeeze(dim)
        return values_indices(values, indices)
    fn.__name__ = name
    return fn


max, min = _max_min(True), _max_min(False)


def amax(input, dim=(), keepdim: bool = False):
    return _reduce(AmaxAmin, input, dim if dim != () else None, keepdim, is_max=True)


def amin(input, dim=(), keepdim: bool = False):
    return _reduce(AmaxAmin, input, dim if dim != () else None, keepdim, is_max=False)


def logsumexp(input, dim, keepdim: bool = False):
    return _reduce(LogSumExp, float_operand(input), dim, keepdim)


def norm(input, p="fro", dim=None, keepdim: bool = False, dtype=None):
    x = float_operand(input if dtype is None else input.to(dtype))
    if p in ("fro", 2, 2.0):
        return _reduce(Norm2, x, dim, keepdim)
    a = x.abs()
    if p == float("inf"):
        return amax(a, dim if dim is not None else (), keepdim)
    if p == -float("inf"):
        return amin(a, dim if dim is not None else (), keepdim)
    if p == 0:
        return sum((x != 0).to(x.dtype), dim, keepdim)
    if p == 1:
        return sum(a, dim, keepdim)
    if isinstance(p, str):
        raise RuntimeError(f"norm: unsupported p={p!r}; use a number, 'fro', inf or -inf")
    return sum(a ** p, dim, keepdim) ** (1.0 / p)


def all(input, dim=None, keepdim: bool = False):
    dims = normalize_dims(dim, input.ndim)
    return _nondiff(lambda xp, x: xp.all(x, axis=dims, keepdims=keepdim), input)


def any(input, dim=None, keepdim: bool = False):
    dims = normalize_dims(dim, input.ndim)
    return _nondiff(lambda xp, x: xp.any(x, axis=dims, keepdims=keepdim), input)


def count_nonzero(input, dim=None):
    dims = normalize_dims(dim, input.ndim)
    return _nondiff(lambda xp, x: xp.asarray(xp.count_nonzero(x, axis=dims), dtype=xp.int64), input)


class Cumsum(Op):
    def forward(self, x):
        return self.xp.cumsum(x, axis=self.dim, dtype=self.out_dtype)

    def backward(self, g):
        from .shape import flip
        return flip(cumsum(flip(g, (self.dim,)), self.dim), (self.dim,))


def cumsum(input, dim, *, dtype=None):
    if dtype is not None:
        input = input.to(dtype)
    out_dtype = dtypes.int64.np if input._data.dtype.kind in "biu" else None
    if input.ndim == 0:
        return input.clone() if out_dtype is None else input.to(dtypes.int64)
    return Cumsum.apply(input, dim=wrap_dim(dim, input.ndim), out_dtype=out_dtype)


# ---- softmax family ---------------------------------------------------------------------------------

def _softmax_into(xp, x, e, axis) -> None:
    """e = softmax(x) over ``axis``: shifted by the row max (array methods: numpy's module functions add
    ~2 us of dispatch); a row whose max is not finite (all -inf, or with +inf or nan) is nan either way,
    quietly (as in PyTorch)."""
    with ieee(xp):
        xp.subtract(x, x.max(axis=axis, keepdims=True), out=e)
        xp.exp(e, out=e)
        e /= e.sum(axis=axis, keepdims=True)


def _big_rows(a, dim: int) -> bool:
    """Big enough for rows split over the threads, and rows along ``dim`` (the last)."""
    return a.size >= 2 * _parallel.GRAIN and dim % a.ndim == a.ndim - 1


class Softmax(Op):
    save_output = True

    def forward(self, x):
        xp, dim = self.xp, self.dim
        e = xp.empty_like(x)
        if _big_rows(x, dim):  # rows in cache-sized pieces, over the threads
            _parallel.map_rows(xp, lambda x, e: _softmax_into(xp, x, e, -1), x, e, lead=x.ndim - 1)
        else:
            _softmax_into(xp, x, e, dim)
        return e

    def backward(self, g):
        return SoftmaxGrad.apply(g, self.output, dim=self.dim)


class SoftmaxGrad(Op):
    """Softmax's backward in one node: y * (g - sum(g * y)); differentiable itself."""
    save_inputs = True

    def forward(self, g, y):
        xp, dim = self.xp, self.dim
        if g.shape == y.shape and _big_rows(y, dim):
            if _native.usable(xp, g, y):
                return _native.softmax_backward(g, y)

            def rows(g, y, out):  # rows in pieces, as Softmax
                xp.multiply(g, y, out=out)
                xp.subtract(g, out.sum(axis=-1, keepdims=True), out=out)
                out *= y

            out = xp.empty_like(y)
            _parallel.map_rows(xp, rows, g, y, out, lead=y.ndim - 1)
            return out
        out = g * y
        out -= y * out.sum(axis=dim, keepdims=True)
        return out

    def backward(self, gg):
        g, y = self.inputs
        d = self.dim
        grad_g = SoftmaxGrad.apply(gg, y, dim=d) if self.needs_grad(0) else None
        grad_y = None
        if self.needs_grad(1):
            grad_y = gg * (g - sum(g * y, d, keepdim=True)) - sum(gg * y, d, keepdim=True) * g
        return grad_g, grad_y


class LogSoftmax(Op):
    save_output = True

    def forward(self, x):
        xp = self.xp
        with ieee(xp):  # as in Softmax: a row whose max is not finite is nan, quietly
            shifted = xp.subtract(x, x.max(axis=self.dim, keepdims=True))
            total = xp.exp(shifted).sum(axis=self.dim, keepdims=True)
            shifted -= xp.log(total)
            return shifted

    def backward(self, g):
        return LogSoftmaxGrad.apply(g, self.output, dim=self.dim)


class LogSoftmaxGrad(Op):
    """LogSoftmax's backward in one node: g - exp(out) * sum(g); differentiable itself."""
    save_inputs = True

    def forward(self, g, out):
        with ieee(self.xp):
            r = self.xp.exp(out)
            r *= g.sum(axis=self.dim, keepdims=True)
            return g - r

    def backward(self, gg):
        g, out = self.inputs
        d = self.dim
        e = exp(out)
        grad_g = gg - sum(gg * e, d, keepdim=True) if self.needs_grad(0) else None
        grad_out = -gg * e * sum(g, d, keepdim=True) if self.needs_grad(1) else None
        return grad_g, grad_out


def _softmax_like(op):
    def fn(input, dim=None, dtype=None, *, _stacklevel=3):
        x = input.to(dtype) if dtype is not None else float_operand(input)
        if dim is None:
            dim = 0 if x.ndim in (0, 1, 3) else 1  # PyTorch's legacy implicit choice
        if x.ndim == 0:
            return op.apply(x.reshape(1), dim=0).reshape(())
        return op.apply(x, dim=wrap_dim(dim, x.ndim))
    fn.__name__ = op.__name__.lower()
    return fn


softmax = _softmax_like(Softmax)
log_softmax = _softmax_like(LogSoftmax)

bind(sum=sum, mean=mean, prod=prod, var=var, std=std, max=max, min=min, amax=amax, amin=amin,
     argmax=argmax, argmin=argmin, logsumexp=logsumexp, norm=norm, all=all, any=any, cumsum=cumsum,
     count_nonzero=count_nonzero, softmax=softmax, log_softmax=log_softmax)
