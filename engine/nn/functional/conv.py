"""Convolution and pooling functions (NCL / NCHW, batched or unbatched), on the ops of engine/ops/conv.py.

The 1-D functions give their input a unit height and run the 2-D ops. Each public function has a private
twin taking ``who``: the name that starts error messages, a string ("conv2d") or the layer calling it, so
that a layer's shape errors name the layer.
"""
from __future__ import annotations

import numbers

import numpy as np

from ...ops._util import device_of
from ...ops.conv import (Col2Im, Convolution, ConvolutionTranspose, Geometry, Im2Col, MaxPool2DWithIndices,
                         AvgPool2D, max_windows)
from ...ops.linalg import einsum
from ...tensor import Tensor

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "unfold", "fold", "max_pool1d",
           "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d"]

_SPATIAL = {1: "L", 2: "H, W"}


def _who(who) -> str:
    return who if isinstance(who, str) else f"{who._get_name()}({who.extra_repr()})"


def _ntuple(value, n: int, what: str, who) -> tuple:
    """An int or a sequence of 1 or ``n`` ints as an ``n``-tuple."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),) * n
    try:
        values = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{_who(who)}: {what} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise RuntimeError(f"{_who(who)}: expected {what} to be a single integer value or a list of {n} values, "
                           f"got {what}={list(values)}")
    return values


def _check_input(input, nd: int, who, channels=None) -> None:
    """``input`` is (N, C, *spatial) or (C, *spatial), with ``channels`` channels when given."""
    c = "C" if channels is None else channels
    if not isinstance(input, Tensor):
        raise TypeError(f"{_who(who)}: expected a Tensor input, got {type(input).__name__}")
    if input.ndim not in (nd + 1, nd + 2) or (channels is not None and input.shape[-nd - 1] != channels):
        raise RuntimeError(f"{_who(who)}: expected input of shape (N, {c}, {_SPATIAL[nd]}) or ({c}, "
                           f"{_SPATIAL[nd]}), got {tuple(input.shape)}")


def _floats(who, **tensors) -> None:
    """Convolutions need one floating dtype across input, weight and bias (PyTorch does not promote)."""
    given = {k: t for k, t in tensors.items() if t is not None}
    dts = {t.dtype for t in given.values()}
    if len(dts) > 1:
        listed = ", ".join(f"{k} {t.dtype.name}" for k, t in given.items())
        raise RuntimeError(f"{_who(who)}: input, weight and bias must have the same dtype, got {listed}; "
                           "convert with .to(dtype) (e.g. model.double() or x.float())")
    if not next(iter(dts)).is_floating_point:
        raise RuntimeError(f"{_who(who)}: expected floating point tensors, got {next(iter(dts)).name}")
    device_of(*given.values())


def _as_2d(x: Tensor, nd: int) -> tuple:
    """(x as a batched 4-D tensor, a function undoing that on the result)."""
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    if nd == 1:
        x = x.unsqueeze(2)

    def back(y):
        if nd == 1:
            y = y.squeeze(2)
        return y.squeeze(0) if unbatched else y
    return x, back


def _lift(nd: int, kernel, stride, padding, dilation, groups: int = 1) -> Geometry:
    """A Geometry for the 2-D ops; 1-D parameters get a unit height in front."""
    if nd == 1:
        kernel, stride, padding, dilation = (1,) + kernel, (1,) + stride, ((0, 0),) + padding, (1,) + dilation
    return Geometry(tuple(kernel), tuple(stride), tuple(padding), tuple(dilation), groups)


def _sizes(xs) -> str:
    return " x ".join(str(int(v)) for v in xs)


# ---- convolution -----------------------------------------------------------------------------------

def _conv_padding(padding, kernel, stride, dilation, nd: int, who) -> tuple:
    """Per-dim (before, after) padding from an int, a tuple, 'valid' or 'same' (extra on the far side,
    as PyTorch pads when the total is odd)."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{_who(who)}: padding='same' is not supported for strided convolutions; "
                                 "use stride=1 or give the padding as numbers")
            return tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation))
        raise ValueError(f"{_who(who)}: invalid padding string {padding!r}, should be one of 'valid', 'same'")
    pads = _ntuple(padding, nd, "padding", who)
    if any(p < 0 for p in pads):
        raise RuntimeError(f"{_who(who)}: negative padding is not supported, got padding={pads}")
    return tuple((p, p) for p in pads)


def _check_stride_dilation(stride, dilation, who) -> None:
    if any(s <= 0 for s in stride):
        raise RuntimeError(f"{_who(who)}: non-positive stride is not supported, got stride={stride}")
    if any(d <= 0 for d in dilation):
        raise RuntimeError(f"{_who(who)}: dilation should be greater than zero, got dilation={dilation}")


