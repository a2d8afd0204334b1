"""Indexing: ``__getitem__``/``__setitem__`` (basic and advanced), gather/scatter and friends.
Gradients of advanced indexing accumulate over repeated indices."""
from __future__ import annotations

import numbers

import numpy as np

from .. import dtypes
from ..autograd import grad_mode
from ..autograd.graph import Op
from ..backend import scatter_add as _scatter_add
from ..tensor import Tensor, as_array
from ._util import bind, sum_to, wrap_dim
from .elementwise import where


# ---- __getitem__ / __setitem__ ---------------------------------------------------------------------

def _normalize_index(x: Tensor, idx):
    """An index tuple numpy/cupy understand: Tensors and lists become arrays on x's device.
    Returns (index, is_basic); basic indexing (ints, slices, None, ...) gives a view."""
    if type(idx) is int:  # x[t], the commonest index (a loop over time steps), without the checks below
        return (idx, Ellipsis), True
    if not isinstance(idx, tuple):
        idx = (idx,)
    xp = x._device.xp
    out, basic = [], True
    for i in idx:
        if type(i) is int:
            out.append(i)
        elif isinstance(i, Tensor):
            if i.dtype.is_floating_point:
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors, "
                                 f"got {i.dtype}")
            out.append(as_array(i, None, x._device))
            basic = False
        elif isinstance(i, (list, np.ndarray)) or hasattr(i, "__cuda_array_interface__"):
            arr = as_array(i, None, x._device)
            if arr.dtype.kind == "f":
                raise IndexError("arrays used as indices must be of integer or boolean type")
            out.append(arr)
            basic = False
        elif isinstance(i, bool):
            out.append(xp.asarray(i))
            basic = False
        elif isinstance(i, numbers.Integral) or i is None or i is Ellipsis or isinstance(i, slice):
            if isinstance(i, slice) and i.step is not None and i.step <= 0:
                raise ValueError("step must be greater than zero (negative strides are not supported; "
                                 "use .flip(dim))")
            out.append(int(i) if isinstance(i, numbers.Integral) else i)
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or bool "
                             f"tensors are valid indices (got {type(i).__name__})")
    if not any(i is Ellipsis for i in out):
        # a trailing ... changes no result, but makes x[0, 1] a 0-d view (as in PyTorch) rather than a
        # numpy scalar copy, and lets x[0, 1] = v take a v of shape (1, 1)
        out.append(Ellipsis)
    return tuple(out), basic


class GetItem(Op):
    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        try:
            return self.xp.asarray(x[self.index])
        except IndexError as e:
            raise IndexError(f"{e} (tensor of shape {list(x.shape)})") from None

    def backward(self, g):
        return IndexBackward.apply(g, index=self.index, shape=self.in_shape, basic=self.basic)


class BasicGetItem(GetItem):
    is_view = True


class IndexBackward(Op):
    """Scatter a gradient into zeros of the input's shape (accumulating repeated indices); its own
    backward is the indexing again, for higher-order gradients."""

    def forward(self, g):
        out = self.xp.zeros(self.shape, dtype=g.dtype)
        if self.basic:
            out[self.index] = g
        else:
            _scatter_add(self.xp, out, self.index, g)
        return out

    def backward(self, gg):
        return (BasicGetItem if self.basic else GetItem).apply(gg, index=self.index, basic=self.basic)


def getitem(self, idx):
    index, basic = _normalize_index(self, idx)
    return (BasicGetItem if basic else GetItem).apply(self, index=index, basic=basic)


class IndexPut(Op):
    """``out = x.clone(); out[index] = value`` as an op (what ``x[index] = value`` records)."""

    def forward(self, x, value):
        self.value_shape = getattr(value, "shape", ())
        out = x.copy()
        out[self.index] = value
        return out

    def backward(self, g):
        gx = IndexPut.apply(g, g._data.dtype.type(0), index=self.index) if self.needs_grad(0) else None
        gv = None
        if self.needs_grad(1):
            gv = sum_to(getitem(g, self.index), self.value_shape)
        return gx, gv


class CopySlices(Op):
    """The base of a view after an in-place op on the view: its data is already updated in place;
    the gradient of the view's region goes to the view's new value, the rest to the old base."""

    def forward(self, base, new_value):
        region = self.xp.ones(base.shape, dtype=base.dtype)
        self.view_fn(Tensor._make(region, self.device))._data[...] = 0  # views write through
        self.outside = region
        return base

    def backward(self, g):
        g_base = g * Tensor._make(self.outside, self.device) if self.needs_grad(0) else None
        return g_base, self.view_fn(g) if self.needs_grad(1) else None


