"""Convolution and pooling on NCHW arrays, as differentiable ops.

Everything here works on two spatial dims; the 1-D layers insert a unit height. Windows are walked by
looping over the kernel offsets only (kh*kw iterations, each one strided slice of the whole batch):
im2col copies each offset's slice into the columns, col2im adds it back, pooling reduces over them.
Only basic slicing is used, so the same code runs on numpy and CuPy.

A convolution is one GEMM on the columns. It is bilinear, and each of its three linear maps has the
other two as its derivatives, so gradients of gradients need no further code:

    Convolution(x, w)           -> y   grads: ConvolutionTranspose(g, w),  ConvolutionWeight(x, g)
    ConvolutionTranspose(y, w)  -> x   grads: Convolution(h, w),           ConvolutionWeight(h, y)
    ConvolutionWeight(x, y)     -> w   grads: ConvolutionTranspose(y, k),  Convolution(x, k)

Pooling works the same way: each pooling op and its adjoint (scatter back into the windows) are each
other's backward. The GEMMs use a channel-major layout, (C, N, H, W), in which both the columns
(C*kh*kw, N*Ho*Wo) and the GEMM's result (O, N*Ho*Wo) are contiguous; one transpose copy brings the
result back to NCHW.
"""
from __future__ import annotations

from typing import NamedTuple

from ..autograd.graph import Op


class Geometry(NamedTuple):
    """The window arithmetic shared by every op here (per spatial dim: height, width)."""
    kernel: tuple  # (kh, kw)
    stride: tuple
    padding: tuple  # ((top, bottom), (left, right)); bottom/right may be larger (ceil_mode, 'same')
    dilation: tuple
    groups: int = 1

    def out_size(self, size) -> tuple:
        return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, (lo, hi), k, s, d in
                     zip(size, self.padding, self.kernel, self.stride, self.dilation))

    def padded(self, size) -> tuple:
        return tuple(n + lo + hi for n, (lo, hi) in zip(size, self.padding))

    def offsets(self, out) -> list:
        """(kernel offset index, (row slice, col slice)): the padded positions that kernel offset reads
        at every output position."""
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = self.kernel, self.stride, self.dilation, out
        return [(i * kw + j, (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                              slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)))
                for i in range(kh) for j in range(kw)]

    @property
    def overlapping(self) -> bool:
        """Whether an input position can fall in more than one window."""
        return any(d * (k - 1) + 1 > s for k, s, d in zip(self.kernel, self.stride, self.dilation))


def _pad(xp, x, geo: Geometry, fill=0, channel_major: bool = False):
    """``x`` (N, C, H, W) padded with ``fill``; (C, N, Hp, Wp) if ``channel_major``. Without padding,
    a view of ``x``."""
    src = x.transpose(1, 0, 2, 3) if channel_major else x
    (t, b), (l, r) = geo.padding
    if not (t or b or l or r):
        return src
    buf = xp.full(src.shape[:2] + geo.padded(src.shape[2:]), fill, dtype=x.dtype)
    buf[:, :, t:t + x.shape[2], l:l + x.shape[3]] = src
    return buf


def _crop(xp, buf, geo: Geometry, size, channel_major: bool = False):
    """The inverse of ``_pad``: the unpadded region of ``buf``, as a contiguous (N, C, H, W) array."""
    (t, _), (l, _) = geo.padding
    out = buf[:, :, t:t + size[0], l:l + size[1]]
    return xp.ascontiguousarray(out.transpose(1, 0, 2, 3) if channel_major else out)


def _im2col(xp, x, geo: Geometry, out):
    """(N, C, H, W) -> columns (C, kh, kw, N, Ho, Wo), contiguous: one slice copy per kernel offset."""
    buf = _pad(xp, x, geo, channel_major=True)
    (kh, kw), (C, N) = geo.kernel, buf.shape[:2]
    cols = xp.empty((C, kh * kw, N) + tuple(out), dtype=x.dtype)
    for k, (rows, cs) in geo.offsets(out):
        cols[:, k] = buf[:, :, rows, cs]
    return cols.reshape((C, kh, kw, N) + tuple(out))


def _col2im(xp, cols, geo: Geometry, size):
    """The adjoint of ``_im2col``: columns (C, kh, kw, N, Ho, Wo) summed back into (N, C, H, W)."""
    C, kh, kw, N, oh, ow = cols.shape
    cols = cols.reshape(C, kh * kw, N, oh, ow)
    buf = xp.zeros((C, N) + geo.padded(size), dtype=cols.dtype)
    for k, (rows, cs) in geo.offsets((oh, ow)):
        buf[:, :, rows, cs] += cols[:, k]
    return _crop(xp, buf, geo, size, channel_major=True)