def _check_weight(weight, bias, nd: int, groups: int, layout: str, who) -> None:
    if not isinstance(weight, Tensor) or weight.ndim != nd + 2:
        shape = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise RuntimeError(f"{_who(who)}: expected a {nd + 2}-D weight ({layout}, "
                           f"{', '.join('k' + c for c in _SPATIAL[nd].lower().split(', '))}), got {shape}")
    if groups <= 0:
        raise RuntimeError(f"{_who(who)}: groups must be a positive integer, got {groups}")
    if weight.shape[0] % groups:
        raise RuntimeError(f"{_who(who)}: given groups={groups}, expected weight to be divisible by {groups} "
                           f"at dimension 0, but got weight of size {list(weight.shape)}")
    n_out = weight.shape[0] if layout.startswith("out") else weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise RuntimeError(f"{_who(who)}: expected bias of shape ({n_out},), got {tuple(bias.shape)}")


def _conv(input, weight, bias, stride, padding, dilation, groups: int, nd: int, who):
    _check_weight(weight, bias, nd, groups, "out_channels, in_channels/groups", who)
    _check_input(input, nd, who, channels=weight.shape[1] * groups)
    _floats(who, input=input, weight=weight, bias=bias)
    kernel = tuple(weight.shape[2:])
    stride, dilation = _ntuple(stride, nd, "stride", who), _ntuple(dilation, nd, "dilation", who)
    _check_stride_dilation(stride, dilation, who)
    pads = _conv_padding(padding, kernel, stride, dilation, nd, who)
    size = tuple(input.shape[-nd:])
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(size, pads))
    extent = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if any(p < e for p, e in zip(padded, extent)):
        raise RuntimeError(f"{_who(who)}: calculated padded input size per channel: ({_sizes(padded)}). "
                           f"Kernel size: ({_sizes(extent)}). Kernel size can't be greater than actual input "
                           f"size (input of shape {tuple(input.shape)})")
    x, back = _as_2d(input, nd)
    w = weight.unsqueeze(2) if nd == 1 else weight
    geo = _lift(nd, kernel, stride, pads, dilation, groups)
    return back(Convolution.apply(x, w, bias, geo=geo))


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """1-D cross-correlation over (N, C, L) or (C, L); weight (out_channels, in_channels/groups, k)."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """2-D cross-correlation over (N, C, H, W) or (C, H, W); weight (out_channels, in_channels/groups,
    kh, kw); padding an int, a pair, 'valid' or 'same'."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups: int, dilation, nd: int, who):
    _check_weight(weight, bias, nd, groups, "in_channels, out_channels/groups", who)
    _check_input(input, nd, who, channels=weight.shape[0])
    _floats(who, input=input, weight=weight, bias=bias)
    kernel = tuple(weight.shape[2:])
    stride, dilation = _ntuple(stride, nd, "stride", who), _ntuple(dilation, nd, "dilation", who)
    _check_stride_dilation(stride, dilation, who)
    if isinstance(padding, str):
        raise ValueError(f"{_who(who)}: padding must be an int or a tuple of ints for a transposed "
                         f"convolution, got {padding!r}")
    pads = _conv_padding(padding, kernel, stride, dilation, nd, who)
    out_pad = _ntuple(output_padding, nd, "output_padding", who)
    if any(op < 0 or (op >= s and op >= d) for op, s, d in zip(out_pad, stride, dilation)):
        raise RuntimeError(f"{_who(who)}: output padding must be smaller than either stride or dilation, but "
                           f"got output_padding={out_pad}, stride={stride}, dilation={dilation}")
    size_in = tuple(input.shape[-nd:])
    size = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, (p, _), d, k, op in
                 zip(size_in, stride, pads, dilation, kernel, out_pad))
    if any(n <= 0 for n in size):
        raise RuntimeError(f"{_who(who)}: given input size per channel: ({_sizes(size_in)}). Calculated output "
                           f"size per channel: ({_sizes(size)}). Output size is too small")
    x, back = _as_2d(input, nd)
    w = weight.unsqueeze(2) if nd == 1 else weight
    geo = _lift(nd, kernel, stride, pads, dilation, groups)
    return back(ConvolutionTranspose.apply(x, w, bias, geo=geo, size=(1,) * (2 - nd) + size))


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1):
    """The adjoint of conv1d in its input; weight (in_channels, out_channels/groups, k)."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                           "conv_transpose1d")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1):
    """The adjoint of conv2d in its input ("deconvolution"); weight (in_channels, out_channels/groups, kh, kw)."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                           "conv_transpose2d")


