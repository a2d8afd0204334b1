"""Shape and layout ops, dtype and device moves. Views (reshape, permute, expand, ...) share memory
and the version counter with their input, as in PyTorch."""
from __future__ import annotations

import builtins
import numbers

from .. import dtypes
from ..autograd.graph import Op
from ..backend import device as Device, to_device
from ..tensor import Tensor, _size_args
from ._util import bind, ieee, normalize_dims, operands, sum_to, wrap_dim


class Cast(Op):
    def forward(self, x):
        self.src = dtypes.from_numpy_dtype(x.dtype)
        with ieee(self.xp):  # float32 1e5 -> float16 inf, as in PyTorch: no warning
            return x.astype(self.dtype.np)

    def backward(self, g):
        return cast(g, self.src) if self.src.is_floating_point else None


def cast(x: Tensor, dtype: dtypes.dtype) -> Tensor:
    return Cast.apply(x, dtype=dtype) if x._data.dtype != dtype.np else x


class ToDevice(Op):
    changes_device = True

    def forward(self, x):
        return to_device(x, self.target)

    def backward(self, g):
        return to_device_op(g, self.device)


def to_device_op(x: Tensor, dev: Device) -> Tensor:
    return ToDevice.apply(x, target=dev)


class Clone(Op):
    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


def clone(input, *, memory_format=None):
    return Clone.apply(input)


def contiguous(input, memory_format=None):
    return input if input._data.flags.c_contiguous else clone(input)


class Reshape(Op):
    is_view = True

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, g):
        return reshape(g, self.in_shape)


def _infer_shape(shape, numel: int, op: str) -> tuple:
    shape = tuple(shape)
    if builtins.sum(1 for s in shape if s == -1) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred (-1), got shape {list(shape)}")
    known = 1
    for s in shape:
        if s != -1:
            if s < 0:
                raise RuntimeError(f"{op}: invalid shape dimension {s} in {list(shape)}")
            known *= s
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(f"{op}: shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _shape_args(shape) -> tuple:
    """The sizes of reshape/view/expand: ``f(2, -1)``, ``f((2, -1))`` or ``f([2, -1])``. Unlike creation's
    sizes they may hold -1, which the op itself checks."""
    out = []
    for s in _flat_sizes(shape):
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"size must be a sequence of ints, got {type(s).__name__} {s!r}")
        out.append(int(s))
    return tuple(out)


def reshape(input, *shape):
    shape = _infer_shape(_shape_args(shape), input._data.size, "reshape")
    if shape == input._data.shape:
        return Reshape.apply(input, shape=shape) if input.requires_grad else _alias(input)
    return Reshape.apply(input, shape=shape)


def _alias(x: Tensor) -> Tensor:
    """A new tensor object on the same storage (a view with no change of shape)."""
    return Reshape.apply(x, shape=x._data.shape)


def view(input, *shape):
    if len(shape) == 1 and isinstance(shape[0], (dtypes.dtype,)):
        raise RuntimeError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(_shape_args(shape), input._data.size, "view")
    if not input._data.flags.c_contiguous and shape != input._data.shape:
        probe = input._data.view()
        try:
            probe.shape = shape  # numpy refuses exactly when a copy would be needed
        except AttributeError:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at least "
                               "one dimension spans across two contiguous subspaces). Use .reshape(...) "
                               "instead.") from None
    return Reshape.apply(input, shape=shape)


def view_as(input, other):
    return view(input, other.shape)


def reshape_as(input, other):
    return reshape(input, other.shape)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = wrap_dim(start_dim, input.ndim), wrap_dim(end_dim, input.ndim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input.shape
    return reshape(input, tuple(shape[:s]) + (-1,) + tuple(shape[e + 1:]) if shape.numel() else
                   tuple(shape[:s]) + (int(_prod(shape[s:e + 1])),) + tuple(shape[e + 1:]))


def _prod(xs):
    n = 1
    for x in xs:
        n *= x
    return n


def unflatten(input, dim: int, sizes):
    d = wrap_dim(dim, input.ndim)
    sizes = _infer_shape(sizes, input.shape[d], "unflatten")
    return reshape(input, tuple(input.shape[:d]) + tuple(sizes) + tuple(input.shape[d + 1:]))


def squeeze(input, dim=None):
    if dim is None:
        shape = tuple(s for s in input.shape if s != 1)
    else:
        dims = normalize_dims(dim, input.ndim)
        shape = tuple(s for i, s in enumerate(input.shape) if not (i in dims and s == 1))
    return reshape(input, shape)


def unsqueeze(input, dim: int):
    d = wrap_dim(dim, input.ndim + 1)
    shape = tuple(input.shape)
    return reshape(input, shape[:d] + (1,) + shape[d:])


class Permute(Op):
    is_view = True

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, g):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return permute(g, inverse)


