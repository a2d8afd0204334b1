"""linear, bilinear, dropout, embedding, one_hot, pad, normalize, interpolate."""
from __future__ import annotations

import numbers

import numpy as np

from ... import _blas, dtypes
from ...autograd.graph import Op
from ...ops import elementwise as ew
from ...ops.index import IndexBackward
from ...ops.linalg import einsum, matmul
from ...ops.reduce import norm as _norm
from ...ops._util import operands
from ...random import generator_for
from ...tensor import Tensor

__all__ = ["linear", "bilinear", "dropout", "dropout1d", "dropout2d", "embedding", "one_hot", "pad",
           "normalize", "interpolate", "cosine_similarity", "pairwise_distance"]


class Linear(Op):
    """y = x W^T + b as one node: the backward is two GEMMs and a sum."""
    save_inputs = True

    def forward(self, x, w, b):
        # one 2-D GEMM: numpy's matmul of a batch against one broadcast matrix skips BLAS (~100x slower)
        y = _blas.matmul(self.xp, x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x, w.T, bias=b)
        return y.reshape(*x.shape[:-1], w.shape[0]) if x.ndim > 2 else y

    def backward(self, g):
        x, w, _ = self.inputs
        gx = matmul(g, w) if self.needs_grad(0) else None
        gw = gb = None
        if self.needs_grad(1):
            g2, x2 = g.reshape(-1, g.shape[-1]), x.reshape(-1, x.shape[-1])
            gw = matmul(g2.T, x2)
        if self.needs_grad(2):
            gb = g.reshape(-1, g.shape[-1]).sum(0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    if input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise RuntimeError(f"linear: input of shape {tuple(input.shape)} does not fit weight of shape "
                           f"{tuple(weight.shape)}: the input's last dimension must be {weight.shape[-1]}")
    if weight.ndim == 1:
        out = matmul(input, weight)
        return out + bias if bias is not None else out
    x, w, b = operands(input, weight, bias) if bias is not None else (*operands(input, weight), None)
    return Linear.apply(x, w, b)


def bilinear(input1, input2, weight, bias=None):
    """y_k = x1^T A_k x2 + b_k, with weight A of shape (out, in1, in2)."""
    out = einsum("...i,kij,...j->...k", input1, weight, input2)
    return out + bias if bias is not None else out


def _check_p(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout_mask(input: Tensor, p: float, shape) -> Tensor:
    keep = generator_for(input.device, None).uniform(shape, np.float32 if input.dtype is dtypes.float32
                                                     else np.float64) >= p
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    return Tensor._make((keep * scale).astype(input._data.dtype), input.device)


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    _check_p(p)
    if not training or p == 0:
        return input
    mask = _dropout_mask(input, p, tuple(input.shape))
    return input.mul_(mask) if inplace else input * mask


def _feature_dropout(input, p, training, inplace, spatial_dims: int):
    _check_p(p)
    if not training or p == 0:
        return input
    lead = input.ndim - spatial_dims  # (N, C) or (C,) keep their own mask entries
    mask = _dropout_mask(input, p, tuple(input.shape[:lead]) + (1,) * spatial_dims)
    return input.mul_(mask) if inplace else input * mask


def dropout1d(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    return _feature_dropout(input, p, training, inplace, 1)


def dropout2d(input, p: float = 0.5, training: bool = True, inplace: bool = False):
    return _feature_dropout(input, p, training, inplace, 2)


class Embedding(Op):
    def forward(self, weight):
        self.shape = weight.shape
        return weight[self.indices]

    def backward(self, g):
        grad = IndexBackward.apply(g, index=(self.indices,), shape=self.shape, basic=False)
        if self.padding_idx is not None:
            keep = self.xp.ones((self.shape[0], 1), dtype=g._data.dtype)
            keep[self.padding_idx] = 0
            grad = grad * Tensor._make(keep, self.device)
        return grad


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False):
    if input.dtype.is_floating_point:
        raise RuntimeError(f"embedding: expected indices of an integer type, got {input.dtype}")
    n = weight.shape[0]
    if input.numel():
        lo, hi = int(input._data.min()), int(input._data.max())
        if lo < 0 or hi >= n:
            raise IndexError(f"embedding: index {hi if hi >= n else lo} is out of range for an embedding "
                             f"table of {n} rows")
    if padding_idx is not None and padding_idx < 0:
        padding_idx += n
    if max_norm is not None:
        from ...autograd import grad_mode
        with grad_mode.no_grad():  # renormalise the looked-up rows in place, as PyTorch does
            rows = np.unique(input._host())
            norms = _norm(weight[rows], norm_type, 1, keepdim=True)
            scale = ew.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
            weight._data[rows] *= scale._data
    return Embedding.apply(weight, indices=input._data.astype(np.int64, copy=False), padding_idx=padding_idx)


def one_hot(tensor, num_classes: int = -1):
    if tensor.dtype is not dtypes.int64 and tensor.dtype is not dtypes.int32:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    data = tensor._data
    if num_classes == -1:
        num_classes = int(data.max()) + 1 if data.size else 0
    if data.size and (int(data.min()) < 0 or int(data.max()) >= num_classes):
        raise RuntimeError(f"one_hot: class values must be in [0, {num_classes}), got "
                           f"[{int(data.min())}, {int(data.max())}]")
    xp = tensor.device.xp
    return Tensor._make((data[..., None] == xp.arange(num_classes)).astype(np.int64), tensor.device)


class ConstantPad(Op):
    def forward(self, x):
        self.slices = tuple(slice(lo, lo + s) for (lo, _), s in zip(self.widths, x.shape))
        return self.xp.pad(x, self.widths, constant_values=self.value)

    def backward(self, g):
        return g[self.slices]


def _pad_widths(ndim: int, pad) -> list:
    """PyTorch's pad tuple (last dim first: left, right, top, bottom, ...) as numpy's per-dim widths."""
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise ValueError(f"pad: padding length must be even and at most 2 * input.ndim ({2 * ndim}), got {len(pad)}")
    widths = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        widths[ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return widths


def _source_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """For each padded position, the input position it copies (reflect/replicate/circular)."""
    pos = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    if mode == "circular":
        return pos % n
    if lo >= n or hi >= n:
        raise RuntimeError(f"pad: reflect padding ({lo}, {hi}) must be smaller than the input size {n}")
    period = 2 * (n - 1)
    pos = np.abs(pos) % period if period else np.zeros_like(pos)
    return np.where(pos >= n, period - pos, pos)


def pad(input, pad, mode: str = "constant", value=None):
    widths = _pad_widths(input.ndim, pad)
    if mode == "constant":
        if any(lo < 0 or hi < 0 for lo, hi in widths):  # negative padding crops
            crop = tuple(slice(max(-lo, 0), s - max(-hi, 0)) for (lo, hi), s in zip(widths, input.shape))
            input = input[crop]
            widths = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
        return ConstantPad.apply(input, widths=widths, value=0.0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', got {mode!r}")
    out = input
    for d, (lo, hi) in enumerate(widths):
        if lo or hi:
            idx = _source_index(input.shape[d], lo, hi, mode)
            out = out[(slice(None),) * d + (Tensor._make(input.device.xp.asarray(idx), input.device),)]
    return out


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None):
    denom = ew.clamp(_norm(input, p, dim, keepdim=True), min=eps)
    return input / denom


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8):
    num = (x1 * x2).sum(dim)
    den = ew.clamp(_norm(x1, 2, dim) * _norm(x2, 2, dim), min=eps)
    return num / den


def pairwise_distance(x1, x2, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
    return _norm(x1 - x2 + eps, p, -1, keepdim)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False):
    """Nearest-neighbour resizing of the spatial dims of (N, C, *spatial): src = floor(dst * in / out)."""
    if mode != "nearest":
        raise NotImplementedError(f"interpolate: only mode='nearest' is supported, got {mode!r}")
    spatial = input.ndim - 2
    if spatial < 1:
        raise ValueError(f"interpolate: expected a (N, C, ...) input with spatial dims, got shape {tuple(input.shape)}")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size or scale_factor")
    in_sizes = tuple(input.shape[2:])
    if size is not None:
        out_sizes = (size,) * spatial if isinstance(size, numbers.Integral) else tuple(size)
        scales = [i / o for i, o in zip(in_sizes, out_sizes)]
    else:
        factors = (scale_factor,) * spatial if isinstance(scale_factor, numbers.Number) else tuple(scale_factor)
        out_sizes = tuple(int(np.floor(i * f)) for i, f in zip(in_sizes, factors))
        scales = [1.0 / f for f in factors] if not recompute_scale_factor else \
            [i / o for i, o in zip(in_sizes, out_sizes)]
    out = input
    for k, (n_in, n_out, s) in enumerate(zip(in_sizes, out_sizes, scales)):
        src = np.minimum(np.floor(np.arange(n_out) * s).astype(np.int64), n_in - 1)
        out = out[(slice(None),) * (2 + k) + (Tensor._make(input.device.xp.asarray(src), input.device),)]
    return out