def _block_geometry(kernel_size, dilation, padding, stride, who) -> Geometry:
    kernel = _ntuple(kernel_size, 2, "kernel_size", who)
    stride, dilation = _ntuple(stride, 2, "stride", who), _ntuple(dilation, 2, "dilation", who)
    _check_stride_dilation(stride, dilation, who)
    pads = _conv_padding(padding, kernel, stride, dilation, 2, who)
    if any(k <= 0 for k in kernel):
        raise RuntimeError(f"{_who(who)}: kernel size should be greater than zero, got {kernel}")
    return Geometry(kernel, stride, pads, dilation)


def _check_blocks(geo: Geometry, size, who) -> tuple:
    out = geo.out_size(size)
    if any(o <= 0 for o in out):
        raise RuntimeError(f"{_who(who)}: given input size {tuple(size)}, kernel_size {geo.kernel}, dilation "
                           f"{geo.dilation}, padding {tuple(p for p, _ in geo.padding)} and stride {geo.stride}, "
                           f"the calculated number of sliding blocks is {out}, which is too small (non-positive)")
    return out


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """The sliding blocks of (N, C, H, W) (or (C, H, W)) as columns: (N, C*kh*kw, L)."""
    if not isinstance(input, Tensor) or input.ndim not in (3, 4):
        raise RuntimeError(f"unfold: only 3-D (C, H, W) or 4-D (N, C, H, W) inputs are supported, got shape "
                           f"{tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__}")
    geo = _block_geometry(kernel_size, dilation, padding, stride, "unfold")
    _check_blocks(geo, tuple(input.shape[-2:]), "unfold")
    x = input.unsqueeze(0) if input.ndim == 3 else input
    y = Im2Col.apply(x, geo=geo)
    return y.squeeze(0) if input.ndim == 3 else y


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """The adjoint of unfold: columns (N, C*kh*kw, L) (or (C*kh*kw, L)) summed into (N, C, *output_size)."""
    geo = _block_geometry(kernel_size, dilation, padding, stride, "fold")
    size = _ntuple(output_size, 2, "output_size", "fold")
    k = geo.kernel[0] * geo.kernel[1]
    if not isinstance(input, Tensor) or input.ndim not in (2, 3) or input.shape[-2] % k:
        raise RuntimeError(f"fold: expected input of shape (N, C * {k}, L) or (C * {k}, L) (the channel dim "
                           f"divisible by kernel_size product {k}), got "
                           f"{tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__}")
    out = _check_blocks(geo, size, "fold")
    if input.shape[-1] != out[0] * out[1]:
        raise RuntimeError(f"fold: given output_size={size}, kernel_size={geo.kernel}, dilation={geo.dilation}, "
                           f"padding={tuple(p for p, _ in geo.padding)}, stride={geo.stride}, expected size of "
                           f"input's last dimension to match the calculated number of sliding blocks "
                           f"{out[0]} * {out[1]} = {out[0] * out[1]}, but got {input.shape[-1]}")
    x = input.unsqueeze(0) if input.ndim == 2 else input
    y = Col2Im.apply(x, geo=geo, size=size)
    return y.squeeze(0) if input.ndim == 2 else y


# ---- pooling ---------------------------------------------------------------------------------------

