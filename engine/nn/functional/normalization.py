"""batch_norm, layer_norm, group_norm: each one fused node (normalise, scale, shift) whose backward is
the closed form, written in tensor ops so that double backward works."""
from __future__ import annotations

import math
import numbers

from ... import _native, _parallel
from ...autograd import grad_mode
from ...autograd.graph import Op
from ...ops import elementwise as ew
from ...ops._util import operands, sum_to
from ...tensor import Tensor

__all__ = ["batch_norm", "layer_norm", "group_norm"]


class Normalize(Op):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, with mean and (biased) var over ``dims`` and
    weight/bias broadcast as ``pshape``.

    ``stats``: None to use the input's own statistics, or constant (mean, invstd) arrays (batch norm in
    eval mode). ``running``: (running_mean, running_var, momentum) tensors updated in place with this
    input's statistics (the unbiased variance there, as PyTorch does), or None.
    """
    save_inputs = True

    def _rows(self, x, w, b):
        """Layer norm (statistics over the trailing dims, weight and bias shaped like them) on arrays the
        fused kernels take: x as (rows, n), w and b as (n,); else None."""
        k = len(self.dims)
        if (self.stats is not None or self.running is not None or self.dims != tuple(range(x.ndim - k, x.ndim))
                or tuple(self.pshape) != tuple(x.shape[x.ndim - k:]) or not _native.usable(self.xp, x, w, b)):
            return None
        n = math.prod(self.pshape)
        return x.reshape(-1, n), *(None if t is None else t.reshape(n) for t in (w, b))

    def forward(self, x, w, b):
        xp, ufunc = self.xp, _parallel.ufunc
        rows = self._rows(x, w, b)
        if rows is not None:
            y, mean, invstd = _native.layer_norm(*rows, self.eps)
            stat_shape = x.shape[:x.ndim - len(self.dims)] + (1,) * len(self.dims)
            self.mean, self.invstd = mean.reshape(stat_shape), invstd.reshape(stat_shape)
            return y.reshape(x.shape)
        if self.stats is None:
            mean = _parallel.reduce(xp, x, "mean", self.dims, keepdims=True)
            d = ufunc(xp, xp.subtract, x, mean)
            sq_sum = _parallel.reduce(xp, ufunc(xp, xp.multiply, d, d), "sum", self.dims, keepdims=True)
            n = x.size // max(mean.size, 1)  # elements per statistic
            invstd = 1 / xp.sqrt(sq_sum / n + self.eps)
            if self.running is not None:
                self._update_running(mean, sq_sum / (n - 1))
        else:
            mean, invstd = self.stats
            d = ufunc(xp, xp.subtract, x, mean)
        self.mean, self.invstd = mean, invstd  # small: one entry per statistic
        ufunc(xp, xp.multiply, d, invstd, out=d)
        if w is not None:
            ufunc(xp, xp.multiply, d, w.reshape(self.pshape), out=d)
        if b is not None:
            ufunc(xp, xp.add, d, b.reshape(self.pshape), out=d)
        return d

    def _update_running(self, mean, unbiased_var) -> None:
        running_mean, running_var, m = self.running
        for buf, stat in ((running_mean, mean), (running_var, unbiased_var)):
            buf._data[...] = m * stat.reshape(buf._data.shape) + (1 - m) * buf._data
            buf._vc.value += 1  # an in-place change, as buf.mul_().add_() would record

    def backward(self, g):
        if not grad_mode.is_grad_enabled():
            return self._backward_arrays(g)
        x, w, b = self.inputs
        dims = self.dims
        if self.stats is None:
            # create_graph: the statistics as functions of x, so the gradient is differentiable in x
            mean = x.mean(dims, keepdim=True)
            invstd = ew.rsqrt(ew.square(x - mean).mean(dims, keepdim=True) + self.eps)
        else:
            mean, invstd = self._const(self.mean), self._const(self.invstd)
        want_gw = w is not None and self.needs_grad(1)
        if want_gw or (self.stats is None and self.needs_grad(0)):
            xhat = (x - mean) * invstd
        gx = gw = gb = None
        if self.needs_grad(0):
            gxhat = g * w.reshape(self.pshape) if w is not None else g
            if self.stats is None:  # mean and var depend on x: project those directions out
                gxhat = gxhat - gxhat.mean(dims, keepdim=True) - xhat * (gxhat * xhat).mean(dims, keepdim=True)
            gx = gxhat * invstd
        if want_gw:
            gw = sum_to(g * xhat, self.pshape).reshape(w.shape)
        if b is not None and self.needs_grad(2):
            gb = sum_to(g, self.pshape).reshape(b.shape)
        return gx, gw, gb

    def _backward_arrays(self, g):
        """``backward``'s formula on raw arrays, in place where the array is this method's own: the
        usual case, when no graph of the backward is recorded (no nodes, a third of the passes)."""
        x, w, b = self.inputs
        xp, dims, mean, invstd, ufunc = self.xp, self.dims, self.mean, self.invstd, _parallel.ufunc
        g = g._data
        rows = self._rows(x._data, *(None if t is None else t._data for t in (w, b)))
        if rows is not None and g.shape == x.shape and g.dtype == x._data.dtype and g.flags.c_contiguous:
            x2, w2, _ = rows
            gx, gw, gb = _native.layer_norm_backward(
                g.reshape(x2.shape), x2, w2, mean, invstd, self.needs_grad(0),
                w is not None and self.needs_grad(1), b is not None and self.needs_grad(2))
            return tuple(None if a is None else self._const(a.reshape(t.shape))
                         for a, t in zip((gx, gw, gb), (x, w, b)))
        want_gw = w is not None and self.needs_grad(1)
        xhat = tmp = None
        if want_gw or (self.stats is None and self.needs_grad(0)):
            xhat = ufunc(xp, xp.subtract, x._data, mean)
            ufunc(xp, xp.multiply, xhat, invstd, out=xhat)
        gx = gw = gb = None
        if self.needs_grad(0):
            gx = ufunc(xp, xp.multiply, g, w._data.reshape(self.pshape)) if w is not None else g.copy()
            if self.stats is None:  # mean and var depend on x: project those directions out
                tmp = ufunc(xp, xp.multiply, gx, xhat)
                proj = _parallel.reduce(xp, tmp, "mean", dims, keepdims=True)
                ufunc(xp, xp.subtract, gx, _parallel.reduce(xp, gx, "mean", dims, keepdims=True), out=gx)
                ufunc(xp, xp.multiply, xhat, proj, out=tmp)
                ufunc(xp, xp.subtract, gx, tmp, out=gx)
            gx = self._const(ufunc(xp, xp.multiply, gx, invstd, out=gx))
        if want_gw:
            gw = sum_to(self._const(ufunc(xp, xp.multiply, g, xhat, out=tmp)), self.pshape).reshape(w.shape)
        if b is not None and self.needs_grad(2):
            gb = sum_to(self._const(g), self.pshape).reshape(b.shape)
        return gx, gw, gb

    def _const(self, arr) -> Tensor:
        return Tensor._make(arr, self.device)


def _float_operands(fn: str, input, weight, bias):
    if not isinstance(input, Tensor):
        raise TypeError(f"{fn}: expected a Tensor input, got {type(input).__name__}")
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"{fn}: expected a floating-point input, got {input.dtype.name}; "
                           "convert it first, e.g. input.float()")
    return operands(input, weight, bias)


def _check_param(fn: str, name: str, t, shape) -> None:
    if t is not None and tuple(t.shape) != tuple(shape):
        raise RuntimeError(f"{fn}: expected {name} of shape {tuple(shape)} to fit the input, "
                           f"got {tuple(t.shape)}")


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5):
    """Normalise each channel (dim 1) of (N, C, *) over N and the other dims: with this batch's
    statistics when ``training`` (updating the running ones given), else with the running ones."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        _check_param("batch_norm", name, t, (c,))
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    dims = (0,) + tuple(range(2, input.ndim))
    pshape = (1, c) + (1,) * (input.ndim - 2)
    x, w, b = _float_operands("batch_norm", input, weight, bias)
    if training:
        if input.numel() // max(c, 1) <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got input size "
                             f"{tuple(input.shape)}: use a batch of 2 or more, or eval mode")
        running = (running_mean, running_var, momentum) if running_mean is not None else None
        return Normalize.apply(x, w, b, dims=dims, pshape=pshape, eps=eps, stats=None, running=running)
    if running_mean is None:
        raise ValueError("batch_norm: training=False normalises with running_mean and running_var; "
                         "give them, or pass training=True to use the batch's statistics")
    xp, dt = x.device.xp, x._data.dtype
    mean = running_mean._data.reshape(pshape).astype(dt, copy=False)
    invstd = 1 / xp.sqrt(running_var._data.reshape(pshape).astype(dt) + eps)
    return Normalize.apply(x, w, b, dims=dims, pshape=pshape, eps=eps, stats=(mean, invstd), running=None)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Normalise over the last ``len(normalized_shape)`` dims, which must equal ``normalized_shape``."""
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or tuple(input.shape[input.ndim - k:]) != shape:
        raise RuntimeError(f"layer_norm: expected input whose last dimensions are normalized_shape={shape}, "
                           f"got input of shape {tuple(input.shape)}")
    _check_param("layer_norm", "weight", weight, shape)
    _check_param("layer_norm", "bias", bias, shape)
    x, w, b = _float_operands("layer_norm", input, weight, bias)
    dims = tuple(range(input.ndim - k, input.ndim))
    return Normalize.apply(x, w, b, dims=dims, pshape=shape, eps=eps, stats=None, running=None)


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5):
    """Split the C channels of (N, C, *) into ``num_groups`` groups and normalise each group of each
    sample; weight and bias are per channel."""
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(f"group_norm: expected input of shape (N, C, ...) with C divisible by "
                           f"num_groups={num_groups}, got {tuple(input.shape)}")
    n, c = input.shape[0], input.shape[1]
    _check_param("group_norm", "weight", weight, (c,))
    _check_param("group_norm", "bias", bias, (c,))
    x, w, b = _float_operands("group_norm", input, weight, bias)
    # (N, G, C/G, spatial): statistics over the last two dims, weight and bias along the middle two
    grouped = x.reshape(n, num_groups, c // num_groups, math.prod(input.shape[2:]))
    out = Normalize.apply(grouped, w, b, dims=(2, 3), pshape=(1, num_groups, c // num_groups, 1), eps=eps,
                          stats=None, running=None)
    return out.reshape(input.shape)