def permute(input, *dims):
    dims = _shape_args(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute: number of dims don't match: input has {input.ndim} dims, got {len(dims)}")
    dims = tuple(wrap_dim(d, input.ndim) for d in dims)
    if sorted(dims) != list(range(input.ndim)):
        raise RuntimeError(f"permute: dims {dims} must be a permutation of 0..{input.ndim - 1}")
    return Permute.apply(input, dims=dims)


def transpose(input, dim0: int, dim1: int):
    if input.ndim == 0:
        return _alias(input)
    d0, d1 = wrap_dim(dim0, input.ndim), wrap_dim(dim1, input.ndim)
    dims = list(range(input.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(input, dims=tuple(dims))


swapaxes = swapdims = transpose


def t(input):
    if input._data.ndim == 2:  # (the common case first: every h @ W.T)
        return Permute.apply(input, dims=(1, 0))
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D; "
                           "use .transpose(dim0, dim1) or .mT")
    return _alias(input)  # 0-D and 1-D: t() is the tensor itself


def movedim(input, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    src = [wrap_dim(s, input.ndim) for s in src]
    dst = [wrap_dim(d, input.ndim) for d in dst]
    order = [i for i in range(input.ndim) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, order)


class Expand(Op):
    is_view = True

    def forward(self, x):
        self.in_shape = x.shape
        return self.xp.broadcast_to(x, self.shape)

    def backward(self, g):
        return sum_to(g, self.in_shape)


def expand(input, *sizes):
    sizes = _shape_args(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
                           f"the number of dimensions in the tensor ({input.ndim})")
    lead = len(sizes) - input.ndim
    shape = []
    for i, s in enumerate(sizes):
        have = input.shape[i - lead] if i >= lead else None
        if s < -1:
            raise RuntimeError(f"expand: invalid size {s} in {list(sizes)}; sizes must be >= 0, or -1 to keep one")
        if s == -1:
            if have is None:
                raise RuntimeError("expand: -1 is not allowed in a leading, non-existing dimension")
            s = have
        elif have is not None and have != s and have != 1:
            raise RuntimeError(f"expand: the expanded size of the tensor ({s}) must match the existing size "
                               f"({have}) at non-singleton dimension {i}. Target sizes: {list(sizes)}. "
                               f"Tensor sizes: {list(input.shape)}")
        shape.append(s)
    shape = tuple(shape)
    if shape == tuple(input.shape):
        return _alias(input)
    return Expand.apply(input, shape=shape)


def _flat_sizes(sizes):
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        return tuple(sizes[0])
    return tuple(sizes)


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, shape):
    return expand(input, shape)


class Repeat(Op):
    def forward(self, x):
        self.in_shape = x.shape
        lead = len(self.repeats) - x.ndim
        return self.xp.tile(x.reshape((1,) * lead + x.shape), self.repeats)

    def backward(self, g):
        # view each repeated dim d as (r_d, s_d) and sum over the r_d copies
        lead = len(self.repeats) - len(self.in_shape)
        full = (1,) * lead + tuple(self.in_shape)
        split = []
        for r, s in zip(self.repeats, full):
            split += [r, s]
        from .reduce import sum as _sum
        g = _sum(reshape(g, split), dim=tuple(range(0, 2 * len(full), 2)))
        return reshape(g, self.in_shape)


def repeat(input, *repeats):
    repeats = _size_args(repeats)
    if len(repeats) < input.ndim:
        raise RuntimeError("repeat: number of repeat dims can not be smaller than number of tensor dims")
    return Repeat.apply(input, repeats=repeats)


class Cat(Op):
    def forward(self, *xs):
        self.sizes = [x.shape[self.dim] for x in xs]
        return self.xp.concatenate(xs, axis=self.dim)

    def backward(self, g):
        out, start = [], 0
        for i, n in enumerate(self.sizes):
            out.append(narrow(g, self.dim, start, n) if self.needs_grad(i) else None)
            start += n
        return tuple(out)


def cat(tensors, dim: int = 0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    # PyTorch skips 1-d empty tensors (legacy behaviour) and promotes dtypes
    tensors = [x for x in tensors if not (x.ndim == 1 and x.shape[0] == 0)] or tensors[:1]
    ref = tensors[0]
    d = wrap_dim(dim, ref.ndim)
    for i, x in enumerate(tensors):
        if x.ndim != ref.ndim:
            raise RuntimeError(f"cat(): tensors must have the same number of dimensions: got {ref.ndim} "
                               f"and {x.ndim} (tensor {i})")
        for k in range(ref.ndim):
            if k != d and x.shape[k] != ref.shape[k]:
                raise RuntimeError(f"cat(): sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{ref.shape[k]} but got size {x.shape[k]} for tensor number {i} in the list.")
    return Cat.apply(*operands(*tensors), dim=d)


concat = concatenate = cat


def stack(tensors, dim: int = 0):
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, x in enumerate(tensors):
        if tuple(x.shape) != tuple(tensors[0].shape):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} at "
                               f"entry 0 and {list(x.shape)} at entry {i}")
    d = wrap_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(x, d) for x in tensors], d)