def setitem(self, idx, value):
    index, _ = _normalize_index(self, idx)
    if isinstance(value, Tensor):
        value = value.to(self._device, self.dtype)
    recording = grad_mode.is_grad_enabled() and (
        self.requires_grad or (isinstance(value, Tensor) and value.requires_grad))
    if not recording:
        if self.requires_grad and self.is_leaf and grad_mode.is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        self._data[index] = value._data if isinstance(value, Tensor) else value
        self._vc.value += 1
        return
    if not isinstance(value, Tensor):
        value = self._data.dtype.type(value)
    self._inplace(lambda t: IndexPut.apply(t, value, index=index))


# ---- gather / scatter ------------------------------------------------------------------------------

def _axis_grids(xp, shape, dim: int, index):
    """Index arrays that address ``index``'s positions with ``index`` substituted along ``dim``."""
    grids = []
    for k, n in enumerate(shape):
        if k == dim:
            grids.append(index)
        else:
            s = [1] * len(shape)
            s[k] = n
            grids.append(xp.arange(n).reshape(s))
    return tuple(grids)


def _check_index(op: str, x: Tensor, dim: int, index: Tensor):
    if index.dtype is not dtypes.int64 and index.dtype is not dtypes.int32:
        raise RuntimeError(f"{op}(): Expected dtype int64 for index, got {index.dtype}")
    if index.ndim != x.ndim and not (index.ndim <= 1 and x.ndim <= 1):
        raise RuntimeError(f"{op}(): Index tensor must have the same number of dimensions as input tensor "
                           f"({index.ndim} vs {x.ndim})")
    for k in range(index.ndim):
        if k != dim and index.shape[k] > x.shape[k]:
            raise RuntimeError(f"{op}(): Size does not match at dimension {k}: index has {index.shape[k]}, "
                               f"input has {x.shape[k]}")
    if index.numel():
        lo, hi = int(index._data.min()), int(index._data.max())
        n = x.shape[dim] if x.ndim else 1
        if lo < -n or hi >= n:
            bad = hi if hi >= n else lo
            raise RuntimeError(f"{op}(): index {bad} is out of bounds for dimension {dim} with size {n}")


class Gather(Op):
    def forward(self, x):
        self.in_shape = x.shape
        return x[_axis_grids(self.xp, self.index.shape, self.dim, self.index)]

    def backward(self, g):
        return ScatterAddInto.apply(g, dim=self.dim, index=self.index, shape=self.in_shape)


class ScatterAddInto(Op):
    """zeros(shape) with ``g`` added at ``index`` along ``dim``: the backward of gather."""

    def forward(self, g):
        out = self.xp.zeros(self.shape, dtype=g.dtype)
        _scatter_add(self.xp, out, _axis_grids(self.xp, self.index.shape, self.dim, self.index), g)
        return out

    def backward(self, gg):
        return Gather.apply(gg, dim=self.dim, index=self.index)


def gather(input, dim: int, index, *, sparse_grad: bool = False):
    d = wrap_dim(dim, input.ndim)
    _check_index("gather", input, d, index)
    return Gather.apply(input, dim=d, index=index._data.astype(np.int64, copy=False))


class Scatter(Op):
    """``out = x.clone(); out[index along dim] = src`` (src a tensor, or a number)."""

    def forward(self, x, src):
        out = x.copy()
        out[_axis_grids(self.xp, self.index.shape, self.dim, self.index)] = src
        return out

    def backward(self, g):
        zero = g._data.dtype.type(0)
        gx = Scatter.apply(g, zero, dim=self.dim, index=self.index) if self.needs_grad(0) else None
        gs = Gather.apply(g, dim=self.dim, index=self.index) if self.needs_grad(1) else None
        return gx, gs


class ScatterAdd(Op):
    def forward(self, x, src):
        out = x.copy()
        _scatter_add(self.xp, out, _axis_grids(self.xp, self.index.shape, self.dim, self.index), src)
        return out

    def backward(self, g):
        return g, Gather.apply(g, dim=self.dim, index=self.index) if self.needs_grad(1) else None


def _scatter_src(src, index, input):
    if isinstance(src, Tensor):
        src = src.to(input._device, input.dtype)
        if tuple(src.shape) != tuple(index.shape):  # PyTorch uses the leading part of a larger src
            src = src[tuple(slice(0, n) for n in index.shape)]
        return src
    return input._data.dtype.type(src)


