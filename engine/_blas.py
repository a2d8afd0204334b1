"""The engine's matrix products: MKL's GEMM where the ``mkl`` package is installed (a dependency on
x86-64 Linux), large ones split over the engine's threads; numpy's BLAS (OpenBLAS) everywhere else.

Why: the reference workloads spend most of a CPU step in GEMMs of a few shapes (docs/benchmarks.md), and
there numpy's OpenBLAS 0.3.31 (its SkylakeX kernels) runs 15-25% behind MKL, the GEMM PyTorch uses:
4096x1024x256 in 11.2 ms against 9.1 on two cores. MKL is loaded with ctypes from the ``mkl`` wheel's
runtime library and set to run sequentially: each product's rows (or columns) are split over the
engine's own C thread pool (``_native.run``, engine/_pool.c), so no second pool of threads (MKL's
OpenMP, spinning after each call like OpenBLAS's did, docs/engine.md "Threads") competes for the cores.
Without the engine's C library (no compiler at install) every product stays on numpy.

Products below ``MIN_MACS`` multiply-adds run on the calling thread, through engine._cblas (a CPython
module: ctypes and its pointer lookups cost ~6 us a call): OpenBLAS's small kernels are slow in one
layout, ``h @ W.T`` (an RNN's step, a Linear on a small batch): 24 us against MKL's 12.5 for 32x128x128,
and MKL is as fast or faster in the others (docs/engine.md "Matrix products"). Below ``MIN_SMALL_MACS``
numpy's call costs less.

``ENGINE_BLAS=numpy`` in the environment keeps every product on numpy. CuPy arrays never come here.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from . import _native, _parallel

try:
    from . import _cblas  # MKL's GEMM for small products, called with little overhead (engine/_cblas.c)
except ImportError:  # built without a C compiler
    _cblas = None

MIN_MACS = 1 << 22  # multiply-adds from which a product is split over the threads
MIN_SMALL_MACS = 1 << 16  # multiply-adds below which numpy's BLAS takes the product (its call costs less)
SPLIT_MACS = 1 << 21  # multiply-adds per thread at least when a product is split by rows
_NO_TRANS, _TRANS = 111, 112  # CBLAS's flags
_MKL_THREADING_SEQUENTIAL, _MKL_INTERFACE_LP64 = 1, 0
_INT_MAX = 2**31 - 1  # MKL's LP64 interface takes 32-bit sizes


def _load_mkl():
    """The addresses of MKL's cblas_sgemm and cblas_dgemm by dtype, or None (not installed, no C pool to
    split them, or ENGINE_BLAS=numpy)."""
    if os.environ.get("ENGINE_BLAS", "mkl").lower() != "mkl" or not _native.ready:
        return None
    from importlib import metadata
    try:
        files = metadata.files("mkl") or ()
    except metadata.PackageNotFoundError:
        return None
    path = next((f.locate() for f in files if f.name.startswith("libmkl_rt.so")), None)
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        # before any other call: sequential kernels, 32-bit integers
        lib.MKL_Set_Threading_Layer(_MKL_THREADING_SEQUENTIAL)
        lib.MKL_Set_Interface_Layer(_MKL_INTERFACE_LP64)
        fns = {np.dtype(np.float32): lib.cblas_sgemm, np.dtype(np.float64): lib.cblas_dgemm}
    except (OSError, AttributeError):
        return None
    return {dtype: ctypes.cast(fn, ctypes.c_void_p).value for dtype, fn in fns.items()}


_GEMM = _load_mkl()
mkl = _GEMM is not None  # whether MKL serves the large products in this process


def _layout(x):
    """(transpose flag, leading dimension) of a 2-D array whose rows or columns are contiguous (a
    transposed view is the second), or None for any other layout."""
    size = x.itemsize
    s0, s1 = x.strides
    if s1 == size and s0 % size == 0 and s0 >= max(1, x.shape[1]) * size:
        return _NO_TRANS, s0 // size
    if s0 == size and s1 % size == 0 and s1 >= max(1, x.shape[0]) * size:
        return _TRANS, s1 // size
    return None


def _mkl_matmul(a, b, bias):
    """a @ b (+ bias) on MKL, or None when this product is not one for it."""
    fn = _GEMM.get(a.dtype)
    if (fn is None or b.dtype != a.dtype or type(a) is not np.ndarray or type(b) is not np.ndarray
            or a.ndim != 2 or b.ndim != 2):
        return None
    (m, k), n = a.shape, b.shape[1]
    if m * n * k < MIN_MACS or max(m, n, k) > _INT_MAX:  # (matmul checks the size first: small ones are many)
        return None
    la, lb = _layout(a), _layout(b)
    if la is None or lb is None or (bias is not None and (bias.dtype != a.dtype or bias.shape != (n,))):
        return None
    (ta, lda), (tb, ldb) = la, lb
    if max(lda, ldb) > _INT_MAX:
        return None
    out = np.empty((m, n), a.dtype)
    item = a.itemsize
    # Each thread packs all of the operand it does not split: split the rows of C (A's rows) when B
    # (k x n) is the smaller one to pack twice, else its columns (W3's second feed-forward layer's weight
    # gradient: a B of 4096 x 1024, 16 MB, 17 -> 14 ms). The steps: bytes from one row (or column) of
    # op(A), op(B) and C to the next, where the split goes.
    by_rows = n <= m
    if by_rows:
        steps = ((lda if ta == _NO_TRANS else 1) * item, 0, n * item)
    else:
        steps = (0, (1 if tb == _NO_TRANS else ldb) * item, item)
    if bias is not None:  # C = bias + A B: each part copies its share of the bias into C, then adds A B
        bias = np.ascontiguousarray(bias)
    total, other = (m, n) if by_rows else (n, m)
    _native.run(_native.GEMM_TASK, total, max(1, other * k * _parallel.GRAIN // SPLIT_MACS), fn,
                a.dtype == np.float64, ta, tb, by_rows, m, n, k, lda, ldb, a.ctypes.data, b.ctypes.data,
                out.ctypes.data, *steps, None if bias is None else bias.ctypes.data)
    return out


def _mkl_small(a, b):
    """a @ b on MKL on this thread through engine._cblas, or None when it does not take these arrays
    (another dtype, or neither rows nor columns contiguous)."""
    fn = _GEMM.get(a.dtype)
    if fn is None or type(a) is not np.ndarray or type(b) is not np.ndarray:
        return None
    out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    try:
        _cblas.gemm(fn, a, b, out)
    except ValueError:
        return None
    return out


def matmul(xp, a, b, bias=None):
    """``a @ b``, plus ``bias`` (broadcast over the rows) when given: MKL for 2-D float products on numpy
    arrays where it is loaded (split over the threads from ``MIN_MACS`` multiply-adds, on this thread
    from ``MIN_SMALL_MACS``), ``xp.matmul`` otherwise."""
    out = None
    if _GEMM is not None and xp is np and a.ndim == 2 == b.ndim:
        macs = a.shape[0] * a.shape[1] * b.shape[1]
        if macs >= MIN_MACS:
            out = _mkl_matmul(a, b, bias)  # (the bias inside the GEMM)
            if out is not None:
                return out
        elif macs >= MIN_SMALL_MACS and _cblas is not None:
            out = _mkl_small(a, b)
    if out is None:
        out = xp.matmul(a, b)
    if bias is not None:
        out += bias
    return out