def narrow(input, dim: int, start: int, length: int):
    d = wrap_dim(dim, input.ndim)
    if start < 0:
        start += input.shape[d]
    if not (0 <= start and start + length <= input.shape[d] and length >= 0):
        raise RuntimeError(f"narrow: start ({start}) + length ({length}) exceeds dimension size "
                           f"({input.shape[d]}) of dim {d}")
    idx = (slice(None),) * d + (slice(start, start + length),)
    return input[idx]


def split(input, split_size_or_sections, dim: int = 0):
    d = wrap_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        step = int(split_size_or_sections)
        if step <= 0 and n:
            raise RuntimeError(f"split: split_size must be positive, got {step}")
        sizes = [builtins.min(step, n - s) for s in range(0, n, step)] if n else [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's "
                               f"size at dimension {d}), but got split_sizes={sizes}")
    out, start = [], 0
    for s in sizes:
        out.append(narrow(input, d, start, s))
        start += s
    return tuple(out)


def chunk(input, chunks: int, dim: int = 0):
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = input.shape[wrap_dim(dim, input.ndim)]
    step = -(-n // chunks) if n else 1
    return split(input, step, dim)


def unbind(input, dim: int = 0):
    d = wrap_dim(dim, input.ndim)
    return tuple(input[(slice(None),) * d + (i,)] for i in range(input.shape[d]))


class Flip(Op):
    def forward(self, x):
        return self.xp.flip(x, axis=self.dims).copy()

    def backward(self, g):
        return flip(g, self.dims)


def flip(input, dims):
    return Flip.apply(input, dims=normalize_dims(dims, input.ndim))


class Roll(Op):
    def forward(self, x):
        return self.xp.roll(x, self.shifts, axis=self.dims)

    def backward(self, g):
        neg = tuple(-s for s in self.shifts) if isinstance(self.shifts, tuple) else -self.shifts
        return roll(g, neg, self.dims)


def roll(input, shifts, dims=None):
    if dims is None:
        return reshape(Roll.apply(flatten(input), shifts=shifts, dims=0), input.shape)
    if isinstance(shifts, int):
        shifts = (shifts,)
    if isinstance(dims, int):
        dims = (dims,)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: shifts and dims must align. shifts: {len(shifts)}, dims: {len(dims)}")
    return Roll.apply(input, shifts=tuple(shifts), dims=tuple(wrap_dim(d, input.ndim) for d in dims))


class TriMask(Op):
    """tril / triu: the gradient passes through the kept triangle."""

    def forward(self, x):
        return (self.xp.tril if self.lower else self.xp.triu)(x, self.diagonal)

    def backward(self, g):
        return TriMask.apply(g, lower=self.lower, diagonal=self.diagonal)


def tril(input, diagonal: int = 0):
    if input.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return TriMask.apply(input, lower=True, diagonal=diagonal)


def triu(input, diagonal: int = 0):
    if input.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return TriMask.apply(input, lower=False, diagonal=diagonal)


def _T(self):
    if self._data.ndim > 2:
        return permute(self, tuple(reversed(range(self.ndim))))
    return t(self)


def _mT(self):
    if self.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. Got {self.ndim}-D tensor.")
    return transpose(self, -2, -1)


bind(reshape=lambda self, *shape: reshape(self, *shape), view=view, view_as=view_as, reshape_as=reshape_as,
     flatten=flatten, unflatten=unflatten, squeeze=squeeze, unsqueeze=unsqueeze, permute=permute,
     transpose=transpose, swapaxes=transpose, swapdims=transpose, t=t, movedim=movedim, expand=expand,
     expand_as=expand_as, broadcast_to=broadcast_to, repeat=repeat, narrow=narrow,
     split=split, chunk=chunk, unbind=unbind, flip=flip, roll=roll, tril=tril, triu=triu,
     clone=clone, contiguous=contiguous, T=property(_T), mT=property(_mT))
