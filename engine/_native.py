"""The fused CPU kernels of engine/_kernels.c (ReLU and its gradient, Adam, layer norm, sums over leading
dims, attention's weights, softmax's and max pooling's gradients, an embedding gradient's row scatter,
direct float32 convolutions), on contiguous float32/float64 numpy arrays, each run as a task of the C
thread pool (engine/_pool.c), which splits it over the engine's threads; ctypes releases the GIL.

numpy runs one pass over memory per operation; a kernel here runs a whole formula in one pass, which
is where the CPU spends its time once the GEMMs are done (docs/engine.md, "Native kernels"). The
library is built by ``pip install`` (setup.py) where a C compiler is found; without it, or with
``ENGINE_NATIVE=0`` in the environment, ``ready`` is False and every caller runs its numpy code, which
stays the reference (and the code CuPy runs).
"""
from __future__ import annotations

import array
import ctypes
import importlib.machinery
import os
import struct

import numpy as np

from . import _parallel

ROWS_PER_BLOCK = 64  # layer norm's backward sums weight gradients per block of rows, then the blocks
SMALL = 1 << 14  # elements below which numpy's passes beat a kernel's call (ctypes and pointers: ~8 us)


def _load():
    if os.environ.get("ENGINE_NATIVE", "1") == "0":
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(here, "_kernels" + suffix)
        if os.path.exists(path):
            try:
                return ctypes.CDLL(path)
            except OSError:
                return None
    return None


_LIB = _load()
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_KERNELS = ("relu", "relu_grad", "adam", "layer_norm", "layer_norm_backward", "sum_rows", "index_add_rows",
            "softmax_backward", "max_pool_backward", "max_pool_2x2", "conv2d", "conv2d_weight", "attention_softmax")
_FLOAT32_ONLY = {"conv2d", "conv2d_weight", "max_pool_2x2", "attention_softmax"}
_TASK = {}  # (kernel, dtype) -> the address of its task, for pool_run
GEMM_TASK = _pool_run = None
try:
    for _name in _KERNELS if _LIB is not None else ():
        for _dt, _sfx in _SUFFIX.items():
            if _name in _FLOAT32_ONLY and _sfx != "f32":
                continue
            _TASK[_name, _dt] = ctypes.cast(getattr(_LIB, f"{_name}_{_sfx}_task"), ctypes.c_void_p).value
    if _LIB is not None:
        GEMM_TASK = ctypes.cast(_LIB.gemm_task, ctypes.c_void_p).value
        _pool_run = _LIB.pool_run
except AttributeError as _missing:  # a library built from older sources: run numpy until it is rebuilt
    import warnings
    warnings.warn(f"engine: the fused CPU kernels are out of date ({_missing}); running numpy instead. "
                  "Rebuild them with `pip install -e .` (or `make venv`)", RuntimeWarning, stacklevel=2)
    _LIB, _TASK = None, {}
if _LIB is not None:
    _pool_run.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
    _pool_run.restype = ctypes.c_int

ready = _LIB is not None
pool_2x2_ready = ready and bool(_LIB.max_pool_2x2_available())  # an AVX-512 kernel: other machines run numpy

_BITS = struct.Struct("<d"), struct.Struct("<q")


def _arg(value) -> int:
    """One task argument as the 8 bytes pool_run passes: an address or size as is, None as NULL, a float
    as a double's bits."""
    if isinstance(value, (float, np.floating)):
        return _BITS[1].unpack(_BITS[0].pack(float(value)))[0]
    return 0 if value is None else int(value)


def run(task: int, n: int, per_item: int, *args) -> int:
    """A task of the kernels over [0, n) (n items of ``per_item`` elements), split over the engine's
    threads by the C pool (_pool.c): ``args`` in the order the task reads them (_kernels.c). Returns
    the number of parts it was cut into (1: run whole on this thread)."""
    packed = array.array("q", [_arg(a) for a in args])
    return _pool_run(task, packed.buffer_info()[0], n, _parallel.parts(n, per_item))


