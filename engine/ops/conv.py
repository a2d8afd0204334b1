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
other's backward.

Layouts. The convolutions walk the batch in blocks of samples whose columns fill about a megabyte
(``BLOCK``), so each block's columns are written and read back while still in cache (and never stored
for the whole batch: the weight gradient builds them again, block by block, which is cheaper than
keeping ~60 MB and reading it back from memory). Within a block the columns are channel-major,
(G, kh*kw, C/G, B, Ho, Wo), and each group is one GEMM against the weight reordered to match (a small
copy); its (O, B*Ho*Wo) result is written back to NCHW by one strided copy. col2im adds into the
unpadded result directly. unfold/fold are im2col/col2im with groups = C, which is PyTorch's (C,
kh*kw) order.

Max pooling reads each kernel offset's strided view in place (no copy of the windows): the max is a
chain of pairwise maxima, the argmax the count of leading offsets strictly below it.

Float32 numpy arrays take C kernels where they fit (engine/_native.py, engine/_kernels.c): direct
convolutions at stride 1 with one group (no columns at all), and MaxPool2d(2)'s windows. What is
here stays the reference, float64's and CuPy's code, and the fallback.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from .. import _native, _parallel
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

    def clipped(self, out, size) -> list:
        """(kernel offset index, (row slice, col slice) of the outputs, (row slice, col slice) of the
        unpadded input): for each kernel offset, the outputs whose input position falls inside the input
        (not in the padding), and those input positions; None for an offset that reads only padding."""
        result = []
        for k, _ in self.offsets(out):
            i, j = divmod(k, self.kernel[1])
            outs, ins = [], []
            for a, o, n, (lo, _), s, d in zip((i, j), out, size, self.padding, self.stride, self.dilation):
                r0, r1 = max(0, -((a * d - lo) // s)), min(o, (n - 1 + lo - a * d) // s + 1)
                if r1 <= r0:
                    break
                start = a * d + r0 * s - lo
                outs.append(slice(r0, r1))
                ins.append(slice(start, start + s * (r1 - r0 - 1) + 1, s))
            result.append((k, tuple(outs), tuple(ins)) if len(outs) == 2 else (k, None, None))
        return result

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


def _crop(xp, buf, geo: Geometry, size):
    """The inverse of ``_pad``: the unpadded region of ``buf``, as a contiguous array."""
    (t, _), (l, _) = geo.padding
    return xp.ascontiguousarray(buf[:, :, t:t + size[0], l:l + size[1]])


def _im2col(xp, x, geo: Geometry, out, groups: int, channel_major: bool = False):
    """(N, C, H, W) -> contiguous columns (N, G, kh*kw, C/G, Ho, Wo), or (G, kh*kw, C/G, N, Ho, Wo) if
    ``channel_major``: one slice copy per kernel offset."""
    (N, C), G, K = x.shape[:2], groups, geo.kernel[0] * geo.kernel[1]
    buf = _pad(xp, x, geo, channel_major=channel_major)
    lead = (G, C // G, N) if channel_major else (N, G, C // G)
    src = buf.reshape(lead + buf.shape[2:])  # splits C: a view
    axis = 1 if channel_major else 2  # where the offset goes in the columns
    cols = xp.empty(lead[:axis] + (K,) + lead[axis:] + tuple(out), dtype=x.dtype)
    for k, (rows, cs) in geo.offsets(out):
        cols[(slice(None),) * axis + (k,)] = src[:, :, :, rows, cs]
    return cols


def _col2im(xp, cols, geo: Geometry, size, dst=None):
    """The adjoint of ``_im2col``: columns (P, kh*kw, *Q, Ho, Wo) summed back into (P, *Q, *size), added
    straight into the unpadded result (what falls in the padding is dropped), which is ``dst`` when
    given (a view may do; its contents are overwritten). An offset whose outputs cover the whole input
    (the centre of a 'same' convolution) is written first, without a zero fill."""
    oh, ow = cols.shape[-2:]
    pieces = [(k, outs, ins) for k, outs, ins in geo.clipped((oh, ow), size) if outs is not None]
    full = next((p for p in pieces if all(i.step == 1 and i.stop - i.start == n for i, n in zip(p[2], size))),
                None)
    if dst is None:
        dst = xp.empty((cols.shape[0],) + cols.shape[2:-2] + tuple(size), dtype=cols.dtype)
    if full:
        k, (rows, cs), _ = full
        dst[...] = cols[:, k, ..., rows, cs]
    else:
        dst[...] = 0
    for k, (rows, cs), ins in pieces:
        if full is None or k != full[0]:
            dst[(Ellipsis,) + ins] += cols[:, k, ..., rows, cs]
    return dst


def _offset_major(xp, w, groups: int):
    """Weight (O, C/G, kh, kw) -> (G, O/G, kh*kw * C/G), matching the columns' order (a small copy)."""
    O, Cg = w.shape[:2]
    return xp.ascontiguousarray(w.reshape(groups, O // groups, Cg, -1).transpose(0, 1, 3, 2)).reshape(
        groups, O // groups, -1)


BLOCK = 1 << 18  # elements of columns per block of samples: ~1 MB of float32, which stays in cache
ROW_BLOCK = 1 << 20  # the same for row columns and outputs (below): their copies are cheap, their GEMMs like width


def _blocks(N: int, per_sample: int, block: int = BLOCK):
    """Ranges of samples whose columns fill about ``block`` elements."""
    step = max(1, min(N, block // max(1, per_sample)))
    return [(i, min(i + step, N)) for i in range(0, N, step)]


class _Rows(NamedTuple):
    """Row columns: im2col for stride 1, on whole padded rows.

    Lay each sample's padded input out flat, rows of ``wp`` values, and compute output (ho, wo) at flat
    position ho*wp + wo: on an (Ho, wp) grid whose last wp - Wo columns are not outputs. Then what
    kernel offset (i, j) reads at every grid position is one slice of the flat input, shifted by
    i*dh*wp + j*dw: im2col copies runs of Ho*wp values instead of Wo, and col2im adds them back the same
    way. The cost is wp/Wo - 1 more GEMM work (14% for 3x3 'same' on 14x14), spent on grid columns that
    are dropped from outputs and are zero in gradients, so they add nothing to sums."""
    geo: Geometry
    size: tuple  # (H, W) of the input
    out: tuple  # (Ho, Wo)
    hp: int  # padded height, plus one row that the last offsets' slices run into
    wp: int  # padded width

    @classmethod
    def fit(cls, geo: Geometry, size, out):
        """The row layout for this convolution, or None where it does not apply (strides, a cropped
        output) or wastes too much (outputs much narrower than the padded rows)."""
        hp, wp = geo.padded(size)
        if geo.stride != (1, 1) or tuple(out) != geo.out_size(size) or 4 * wp > 5 * out[1] + 8:
            return None
        return cls(geo, tuple(size), tuple(out), hp + 1, wp)

    @property
    def grid(self) -> int:
        return self.out[0] * self.wp

    def shifts(self):
        (kh, kw), (dh, dw) = self.geo.kernel, self.geo.dilation
        return [i * dh * self.wp + j * dw for i in range(kh) for j in range(kw)]

    def cols(self, xp, x, groups: int):
        """(B, C, H, W) -> columns (G, kh*kw * C/G, B * Ho*wp), in ``_offset_major``'s order."""
        (B, C), (t, _), (l, _) = x.shape[:2], *self.geo.padding
        buf = xp.zeros((C, B, self.hp, self.wp), dtype=x.dtype)
        buf[:, :, t:t + x.shape[2], l:l + x.shape[3]] = x.transpose(1, 0, 2, 3)
        flat = buf.reshape(groups, C // groups, B, -1)
        shifts, n = self.shifts(), self.grid
        cols = xp.empty((groups, len(shifts), C // groups, B, n), dtype=x.dtype)
        for k, s in enumerate(shifts):
            cols[:, k] = flat[..., s:s + n]
        return cols.reshape(groups, -1, B * n)

    def spread(self, xp, y, groups: int):
        """(B, O, Ho, Wo) -> (G, O/G, B * Ho*wp) on the grid, zero in the columns that are not outputs."""
        (B, O), wo = y.shape[:2], self.out[1]
        grid = xp.zeros((O, B, self.out[0], self.wp), dtype=y.dtype)
        grid[..., :wo] = y.transpose(1, 0, 2, 3)
        return grid.reshape(groups, O // groups, -1)

    def gather(self, y, dst) -> None:
        """The outputs in grid values y (O, B * Ho*wp) written into ``dst`` (B, O, Ho, Wo)."""
        B, O = dst.shape[:2]
        dst.transpose(1, 0, 2, 3)[...] = y.reshape(O, B, self.out[0], self.wp)[..., :self.out[1]]

    def col2im(self, xp, cols, dst) -> None:
        """Columns (G, kh*kw * C/G, B * Ho*wp) summed back into ``dst`` (B, C, H, W) (contents overwritten)."""
        (B, C), (t, _), (l, _) = dst.shape[:2], *self.geo.padding
        shifts, n = self.shifts(), self.grid
        cols = cols.reshape(cols.shape[0], len(shifts), -1, B, n)
        buf = xp.zeros((cols.shape[0], cols.shape[2], B, self.hp * self.wp), dtype=cols.dtype)
        for k, s in enumerate(shifts):
            buf[..., s:s + n] += cols[:, k]
        padded = buf.reshape(C, B, self.hp, self.wp)
        dst.transpose(1, 0, 2, 3)[...] = padded[:, :, t:t + self.size[0], l:l + self.size[1]]


def _channel_major(xp, y, G: int):
    """(B, O, Ho, Wo) -> contiguous (G, O/G, B*Ho*Wo): a block's output or gradient as a GEMM operand."""
    B, O = y.shape[:2]
    return xp.ascontiguousarray(y.reshape(B, O, -1).transpose(1, 0, 2)).reshape(G, O // G, -1)


def _channel_sums(g):
    """A bias's gradient: g (N, C, H, W) summed over all but C. Per sample first, which keeps the
    first axis and so splits over the threads (engine/_parallel.py's reduce), then over the samples."""
    return g.sum((2, 3)).sum(0)


class Convolution(Op):
    """y = conv(x, w) + b: per block of samples, im2col then one GEMM per group. ``out`` fixes the
    output size (only the backward of a transposed convolution with a large output_padding needs one
    smaller than what the input allows)."""
    save_inputs = True
    out = None

    def forward(self, x, w, b):
        xp, geo = self.xp, self.geo
        N, out, G, O = x.shape[0], self.out or geo.out_size(x.shape[2:]), geo.groups, w.shape[0]
        if _native.conv_fits(xp, geo, x, w, b):
            return _native.conv2d(x, w, b, geo, out)
        L = out[0] * out[1]
        wm = _offset_major(xp, w, G)
        bias = b.reshape(G, O // G, 1) if b is not None else None
        y = xp.empty((N, O) + tuple(out), dtype=x.dtype)
        rows = _Rows.fit(geo, x.shape[2:], out)
        blocks = _blocks(N, (w[0].size + O) * rows.grid, ROW_BLOCK) if rows else _blocks(N, w[0].size * L)

        def run(start, stop):
            for i, j in blocks[start:stop]:
                if rows:
                    cols = rows.cols(xp, x[i:j], G)  # (G, K * C/G, B * Ho*wp)
                else:
                    cols = _im2col(xp, x[i:j], geo, out, G, channel_major=True).reshape(G, -1, (j - i) * L)
                yb = xp.matmul(wm, cols)  # (G, O/G, B * columns per sample)
                if bias is not None:
                    yb += bias
                if rows:
                    rows.gather(yb.reshape(O, -1), y[i:j])
                else:
                    y[i:j].reshape(j - i, O, L).transpose(1, 0, 2)[...] = yb.reshape(O, j - i, L)

        _parallel.gemm_blocks(xp, len(blocks), run)
        return y

    def backward(self, g):
        x, w, b = self.inputs
        gx = gw = gb = None
        if self.needs_grad(0):
            gx = ConvolutionTranspose.apply(g, w, None, geo=self.geo, size=tuple(x.shape[2:]))
        if self.needs_grad(1):
            gw = ConvolutionWeight.apply(x, g, geo=self.geo)
        if self.needs_grad(2):
            gb = _channel_sums(g)
        return gx, gw, gb


class ConvolutionTranspose(Op):
    """The adjoint of Convolution in x: y (N, O, Ho, Wo) and w (O, C/groups, kh, kw) -> (N, C, *size).
    This is conv_transpose2d (its weight is laid out (in, out/groups, kh, kw), the same thing)."""
    save_inputs = True

    def forward(self, y, w, b):
        if _native.conv_fits(self.xp, self.geo, y, w, b, transposed=True):
            x = _native.conv2d_transpose(y, w, self.geo, self.size)
        else:
            x = self._by_columns(y, w)
        if b is not None:
            x += b.reshape(-1, 1, 1)
        return x

    def _by_columns(self, y, w):
        xp, geo = self.xp, self.geo
        (N, O), G, K, Cg = y.shape[:2], geo.groups, geo.kernel[0] * geo.kernel[1], w.shape[1]
        wt = xp.ascontiguousarray(_offset_major(xp, w, G).transpose(0, 2, 1))  # (G, K * C/G, O/G)
        x = xp.empty((N, G * Cg) + tuple(self.size), dtype=y.dtype)
        rows = _Rows.fit(geo, self.size, y.shape[2:])
        per_sample = K * Cg * G * (rows.grid if rows else y.shape[2] * y.shape[3])
        blocks = _blocks(N, per_sample + O * rows.grid, ROW_BLOCK) if rows else _blocks(N, per_sample)

        def run(start, stop):
            for i, j in blocks[start:stop]:
                if rows:
                    rows.col2im(xp, xp.matmul(wt, rows.spread(xp, y[i:j], G)), x[i:j])
                    continue
                cols = xp.matmul(wt, _channel_major(xp, y[i:j], G))  # (G, K * C/G, B*L)
                dst = x[i:j].reshape((j - i, G, Cg) + tuple(self.size)).transpose(1, 2, 0, 3, 4)  # a view
                _col2im(xp, cols.reshape((G, K, Cg, j - i) + y.shape[2:]), geo, self.size, dst)

        _parallel.gemm_blocks(xp, len(blocks), run)
        return x

    def backward(self, h):
        y, w, b = self.inputs
        gy = gw = gb = None
        if self.needs_grad(0):
            gy = Convolution.apply(h, w, None, geo=self.geo, out=tuple(y.shape[2:]))
        if self.needs_grad(1):
            gw = ConvolutionWeight.apply(h, y, geo=self.geo)
        if self.needs_grad(2):
            gb = _channel_sums(h)
        return gy, gw, gb


class ConvolutionWeight(Op):
    """The adjoint of Convolution in w: x (N, C, H, W) and y (N, O, Ho, Wo) -> (O, C/groups, kh, kw).
    A sum over the batch: per block of samples, one GEMM per group on channel-major operands; the
    blocks' sums are added in block order, so the result does not depend on the thread count. When the
    columns are thinner than the gradient (kh*kw*C < O, as in a first layer on one channel), each
    sample's gradient is multiplied as it lies, against that sample's columns: no copy of y at all."""
    save_inputs = True

    def forward(self, x, y):
        xp, geo = self.xp, self.geo
        if _native.conv_fits(xp, geo, x, y):
            return _native.conv2d_weight(x, y, geo)
        (N, C), (O, *out), G = x.shape[:2], y.shape[1:], self.geo.groups
        K, L = geo.kernel[0] * geo.kernel[1], out[0] * out[1]
        by_sample = G == 1 and K * C < O
        rows = None if by_sample else _Rows.fit(geo, x.shape[2:], out)
        if by_sample:
            blocks = _blocks(N, (K * C + O) * L)
        else:
            blocks = _blocks(N, (K * C + O) * rows.grid, ROW_BLOCK) if rows else _blocks(N, K * C * L)
        sums = xp.empty((len(blocks), G, O // G, K * (C // G)), dtype=x.dtype)

        def run(start, stop):
            for n, (i, j) in enumerate(blocks[start:stop], start):
                if by_sample:
                    cols = _im2col(xp, x[i:j], geo, out, 1).reshape(j - i, K * C, L)
                    xp.matmul(y[i:j].reshape(j - i, O, L), cols.transpose(0, 2, 1)).sum(0, out=sums[n, 0])
                    continue
                if rows:
                    cols, ys = rows.cols(xp, x[i:j], G), rows.spread(xp, y[i:j], G)
                else:
                    cols = _im2col(xp, x[i:j], geo, out, G, channel_major=True).reshape(G, K * (C // G), -1)
                    ys = _channel_major(xp, y[i:j], G)
                for k in range(G):  # 2-D GEMMs: numpy's stacked matmul leaves BLAS on a transposed operand
                    xp.matmul(ys[k], cols[k].T, out=sums[n, k])

        _parallel.gemm_blocks(xp, len(blocks), run)
        gw = sums.sum(0)
        gw = xp.ascontiguousarray(gw.reshape(O, K, C // G).transpose(0, 2, 1))  # back to (O, C/G, K)
        return gw.reshape((O, C // G) + geo.kernel)

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
        cols = _im2col(self.xp, x, self.geo, out, groups=x.shape[1])  # (N, C, K, 1, Ho, Wo)
        return cols.reshape(x.shape[0], cols.shape[1] * cols.shape[2], out[0] * out[1])

    def backward(self, g):
        return Col2Im.apply(g, geo=self.geo, size=self.size)


class Col2Im(Op):
    """fold: (N, C*kh*kw, L) -> (N, C, *size), summing overlapping windows."""

    def forward(self, cols):
        N, K = cols.shape[0], self.geo.kernel[0] * self.geo.kernel[1]
        out = self.geo.out_size(self.size)
        return _col2im(self.xp, cols.reshape((N * (cols.shape[1] // K), K) + out), self.geo, self.size).reshape(
            (N, cols.shape[1] // K) + tuple(self.size))

    def backward(self, g):
        return Im2Col.apply(g, geo=self.geo)


# ---- pooling -------------------------------------------------------------------------------------

def _scatter_windows(xp, piece, geo: Geometry, shape, out, dtype):
    """Sum each kernel offset's (N, C, Ho, Wo) contribution into the windows of an (N, C, *shape) input.
    ``piece(k, i, j, out=None)`` computes offset k's contribution for samples i:j like a ufunc (into
    ``out`` when given). Without overlap each position belongs to one window, so pieces are written
    straight into place. Samples are split over the threads."""
    overlap = geo.overlapping
    tiled = (not overlap and geo.kernel == geo.stride and geo.dilation == (1, 1)
             and geo.padded(shape[2:]) == tuple(o * s for o, s in zip(out, geo.stride)))
    # windows that tile the padded input write every position: no zero fill needed
    buf = (xp.empty if tiled else xp.zeros)(tuple(shape[:2]) + geo.padded(shape[2:]), dtype=dtype)
    offsets = geo.offsets(out)

    def run(i, j):
        for k, (rows, cs) in offsets:
            if overlap:
                buf[i:j, :, rows, cs] += piece(k, i, j)
            else:
                piece(k, i, j, out=buf[i:j, :, rows, cs])

    _parallel.split(xp, shape[0], run, per_item=math.prod(buf.shape[1:]))
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
    its last NaN.) Works on the strided views of each kernel offset, without copying them out: the max
    is a chain of pairwise maxima, and the argmax counts the leading offsets strictly below the max (the
    first offset not below it is the first maximum; every comparison with NaN is false). Samples are
    split over the threads. MaxPool2d(2)'s windows on float32 have a kernel of their own (_native.py)."""
    if _native.pool_2x2_fits(xp, x, geo, out):
        return _native.max_pool_2x2(x)
    offsets = geo.offsets(out)
    best = xp.empty(x.shape[:2] + tuple(out), dtype=x.dtype)
    arg = xp.zeros(best.shape, dtype=xp.int8 if len(offsets) <= 127 else xp.int32)
    fill = -xp.inf if x.dtype.kind == "f" else xp.iinfo(x.dtype).min

    def run(i, j):
        buf = _pad(xp, x[i:j], geo, fill=fill)
        views = [buf[:, :, rows, cs] for _, (rows, cs) in offsets]
        b, a = best[i:j], arg[i:j]
        if len(views) == 1:
            b[...] = views[0]
            return
        xp.maximum(views[0], views[1], out=b)
        for v in views[2:]:
            xp.maximum(b, v, out=b)
        below = xp.less(views[0], b)
        a += below
        if len(views) > 2:
            tmp = xp.empty_like(below)
            for v in views[1:-1]:
                below &= xp.less(v, b, out=tmp)
                a += below

    _parallel.split(xp, x.shape[0], run, per_item=math.prod(x.shape[1:]))
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
        if arg.dtype == xp.int8 and _native.usable(xp, g) and arg.flags.c_contiguous and g.shape == arg.shape:
            return _native.max_pool_backward(g, arg, self.shape, self.geo)
        return _scatter_windows(xp, lambda k, i, j, out=None: xp.multiply(g[i:j], arg[i:j] == k, out=out),
                                self.geo, self.shape, g.shape[2:], g.dtype)

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
        return _scatter_windows(xp, lambda k, i, j, out=None: xp.divide(g[i:j], divisor, out=out), self.geo,
                                self.shape, self.out, g.dtype)

    def backward(self, h):
        return AvgPool2D.apply(h, geo=self.geo, out=self.out, divisor=self.divisor)
