"""Helpers shared by the op families: operand preparation (dtype promotion, devices) and the one
place where a broadcast gradient is reduced back to its input's shape."""
from __future__ import annotations

import numbers

import numpy as _np

from .. import dtypes
from ..backend import ieee  # noqa: F401 (the ops import it from here)
from ..tensor import Tensor, as_array


def bind(**methods) -> None:
    """Attach functions to Tensor as methods (each op is defined once, in its ops module)."""
    for name, fn in methods.items():
        setattr(Tensor, name, fn)


def is_scalar(x) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, Tensor)


def device_of(*xs):
    """The device the op runs on; mixing devices is an error, except 0-d CPU tensors (as in PyTorch)."""
    dev = None
    for x in xs:
        if isinstance(x, Tensor) and not (x._device.type == "cpu" and x.ndim == 0 and dev is not None):
            if dev is None:
                dev = x._device
            elif x._device is not dev and not (x._device.type == "cpu" and x.ndim == 0):
                raise RuntimeError("Expected all tensors to be on the same device, but found at least two "
                                   f"devices, {dev} and {x._device}! Move them with .to(device) first.")
    return dev


def operands(*xs, dtype: dtypes.dtype | None = None):
    """Cast operands to one dtype (PyTorch's promotion unless ``dtype`` is given) on one device.
    Tensors are cast with the differentiable ``cast`` (so gradients come back in their own dtype);
    Python numbers become numpy scalars of that dtype, which keeps numpy from promoting further."""
    if dtype is None and _already_uniform(xs):
        return xs
    from .shape import cast, to_device_op
    dt = dtype or dtypes.result_type(*(x for x in xs if x is not None))
    dev = device_of(*xs)
    out = []
    for x in xs:
        if isinstance(x, Tensor):
            if x._device is not dev:
                x = to_device_op(x, dev)
            if x._data.dtype != dt.np:
                x = cast(x, dt)
        elif x is not None:
            if not is_scalar(x):
                raise TypeError(f"expected a Tensor or a number, got {type(x).__name__}")
            x = dt.np.type(x)
        out.append(x)
    return out


def _already_uniform(xs) -> bool:
    """The common case needs no conversion: tensors of one dtype on one device, with Python numbers
    that numpy (NEP 50) already treats as PyTorch does (an int with any tensor, a float with a float
    tensor: the tensor's dtype wins)."""
    first = xs[0]
    if not isinstance(first, Tensor):
        return False
    npd, dev = first._data.dtype, first._device
    for x in xs[1:]:
        if isinstance(x, Tensor):
            if x._data.dtype != npd or x._device is not dev:
                return False
        elif type(x) is float:
            if npd.kind != "f":
                return False
        elif type(x) is not int or npd.kind not in "fi" or not -2**31 <= x < 2**31:
            return False
    return True


def keep_where(xp, g, drop, out=None):
    """``g`` where not ``drop``, exact 0 where ``drop`` (even where g is inf or nan), as
    ``where(drop, 0, g)`` but several times faster: numpy's where is slow on irregular masks, and a
    multiply by the mask would turn inf * 0 into nan. Instead the bits of g are and-ed with a mask of
    all ones or all zeros. ``drop`` is a fresh bool array of g's shape, consumed (overwritten); the
    result goes to ``out`` when given."""
    mask = drop.view(xp.int8)
    xp.subtract(mask, 1, out=mask)  # 0 where dropped, -1 (every bit set) where kept
    bits = g.view(xp.dtype(f"i{g.dtype.itemsize}"))
    if out is None:
        return xp.bitwise_and(bits, mask).view(g.dtype)
    xp.bitwise_and(bits, mask, out=out.view(bits.dtype))
    return out


def as_tensor_like(x, like: Tensor) -> Tensor:
    """A constant operand (array or list) turned into a tensor on ``like``'s device."""
    if isinstance(x, Tensor):
        return x
    return Tensor._make(as_array(x, None, like._device), like._device)


def float_operand(x: Tensor) -> Tensor:
    """Integer and bool tensors become the default float dtype for float-valued math (exp, sqrt, ...)."""
    if x._data.dtype.kind != "f":
        from .shape import cast
        return cast(x, dtypes.get_default_dtype())
    return x


def sum_to(grad: Tensor, shape) -> Tensor:
    """Reduce a broadcast gradient to ``shape``: sum over the leading dims broadcasting added and the
    dims that were 1 in the input. The single unbroadcasting step of every op's backward."""
    shape = tuple(shape)
    if grad._data.shape == shape:
        return grad
    from .reduce import SumTo
    return SumTo.apply(grad, shape=shape)


def normalize_dims(dim, ndim: int) -> tuple:
    """``dim`` (None, int or sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    if type(dim) is int and -ndim <= dim < ndim:  # the common case, without the checks below
        return (dim % ndim,)
    if isinstance(dim, numbers.Integral):
        dim = (dim,)
    n = max(ndim, 1)
    out = []
    for d in dim:
        if not -n <= d < n:
            raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {d})")
        out.append(d % n if ndim else 0)
    if len(set(out)) != len(out):
        raise RuntimeError(f"dim {tuple(dim)} appears multiple times in the list of dims")
    return tuple(sorted(out)) if ndim else ()


def wrap_dim(dim: int, ndim: int) -> int:
    if type(dim) is int and -ndim <= dim < ndim:
        return dim % ndim
    return normalize_dims(dim, ndim)[0] if ndim else 0