def usable(xp, *arrays) -> bool:
    """Whether the kernels can take these arrays (None entries are skipped) and gain from it: numpy,
    C-contiguous, one floating dtype they are built for, the first at least ``SMALL`` elements."""
    if not ready or xp is not np or arrays[0].size < SMALL:
        return False
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if type(a) is not np.ndarray or not a.flags.c_contiguous or (dtype is not None and a.dtype != dtype):
            return False
        dtype = a.dtype
    return dtype in _SUFFIX


def _ptr(a):
    """The address of ``a``'s data (None for None: a NULL pointer)."""
    return None if a is None else a.ctypes.data


def relu(x):
    """max(x, 0), nan kept: numpy's ``maximum(x, 0)`` in one pass split over the threads."""
    out = np.empty_like(x)
    run(_TASK["relu", x.dtype], x.size, 1, _ptr(x), _ptr(out))
    return out


def relu_grad(g, y, out) -> None:
    run(_TASK["relu_grad", g.dtype], g.size, 1, _ptr(g), _ptr(y), _ptr(out))


def adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, decay: float, l2: float, maximize: bool,
         lerp_weight: float, beta2: float, bias_correction2_sqrt: float, eps: float, step_size: float) -> None:
    """One Adam step in place (optim/adam.py's ``adam_update`` says what each argument is)."""
    arrays = (param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
    run(_TASK["adam", param.dtype], param.size, 1, *(_ptr(a) for a in arrays), float(decay), float(l2),
        bool(maximize), float(lerp_weight), float(beta2), float(1 - beta2), float(bias_correction2_sqrt),
        float(eps), float(step_size))


def softmax_backward(g, y):
    """The gradient of a softmax over the last dim of y (its output), from the output's gradient g."""
    n = y.shape[-1]
    rows = y.size // n if n else 0
    out = np.empty_like(y)
    run(_TASK["softmax_backward", y.dtype], rows, n, _ptr(g), _ptr(y), _ptr(out), n)
    return out


def layer_norm(x, w, b, eps: float):
    """x (rows, n) normalised per row, then scaled by w and shifted by b (n each, or None): the output
    and each row's mean and reciprocal standard deviation (rows, 1)."""
    rows, n = x.shape
    y = np.empty_like(x)
    mean, rstd = np.empty((rows, 1), dtype=x.dtype), np.empty((rows, 1), dtype=x.dtype)
    run(_TASK["layer_norm", x.dtype], rows, n, *(_ptr(a) for a in (x, w, b, y, mean, rstd)), n, float(eps))
    return y, mean, rstd


def layer_norm_backward(g, x, w, mean, rstd, want_gx: bool, want_gw: bool, want_gb: bool):
    """The gradients of ``layer_norm`` in x, w and b (None where not wanted), from the output's g."""
    rows, n = x.shape
    gx = np.empty_like(x) if want_gx else None
    blocks = -(-rows // ROWS_PER_BLOCK)
    # each block's sums land in its own row of gw and gb: the total is summed in block order
    gw = np.zeros((blocks, n), dtype=x.dtype) if want_gw else None
    gb = np.zeros((blocks, n), dtype=x.dtype) if want_gb else None
    run(_TASK["layer_norm_backward", x.dtype], blocks, ROWS_PER_BLOCK * n,
        *(_ptr(a) for a in (g, x, w, mean, rstd, gx, gw, gb)), rows, n, ROWS_PER_BLOCK)
    return gx, None if gw is None else gw.sum(0), None if gb is None else gb.sum(0)


def sum_rows(x):
    """The column sums of x (rows, n): blocks of ``ROWS_PER_BLOCK`` rows summed over the threads, then
    the blocks in order, so the bits do not depend on the thread count (a Linear's bias gradient: on
    one core numpy's ``x.sum(0)`` took 17 of W3's ms)."""
    rows, n = x.shape
    blocks = -(-rows // ROWS_PER_BLOCK)
    partial = np.empty((blocks, n), dtype=x.dtype)
    run(_TASK["sum_rows", x.dtype], blocks, ROWS_PER_BLOCK * n, _ptr(x), _ptr(partial), rows, n, ROWS_PER_BLOCK)
    return partial[0] if blocks == 1 else partial.sum(0)


def attention_softmax(s, mask, scale: float, safe: bool) -> None:
    """In place on float32 scores s (..., L, S): softmax over the last dim of s * scale + mask, mask an
    (L, S) float32 array or None (attention.py's AttentionWeights says what ``safe`` does)."""
    L, S = s.shape[-2:]
    if mask is not None:
        mask = np.ascontiguousarray(np.broadcast_to(mask, (L, S)))
    rows = s.size // S
    run(_TASK["attention_softmax", s.dtype], rows, S, _ptr(s), _ptr(mask), L, S, float(scale), bool(safe))


def _pool_geometry(geo) -> np.ndarray:
    (kh, kw), (sh, sw), ((top, _), (left, _)), (dh, dw) = geo.kernel, geo.stride, geo.padding, geo.dilation
    return np.array([kh, kw, sh, sw, top, left, dh, dw], dtype=np.int64)


def pool_2x2_fits(xp, x, geo, out) -> bool:
    """Whether ``max_pool_2x2`` takes this max pooling: MaxPool2d(2)'s windows on float32 numpy x."""
    return (pool_2x2_ready and geo.kernel == geo.stride == (2, 2) and geo.dilation == (1, 1)
            and geo.padding == ((0, 0), (0, 0)) and usable(xp, x) and x.dtype == np.float32
            and tuple(out) == (x.shape[2] // 2, x.shape[3] // 2))


def max_pool_2x2(x):
    """max_windows (engine/ops/conv.py) for 2x2 windows at stride 2, no padding, on contiguous float32
    x (N, C, H, W): each window's max (N, C, H//2, W//2) and the kernel offset of its first maximum (int8)."""
    n, c, h, w = x.shape
    best = np.empty((n, c, h // 2, w // 2), dtype=x.dtype)
    arg = np.empty(best.shape, dtype=np.int8)
    run(_TASK["max_pool_2x2", x.dtype], n * c, h * w, _ptr(x), _ptr(best), _ptr(arg), h, w, h // 2, w // 2)
    return best, arg


def max_pool_backward(g, arg, shape, geo):
    """The gradient of max pooling's input (``shape``): each window's g (N, C, Ho, Wo) added at its
    max, the kernel offset ``arg`` (int8) that engine/ops/conv.py's max_windows found."""
    n, c, h, w = shape
    gx = np.empty(shape, dtype=g.dtype)
    geom = _pool_geometry(geo)
    run(_TASK["max_pool_backward", g.dtype], n * c, h * w, _ptr(g), _ptr(arg), _ptr(gx), h, w, *g.shape[2:],
        _ptr(geom))
    return gx


def index_add_rows(target, index, values) -> bool:
    """``target[index] += values`` accumulating repeated rows, as ``np.add.at(target, (index,), values)``
    and with its bits, for contiguous arrays: ``index`` int64 into ``target``'s first dim, ``values`` of
    shape ``index.shape + target.shape[1:]``. False (nothing done) where that does not hold or an index
    is out of range, so that the caller's numpy code decides (and raises)."""
    if (not usable(np, values, target) or type(index) is not np.ndarray or index.dtype != np.int64
            or values.shape != index.shape + target.shape[1:] or target.ndim < 1):
        return False
    rows = target.shape[0]
    flat = np.ascontiguousarray(index).reshape(-1)
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, 0)
    if lo < -rows or hi >= rows:
        return False
    if lo < 0:
        flat = np.where(flat < 0, flat + rows, flat)
    d = target.size // rows if rows else 0
    run(_TASK["index_add_rows", target.dtype], d, flat.size, _ptr(target), _ptr(flat), _ptr(values), flat.size, d)
    return True


# ---- direct convolutions (float32, stride 1, one group): _kernels.c says how they work ------------------

CONV_SCRATCH = 1 << 18  # floats of padded inputs and gradients a block of the weight gradient keeps (~1 MB)


def conv_fits(xp, geo, *arrays, transposed: bool = False) -> bool:
    """Whether the direct kernels take this convolution: float32 numpy arrays, C-contiguous, stride 1,
    one group; a transposed one (the input's gradient) also needs padding of at most the kernel's
    reach (top and left), which its flipped kernel then reads as padding of its own."""
    if not usable(xp, *arrays) or arrays[0].dtype != np.float32 or geo.stride != (1, 1) or geo.groups != 1:
        return False
    if transposed:
        return all(lo <= d * (k - 1) for (lo, _), d, k in zip(geo.padding, geo.dilation, geo.kernel))
    return True


def _conv_dims(x_shape, out_channels: int, out_size, kernel, dilation, pad_top_left) -> np.ndarray:
    (C, H, W), (Ho, Wo) = x_shape[1:], out_size
    return np.array([C, H, W, out_channels, Ho, Wo, *kernel, *dilation, *pad_top_left], dtype=np.int64)


def _conv(x, wt, bias, out_channels: int, out_size, kernel, dilation, pad_top_left):
    """The kernel on x (N, C, H, W) with weights wt laid out (C*KH*KW, O): (N, O, *out_size)."""
    y = np.empty((x.shape[0], out_channels) + tuple(out_size), dtype=np.float32)
    dims = _conv_dims(x.shape, out_channels, out_size, kernel, dilation, pad_top_left)
    run(_TASK["conv2d", x.dtype], x.shape[0], y[0].size, _ptr(x), _ptr(wt), _ptr(bias), _ptr(y), _ptr(dims))
    return y


def conv2d(x, w, b, geo, out):
    """Convolution's forward: x (N, C, H, W), w (O, C, KH, KW), b (O) or None -> (N, O, *out)."""
    wt = np.ascontiguousarray(w.transpose(1, 2, 3, 0))
    pad = tuple(lo for lo, _ in geo.padding)
    return _conv(x, wt, b, w.shape[0], out, geo.kernel, geo.dilation, pad)


def conv2d_transpose(g, w, geo, size):
    """Convolution's input gradient: g (N, O, Ho, Wo) -> (N, C, *size), a convolution of g with the
    flipped kernel, C and O swapped, padded by the kernel's reach less the forward's padding."""
    wt = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 2, 3, 1))  # (O, KH, KW, C)
    pad = tuple(d * (k - 1) - lo for (lo, _), d, k in zip(geo.padding, geo.dilation, geo.kernel))
    return _conv(g, wt, None, w.shape[1], size, geo.kernel, geo.dilation, pad)


def conv2d_weight(x, g, geo):
    """Convolution's weight gradient: x (N, C, H, W), g (N, O, Ho, Wo) -> (O, C, KH, KW). Blocks of
    samples (as many as fit CONV_SCRATCH) go to the threads; their sums are added in block order, so
    the result does not depend on the thread count."""
    (N, C), O, (kh, kw) = x.shape[:2], g.shape[1], geo.kernel
    dims = _conv_dims(x.shape, O, g.shape[2:], geo.kernel, geo.dilation, tuple(lo for lo, _ in geo.padding))
    wp, ho = g.shape[3] + geo.dilation[1] * (kw - 1), g.shape[2]
    per_sample = (C + O) * (ho + geo.dilation[0] * (kh - 1)) * wp
    step = max(1, min(N, CONV_SCRATCH // per_sample))
    blocks = -(-N // step)
    parts = np.empty((blocks, C * kh * kw, O), dtype=np.float32)
    run(_TASK["conv2d_weight", x.dtype], blocks, step * per_sample * (kh * kw), _ptr(x), _ptr(g), _ptr(parts),
        step, N, parts[0].size, _ptr(dims))
    return np.ascontiguousarray(parts.sum(0).T).reshape(O, C, kh, kw)