def _cm_matrix(xp, a, groups: int):
    """(N, C, H, W) -> (groups, C/groups, N*H*W) in channel-major order: a GEMM operand."""
    N, C, H, W = a.shape
    return xp.ascontiguousarray(a.transpose(1, 0, 2, 3)).reshape(groups, C // groups, N * H * W)


def _gemm(xp, a, b):
    """(G, m, k) @ (G, k, n): a 2-D GEMM per group. numpy's stacked matmul leaves BLAS for a slow loop
    when an operand is a transposed view; the 2-D one hands BLAS the transpose instead."""
    if a.shape[0] == 1:
        return (a[0] @ b[0])[None]
    return xp.stack([a[i] @ b[i] for i in range(a.shape[0])])


def _from_cm(xp, y, N: int, size, bias=None):
    """A GEMM result (C, N*H*W) -> contiguous (N, C, H, W), adding ``bias`` in the same pass."""
    y = y.reshape((y.shape[0] * y.shape[1], N) + tuple(size)).transpose(1, 0, 2, 3)
    if bias is None:
        return xp.ascontiguousarray(y)
    out = xp.empty(y.shape, dtype=y.dtype)
    return xp.add(y, bias.reshape(-1, 1, 1), out=out)


class Convolution(Op):
    """y = conv(x, w) + b: im2col, then one GEMM per group. ``out`` fixes the output size (only the
    backward of a transposed convolution with a large output_padding needs one that is smaller than
    what the input allows)."""
    save_inputs = True
    out = None

    def forward(self, x, w, b):
        xp, geo = self.xp, self.geo
        out = self.out or geo.out_size(x.shape[2:])
        G, O = geo.groups, w.shape[0]
        cols = _im2col(xp, x, geo, out).reshape(G, w[0].size, x.shape[0] * out[0] * out[1])
        y = _gemm(xp, w.reshape(G, O // G, -1), cols)
        return _from_cm(xp, y, x.shape[0], out, b)

    def backward(self, g):
        x, w, b = self.inputs
        gx = gw = gb = None
        if self.needs_grad(0):
            gx = ConvolutionTranspose.apply(g, w, None, geo=self.geo, size=tuple(x.shape[2:]))
        if self.needs_grad(1):
            gw = ConvolutionWeight.apply(x, g, geo=self.geo)
        if self.needs_grad(2):
            gb = g.sum((0, 2, 3))
        return gx, gw, gb


class ConvolutionTranspose(Op):
    """The adjoint of Convolution in x: y (N, O, Ho, Wo) and w (O, C/groups, kh, kw) -> (N, C, *size).
    This is conv_transpose2d (its weight is laid out (in, out/groups, kh, kw), the same thing)."""
    save_inputs = True

    def forward(self, y, w, b):
        xp, geo = self.xp, self.geo
        G, O = geo.groups, w.shape[0]
        w3 = w.reshape(G, O // G, -1)
        cols = _gemm(xp, w3.transpose(0, 2, 1), _cm_matrix(xp, y, G))
        cols = cols.reshape((w.shape[1] * G,) + geo.kernel + (y.shape[0],) + y.shape[2:])
        x = _col2im(xp, cols, geo, self.size)
        if b is not None:
            x += b.reshape(-1, 1, 1)
        return x

    def backward(self, h):
        y, w, b = self.inputs
        gy = gw = gb = None
        if self.needs_grad(0):
            gy = Convolution.apply(h, w, None, geo=self.geo, out=tuple(y.shape[2:]))
        if self.needs_grad(1):
            gw = ConvolutionWeight.apply(h, y, geo=self.geo)
        if self.needs_grad(2):
            gb = h.sum((0, 2, 3))
        return gy, gw, gb


class ConvolutionWeight(Op):
    """The adjoint of Convolution in w: x (N, C, H, W) and y (N, O, Ho, Wo) -> (O, C/groups, kh, kw)."""
    save_inputs = True

    def forward(self, x, y):
        xp, geo = self.xp, self.geo
        G, out = geo.groups, y.shape[2:]
        cols = _im2col(xp, x, geo, out).reshape(G, x.shape[1] // G * geo.kernel[0] * geo.kernel[1],
                                                x.shape[0] * out[0] * out[1])
        gw = _gemm(xp, _cm_matrix(xp, y, G), cols.transpose(0, 2, 1))
        return gw.reshape((y.shape[1], x.shape[1] // G) + geo.kernel)

    def backward(self, k):
        x, y = self.inputs
        gx = gy = None
        if self.needs_grad(0):
            gx = ConvolutionTranspose.apply(y, k, None, geo=self.geo, size=tuple(x.shape[2:]))
        if self.needs_grad(1):
            gy = Convolution.apply(x, k, None, geo=self.geo, out=tuple(y.shape[2:]))
        return gx, gy


class Im2Col(Op):
    """unfold: (N, C, H, W) -> (N, C*kh*kw, L), the columns in PyTorch's order."""

    def forward(self, x):
        self.size = x.shape[2:]
        out = self.geo.out_size(self.size)
        cols = _im2col(self.xp, x, self.geo, out)
        cols = cols.reshape(cols.shape[0] * cols.shape[1] * cols.shape[2], x.shape[0], out[0] * out[1])
        return self.xp.ascontiguousarray(cols.transpose(1, 0, 2))

    def backward(self, g):
        return Col2Im.apply(g, geo=self.geo, size=self.size)


class Col2Im(Op):
    """fold: (N, C*kh*kw, L) -> (N, C, *size), summing overlapping windows."""

    def forward(self, cols):
        N = cols.shape[0]
        out = self.geo.out_size(self.size)
        C = cols.shape[1] // (self.geo.kernel[0] * self.geo.kernel[1])
        cols = cols.transpose(1, 0, 2).reshape((C,) + self.geo.kernel + (N,) + out)
        return _col2im(self.xp, cols, self.geo, self.size)

    def backward(self, g):
        return Im2Col.apply(g, geo=self.geo)


# ---- pooling -------------------------------------------------------------------------------------

def _scatter_windows(xp, piece, geo: Geometry, shape, out, dtype):
    """Sum each kernel offset's (N, C, Ho, Wo) contribution into the windows of an (N, C, *shape) input.
    ``piece(k, out=None)`` computes offset k's contribution like a ufunc (into ``out`` when given).
    Without overlap each position belongs to one window, so pieces are written straight into place."""
    buf = xp.zeros(tuple(shape[:2]) + geo.padded(shape[2:]), dtype=dtype)
    overlap = geo.overlapping
    for k, (rows, cs) in geo.offsets(out):
        if overlap:
            buf[:, :, rows, cs] += piece(k)
        else:
            piece(k, out=buf[:, :, rows, cs])
    return _crop(xp, buf, geo, shape[2:])


def _gather_windows(xp, x, geo: Geometry, out, fill=0):
    """(K, N, C, Ho, Wo): each kernel offset's slice of padded ``x``, copied into one contiguous block
    (reductions over contiguous slabs are several times faster than over strided views)."""
    buf = _pad(xp, x, geo, fill=fill)
    offsets = geo.offsets(out)
    cols = xp.empty((len(offsets),) + x.shape[:2] + tuple(out), dtype=x.dtype)
    for k, (rows, cs) in offsets:
        cols[k] = buf[:, :, rows, cs]
    return cols


def max_windows(xp, x, geo: Geometry, out):
    """The max of each window and the kernel offset it sits at: the first maximum, as in PyTorch. (In a
    window holding a NaN the max is NaN, as in PyTorch, and the offset is the window's first; PyTorch's is
    its last NaN.)"""
    cols = _gather_windows(xp, x, geo, out, fill=-xp.inf if x.dtype.kind == "f" else xp.iinfo(x.dtype).min)
    best = cols.max(0)
    arg = xp.full(best.shape, len(cols) - 1, dtype=xp.int8 if len(cols) <= 127 else xp.int32)
    for k in range(len(cols) - 2, -1, -1):  # backwards, so that the first maximum wins
        arg = xp.where(cols[k] < best, arg, arg.dtype.type(k))  # not below the max: at the max
    return best, arg


class MaxPool2DGather(Op):
    """Each window's value at the given kernel offsets (the adjoint of MaxPool2DScatter)."""

    def forward(self, x):
        xp, out = self.xp, self.arg.shape[2:]
        buf = _pad(xp, x, self.geo)
        y = xp.zeros(self.arg.shape, dtype=x.dtype)
        for k, (rows, cs) in self.geo.offsets(out):
            y = xp.where(self.arg == k, buf[:, :, rows, cs], y)
        self.shape = x.shape
        return y

    def backward(self, g):
        return MaxPool2DScatter.apply(g, arg=self.arg, geo=self.geo, shape=self.shape)


class MaxPool2DWithIndices(MaxPool2DGather):
    """max_pool2d: the forward values were found by ``max_windows`` (which max_pool2d also needs for
    return_indices); the node keeps the argmax, so the gradient goes to it."""

    def forward(self, x):
        self.shape = x.shape
        y, self.value = self.value, None
        return y


class MaxPool2DScatter(Op):
    """The gradient of max pooling: each window's gradient added at its argmax."""

    def forward(self, g):
        xp, arg = self.xp, self.arg
        return _scatter_windows(xp, lambda k, out=None: xp.multiply(g, arg == k, out=out), self.geo, self.shape,
                                g.shape[2:], g.dtype)

    def backward(self, h):
        return MaxPool2DGather.apply(h, arg=self.arg, geo=self.geo)


class AvgPool2D(Op):
    """Window sums divided by ``divisor`` (a number, or an (Ho, Wo) array where it varies by window)."""

    def forward(self, x):
        self.shape = x.shape
        buf = _pad(self.xp, x, self.geo)
        views = [buf[:, :, rows, cs] for _, (rows, cs) in self.geo.offsets(self.out)]
        y = views[0].copy()
        for v in views[1:]:
            y += v
        y /= self.divisor
        return y

    def backward(self, g):
        return AvgPool2DTranspose.apply(g, geo=self.geo, shape=self.shape, divisor=self.divisor)


class AvgPool2DTranspose(Op):
    """The gradient of average pooling: each output's gradient over its divisor, spread over its window."""

    def forward(self, g):
        self.out = g.shape[2:]
        xp, divisor = self.xp, self.divisor
        return _scatter_windows(xp, lambda k, out=None: xp.divide(g, divisor, out=out), self.geo, self.shape,
                                self.out, g.dtype)

    def backward(self, h):
        return AvgPool2D.apply(h, geo=self.geo, out=self.out, divisor=self.divisor)