def scatter(input, dim: int, index, src=None, *, value=None, reduce=None):
    if reduce is not None:
        if reduce != "add":
            raise RuntimeError(f"scatter: reduce={reduce!r} is not supported; use scatter_add or reduce='add'")
        return scatter_add(input, dim, index, src)
    d = wrap_dim(dim, input.ndim)
    _check_index("scatter", input, d, index)
    src = value if src is None else src
    return Scatter.apply(input, _scatter_src(src, index, input), dim=d,
                         index=index._data.astype(np.int64, copy=False))


def scatter_add(input, dim: int, index, src):
    d = wrap_dim(dim, input.ndim)
    _check_index("scatter_add", input, d, index)
    return ScatterAdd.apply(input, _scatter_src(src, index, input), dim=d,
                            index=index._data.astype(np.int64, copy=False))


def index_select(input, dim: int, index):
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    d = wrap_dim(dim, input.ndim)
    return getitem(input, (slice(None),) * d + (index.reshape(-1),))


def masked_fill(input, mask, value):
    if mask.dtype is not dtypes.bool_:
        raise RuntimeError(f"masked_fill only supports boolean masks, but got mask with dtype {mask.dtype}")
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError("masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        value = value.to(input.dtype)
    else:
        value = input._data.dtype.type(value)
    out = where(mask, value, input)
    return out if tuple(out.shape) == tuple(input.shape) else _shape_error("masked_fill", input, mask)


def _shape_error(op, input, mask):
    raise RuntimeError(f"{op}: the mask of shape {list(mask.shape)} must be broadcastable to the input's "
                       f"shape {list(input.shape)}")


def masked_select(input, mask):
    if mask.dtype is not dtypes.bool_:
        raise RuntimeError(f"masked_select: expected BoolTensor for mask, got {mask.dtype}")
    from .shape import expand
    shape = np.broadcast_shapes(tuple(input.shape), tuple(mask.shape))
    return getitem(expand(input, shape), expand(mask, shape))


def take_along_dim(input, indices, dim=None):
    from .shape import expand, reshape
    if dim is None:
        return gather(reshape(input, -1), 0, reshape(indices, -1))
    d = wrap_dim(dim, input.ndim)
    if indices.ndim != input.ndim:
        raise RuntimeError(f"take_along_dim(): input and indices should have the same number of dimensions, "
                           f"but got {input.ndim} dimensions for input, and {indices.ndim} for indices")
    shape_x, shape_i = list(input.shape), list(indices.shape)
    shape_x[d] = shape_i[d] = 1
    common = list(np.broadcast_shapes(tuple(shape_x), tuple(shape_i)))
    common_x, common_i = list(common), list(common)
    common_x[d], common_i[d] = input.shape[d], indices.shape[d]
    return gather(expand(input, common_x), d, expand(indices, common_i))


def nonzero(input, *, as_tuple: bool = False):
    xp = input._device.xp
    idx = xp.nonzero(input._data)
    if as_tuple:
        return tuple(Tensor._make(i.astype(np.int64), input._device) for i in idx)
    return Tensor._make(xp.stack(idx, axis=1).astype(np.int64) if idx else xp.zeros((0, 0), np.int64),
                        input._device)


def index_add(input, dim: int, index, source, *, alpha=1):
    d = wrap_dim(dim, input.ndim)
    shape = [1] * input.ndim
    shape[d] = index.shape[0]
    from .shape import expand, reshape
    full = expand(reshape(index, shape), source.shape)
    return scatter_add(input, d, full, source * alpha if alpha != 1 else source)


bind(__getitem__=getitem, __setitem__=setitem, gather=gather, scatter=scatter, scatter_add=scatter_add,
     index_select=index_select, masked_fill=masked_fill, masked_select=masked_select,
     take_along_dim=take_along_dim, nonzero=nonzero, index_add=index_add,
     masked_fill_=lambda self, mask, value: self._inplace(masked_fill, mask, value),
     scatter_=lambda self, dim, index, src=None, **kw: self._inplace(scatter, dim, index, src, **kw),
     scatter_add_=lambda self, dim, index, src: self._inplace(scatter_add, dim, index, src),
     index_add_=lambda self, dim, index, source, **kw: self._inplace(index_add, dim, index, source, **kw))
