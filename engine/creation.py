"""Tensor creation with PyTorch's signatures and dtype inference."""
from __future__ import annotations

import numbers

import numpy as np

from . import dtypes
from .backend import CPU, device as Device, to_device
from .random import generator_for
from .tensor import Tensor, _size_args, as_array


def _finish(arr, dev, requires_grad: bool) -> Tensor:
    t = Tensor._make(to_device(arr, dev), dev)
    return t.requires_grad_() if requires_grad else t


def _dev(device) -> Device:
    return CPU if device is None else Device(device)


def _float_dtype(dtype) -> dtypes.dtype:
    return dtypes.get_default_dtype() if dtype is None else dtypes.as_dtype(dtype)


def tensor(data, dtype=None, device=None, requires_grad: bool = False, pin_memory: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (numbers, nested sequences, numpy arrays, tensors)."""
    if isinstance(data, Tensor) and device is None:
        device = data.device
    arr = as_array(data, dtype, device)
    if isinstance(data, (Tensor, np.ndarray)) or hasattr(data, "__cuda_array_interface__"):
        arr = arr.copy()
    t = Tensor._make(arr)
    return t.requires_grad_() if requires_grad else t


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with ``data`` when no conversion is needed."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype)
    return Tensor._make(as_array(data, dtype, device))


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A tensor sharing ``ndarray``'s memory (strided arrays included)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    dtypes.from_numpy_dtype(ndarray.dtype)  # refuses unsupported dtypes with a clear message
    return Tensor._make(ndarray, CPU)


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    size = _size_args((size,) if isinstance(size, numbers.Integral) else (size,))
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(fill_value)
    dev = _dev(device)
    return _finish(dev.xp.full(size, fill_value, dtype=dt.np), dev, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_size_args(size), 0, dtype=_float_dtype(dtype), device=device, requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_size_args(size), 1, dtype=_float_dtype(dtype), device=device, requires_grad=requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dev, dt = _dev(device), _float_dtype(dtype)
    return _finish(dev.xp.empty(_size_args(size), dtype=dt.np), dev, requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(tuple(input.shape), fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def zeros_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full_like(input, 0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full_like(input, 1, dtype=dtype, device=device, requires_grad=requires_grad)


empty_like = zeros_like


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``arange(end)``, ``arange(start, end[, step])``: int64 when every bound is an integer, else the
    default float dtype. Computed as PyTorch does: ``start + i * step`` in float64 for float results;
    for integer results the bounds are first truncated to integers."""
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    for v in vals:
        if not isinstance(v, numbers.Real):
            raise TypeError(f"arange: start, end and step must be numbers, got {type(v).__name__} {v!r}")
    if dtype is None:
        dt = dtypes.int64 if all(isinstance(v, numbers.Integral) for v in vals) else dtypes.get_default_dtype()
    else:
        dt = dtypes.as_dtype(dtype)
    if dt is dtypes.bool_:
        raise RuntimeError("arange: dtype bool is not supported; build an integer range and compare it")
    if not all(np.isfinite(float(v)) for v in vals[:2]):
        raise RuntimeError(f"arange: unsupported range: {vals[0]} -> {vals[1]} (bounds must be finite)")
    if dt.is_floating_point:
        xstart, xend, xstep = (float(v) for v in vals)
    else:
        xstart, xend, xstep = (int(v) for v in vals)  # truncated toward zero, as PyTorch
    if xstep == 0:
        raise RuntimeError("arange: step must be nonzero")
    if not ((xstep > 0 and xend >= xstart) or (xstep < 0 and xend <= xstart)):
        raise RuntimeError(f"arange: upper bound and lower bound inconsistent with step sign "
                           f"(start={vals[0]}, end={vals[1]}, step={vals[2]})")
    if dt is dtypes.int64:
        sgn = 1 if xstep > 0 else -1
        n = (xend - xstart + xstep - sgn) // xstep
    else:
        n = int(np.ceil((float(vals[1]) - float(vals[0])) / float(vals[2])))
    dev = _dev(device)
    if dt.is_floating_point:
        arr = (xstart + np.arange(n, dtype=np.float64) * xstep).astype(dt.np)
    else:
        arr = (xstart + np.arange(n, dtype=np.int64) * xstep).astype(dt.np)
    return _finish(arr, dev, requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """``steps`` values from ``start`` to ``end``, computed as PyTorch's CPU kernel does (in the result
    dtype: the first half as start + i*step, the second as end - (steps-1-i)*step, so both ends are
    exact); values agree with PyTorch's to the last bit or one rounding (its kernel may fuse a
    multiply-add)."""
    steps = int(steps)
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    start, end = (v.item() if isinstance(v, Tensor) else v for v in (start, end))
    dt, dev = _float_dtype(dtype), _dev(device)
    idx = np.arange(steps, dtype=np.int64)
    if dt.is_floating_point:
        x0, x1 = dt.np.type(start), dt.np.type(end)
        step = (x1 - x0) / dt.np.type(max(steps - 1, 1))
        i = idx.astype(dt.np)
        back = (steps - 1 - idx).astype(dt.np)
    else:
        x0, x1 = float(int(start)), float(int(end))
        step = (x1 - x0) / max(steps - 1, 1)
        i, back = idx.astype(np.float64), (steps - 1 - idx).astype(np.float64)
    arr = np.where(idx < steps // 2, x0 + step * i, x1 - step * back)
    if steps == 1:
        arr = np.full(1, x0)
    return _finish(np.asarray(arr).astype(dt.np), dev, requires_grad)


def logspace(start, end, steps: int, base: float = 10.0, *, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    dt, dev = _float_dtype(dtype), _dev(device)
    return _finish(np.logspace(float(start), float(end), steps, base=base).astype(dt.np), dev, requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    for name, v in (("n", n), ("m", m)):
        if v is not None and v < 0:
            raise RuntimeError(f"eye: {name} must be greater or equal to 0, got {v}")
    dt, dev = _float_dtype(dtype), _dev(device)
    return _finish(dev.xp.eye(n, n if m is None else m, dtype=dt.np), dev, requires_grad)


# ---- random -------------------------------------------------------------------------------------

def _random_float_dtype(fn: str, dtype) -> dtypes.dtype:
    dt = _float_dtype(dtype)
    if not dt.is_floating_point:
        raise RuntimeError(f"{fn}: dtype {dt} is not a floating point type; {fn} draws real numbers "
                           "(use randint for integers, or cast the result)")
    return dt


def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = _random_float_dtype("rand", dtype), _dev(device)
    arr = generator_for(dev, generator).uniform(_size_args(size), dt.np)
    return _finish(arr, dev, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = _random_float_dtype("randn", dtype), _dev(device)
    arr = generator_for(dev, generator).normal(_size_args(size), dt.np)
    return _finish(arr, dev, requires_grad)


def randint(low, high=None, size=None, *, generator=None, dtype=None, device=None,
            requires_grad: bool = False) -> Tensor:
    if size is None and isinstance(high, (tuple, list)):  # randint(high, size)
        low, high, size = 0, low, high
    elif high is None and size is not None:  # randint(high, size=size)
        low, high = 0, low
    if high is None or size is None:
        raise TypeError("randint() needs high and size: randint(high, size) or randint(low, high, size)")
    low, high = (v.item() if isinstance(v, Tensor) else v for v in (low, high))
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    dt, dev = dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64, _dev(device)
    arr = generator_for(dev, generator).integers(low, high, _size_args((size,)), dt.np)
    return _finish(arr, dev, requires_grad)


def randperm(n: int, *, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dt, dev = dtypes.as_dtype(dtype) if dtype is not None else dtypes.int64, _dev(device)
    if n < 0:
        raise RuntimeError(f"randperm: n must be non-negative, got {n}")
    # drawn on the device's generator, like every random creator (a generator for another device is
    # refused, not silently replaced by the default one)
    arr = generator_for(dev, generator).permutation(n)
    return _finish(arr.astype(dt.np), dev, requires_grad)


def rand_like(input, *, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return rand(tuple(input.shape), generator=generator, dtype=dtype or input.dtype,
                device=device or input.device, requires_grad=requires_grad)


def randn_like(input, *, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return randn(tuple(input.shape), generator=generator, dtype=dtype or input.dtype,
                 device=device or input.device, requires_grad=requires_grad)


def randint_like(input, low, high=None, *, dtype=None, device=None) -> Tensor:
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype, device=device or input.device)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None) -> Tensor:
    if size is None:
        raise TypeError("normal(): pass size= (tensor means/stds are not supported)")
    return randn(size, generator=generator, dtype=dtype, device=device) * std + mean