def _pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode: bool, nd: int, who) -> tuple:
    """The Geometry and output size of a pooling (PyTorch's pooling_output_shape): with ceil_mode the
    last window may run past the input, but must start inside it or in the leading padding."""
    kernel = _ntuple(kernel_size, nd, "kernel_size", who)
    stride = kernel if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) \
        else _ntuple(stride, nd, "stride", who)
    pads, dilation = _ntuple(padding, nd, "padding", who), _ntuple(dilation, nd, "dilation", who)
    if any(k <= 0 for k in kernel):
        raise RuntimeError(f"{_who(who)}: kernel_size must be greater than zero, got {kernel}")
    _check_stride_dilation(stride, dilation, who)
    if any(p < 0 or p > k // 2 for p, k in zip(pads, kernel)):
        raise RuntimeError(f"{_who(who)}: pad should be at most half of kernel size (and not negative), but got "
                           f"padding={pads} for kernel_size={kernel}")
    size = tuple(input.shape[-nd:])
    out, padding_pairs = [], []
    for n, k, s, p, d in zip(size, kernel, stride, pads, dilation):
        o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:
            o -= 1
        out.append(o)
        padding_pairs.append((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)))
    if any(o <= 0 for o in out):
        c = input.shape[-nd - 1]
        raise RuntimeError(f"{_who(who)}: given input size ({c}x{'x'.join(map(str, size))}), the calculated output "
                           f"size ({c}x{'x'.join(map(str, out))}) is too small; use a smaller kernel_size or "
                           "more padding, or a larger input")
    return _lift(nd, kernel, stride, tuple(padding_pairs), dilation), (1,) * (2 - nd) + tuple(out)


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode: bool, return_indices: bool, nd: int, who):
    _check_input(input, nd, who)
    geo, out = _pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode, nd, who)
    x, back = _as_2d(input, nd)
    xp = x.device.xp
    best, arg = max_windows(xp, x._data, geo, out)
    y = back(MaxPool2DWithIndices.apply(x, geo=geo, arg=arg, value=best))
    if not return_indices:
        return y
    # PyTorch's indices: flat positions in each (H, W) plane of the unpadded input
    (kh, kw), (sh, sw), (dh, dw), ((t, _), (l, _)) = geo.kernel, geo.stride, geo.dilation, geo.padding
    arg = arg.astype(xp.int64)
    rows = xp.arange(out[0]).reshape(-1, 1) * sh - t + (arg // kw) * dh
    cols = xp.arange(out[1]) * sw - l + (arg % kw) * dw
    return y, back(Tensor._make(rows * x.shape[3] + cols, x.device))


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """The max of each window of (N, C, H, W) or (C, H, W); its gradient goes to the (first) argmax."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def _avg_divisor(size, geo: Geometry, out, count_include_pad: bool):
    """PyTorch's divisor per window: the window clipped to the padded input (count_include_pad) or to the
    input itself; an (Ho, Wo) array, or a number when all windows agree."""
    per_dim = []
    for n, k, s, (p, _), o in zip(size, geo.kernel, geo.stride, geo.padding, out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        per_dim.append(end - start if count_include_pad else np.minimum(end, n) - np.maximum(start, 0))
    divisor = np.multiply.outer(*per_dim)
    return float(divisor.flat[0]) if (divisor == divisor.flat[0]).all() else divisor


def _avg_pool(input, kernel_size, stride, padding, ceil_mode: bool, count_include_pad: bool, divisor_override,
              nd: int, who):
    _check_input(input, nd, who)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"{_who(who)}: expected a floating point input, got {input.dtype.name}; convert it "
                           "with .float()")
    geo, out = _pool_geometry(input, kernel_size, stride, padding, 1, ceil_mode, nd, who)
    x, back = _as_2d(input, nd)
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError(f"{_who(who)}: divisor_override must be non-zero")
        divisor = divisor_override
    else:
        divisor = _avg_divisor(tuple(x.shape[2:]), geo, out, count_include_pad)
        if not isinstance(divisor, float):
            divisor = x.device.xp.asarray(divisor, dtype=x._data.dtype)
    return back(AvgPool2D.apply(x, geo=geo, out=out, divisor=divisor))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override=None):
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                     "avg_pool2d")


def _adaptive_avg_pool(input, output_size, nd: int, who):
    _check_input(input, nd, who)
    size = tuple(input.shape[-nd:])
    if isinstance(output_size, numbers.Integral) or output_size is None:
        output_size = (output_size,) * nd
    if len(output_size) == 1:
        output_size = tuple(output_size) * nd
    if len(output_size) != nd:
        raise ValueError(f"{_who(who)}: output_size must be an int or a tuple of {nd} (ints or None), got "
                         f"{output_size!r}")
    out = tuple(n if o is None else int(o) for o, n in zip(output_size, size))
    if any(o < 0 for o in out) or any(n == 0 for n in size):
        raise RuntimeError(f"{_who(who)}: expected non-empty spatial dims and non-negative output_size, got "
                           f"input of shape {tuple(input.shape)} and output_size {out}")
    lead = tuple(input.shape[:-nd])
    if all(o > 0 and n % o == 0 for o, n in zip(out, size)):  # equal windows: a reshape and a mean
        split = sum(((o, n // o) for o, n in zip(out, size)), ())
        return input.reshape(lead + split).mean(tuple(range(len(lead) + 1, len(lead) + 2 * nd, 2)))
    # windows [floor(i*n/o), ceil((i+1)*n/o)) of varying length: average with one matrix per dim
    mats = []
    for o, n in zip(out, size):
        m = np.zeros((o, n))
        for i in range(o):
            start, end = i * n // o, -(-(i + 1) * n // o)
            m[i, start:end] = 1.0 / (end - start)
        mats.append(Tensor._make(input.device.xp.asarray(m, dtype=input._data.dtype), input.device))
    return einsum("...hw,oh,pw->...op" if nd == 2 else "...l,ol->...o", input, *mats)


def adaptive_avg_pool1d(input, output_size):
    return _adaptive_avg_pool(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size (None keeps that input dim), with PyTorch's windows
    [floor(i*in/out), ceil((i+1)*in/out))."""
    return _adaptive_avg_pool(input, output_size, 2, "adaptive_avg_pool2d")
