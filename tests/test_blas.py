"""engine/_blas.py: matrix products on MKL where the mkl package is installed (it is, where the suite
runs on x86-64 Linux): large ones split over the threads, small ones through engine._cblas, with the
same results as numpy's within float rounding, for every layout they take; the others, and tiny
products, stay on numpy. And the layers that use it against torch."""
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine import _blas, _parallel
from helpers import check, randn

needs_mkl = pytest.mark.skipif(not _blas.mkl, reason="MKL is not loaded here (no mkl package, or ENGINE_BLAS)")
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-13}  # relative to the product's norm


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def test_mkl_is_loaded_where_it_is_installed():
    # pyproject.toml installs it on x86-64 Linux: a loading failure there must not pass unnoticed
    if os.environ.get("ENGINE_BLAS", "mkl") == "mkl" and _installed("mkl"):
        assert _blas.mkl


def test_engine_blas_numpy_keeps_every_product_on_numpy():
    code = "import engine._blas as b; print(b.mkl)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ENGINE_BLAS": "numpy"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _operand(shape, transposed: bool, dtype, seed: int):
    """A (rows, cols) matrix, stored transposed (an F-ordered view) when asked."""
    a = randn(*(shape[::-1] if transposed else shape), seed=seed, dtype=dtype)
    return a.T if transposed else a


def _assert_close(got, a, b, bias=None):
    ref = a.astype(np.float64) @ b.astype(np.float64) + (0 if bias is None else bias.astype(np.float64))
    assert got.shape == ref.shape and got.dtype == a.dtype
    assert np.linalg.norm(got - ref) <= TOL[a.dtype.type] * np.linalg.norm(ref)


@needs_mkl
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("m,n", [(301, 129), (129, 301)], ids=["rows split", "columns split"])
def test_mkl_products_in_every_layout(dtype, ta, tb, with_bias, m, n):
    k = 257  # odd sizes: ranges split unevenly; > MIN_MACS
    a, b = _operand((m, k), ta, dtype, 1), _operand((k, n), tb, dtype, 2)
    bias = randn(n, seed=3, dtype=dtype) if with_bias else None
    assert _blas._mkl_matmul(a, b, bias) is not None, "MKL should take this product"
    _assert_close(_blas.matmul(np, a, b, bias=bias), a, b, bias)


@needs_mkl
def test_rows_with_gaps_and_the_thread_split():
    """A row-strided view (a slice of wider rows) goes to MKL as is; the result is right however
    many threads share the rows (or, for a wide product, the columns)."""
    wide = randn(1024, 600, seed=4)
    for a, b in ((wide[:, :512], randn(512, 300, seed=5)), (wide[:300, :512], randn(512, 700, seed=6))):
        out = {}
        for threads in (1, 3):
            old = _parallel.get_num_threads()
            _parallel.set_num_threads(threads)
            try:
                out[threads] = _blas._mkl_matmul(a, b, None)
            finally:
                _parallel.set_num_threads(old)
        _assert_close(out[1], a, b)
        _assert_close(out[3], a, b)


@pytest.mark.parametrize("case", ["small", "strided both ways", "mixed dtypes", "1-D", "3-D"])
def test_what_mkl_does_not_take_runs_on_numpy(case):
    a, b = randn(300, 300, seed=6), randn(300, 300, seed=7)
    if case == "small":
        a, b = a[:8, :8].copy(), b[:8, :8].copy()
    elif case == "strided both ways":
        a = randn(600, 600, seed=8)[::2, ::2]
    elif case == "mixed dtypes":
        b = b.astype(np.float64)
    elif case == "1-D":
        b = b[:, 0].copy()
    else:
        a = np.stack([a, a])
    assert not _blas.mkl or _blas._mkl_matmul(a, b, None) is None
    np.testing.assert_allclose(_blas.matmul(np, a, b), a @ b, rtol=1e-5, atol=1e-4)


needs_small = pytest.mark.skipif(not _blas.mkl or _blas._cblas is None, reason="no MKL or no engine._cblas here")


@needs_small
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_small_mkl_products_in_every_layout(dtype, ta, tb, with_bias):
    m, k, n = 33, 97, 41  # MIN_SMALL_MACS <= m * k * n < MIN_MACS: on this thread, through engine._cblas
    assert _blas.MIN_SMALL_MACS <= m * k * n < _blas.MIN_MACS
    a, b = _operand((m, k), ta, dtype, 15), _operand((k, n), tb, dtype, 16)
    bias = randn(n, seed=17, dtype=dtype) if with_bias else None
    assert _blas._mkl_small(a, b) is not None, "MKL should take this product"
    _assert_close(_blas.matmul(np, a, b, bias=bias), a, b, bias)


@needs_small
@pytest.mark.parametrize("case", ["strided both ways", "mixed dtypes", "integers"])
def test_small_products_mkl_does_not_take_run_on_numpy(case):
    a, b = randn(40, 90, seed=18), randn(90, 50, seed=19)
    if case == "strided both ways":
        a = randn(80, 180, seed=20)[::2, ::2]
    elif case == "mixed dtypes":
        b = b.astype(np.float64)
    else:
        a, b = (a * 10).astype(np.int64), (b * 10).astype(np.int64)
    assert _blas._mkl_small(a, b) is None
    np.testing.assert_allclose(_blas.matmul(np, a, b), a @ b, rtol=1e-5, atol=1e-4)


@needs_small
def test_cblas_refuses_what_does_not_fit():
    fn = _blas._GEMM[np.dtype(np.float32)]
    a, b, out = randn(4, 5), randn(5, 6), np.empty((4, 6), np.float32)
    with pytest.raises(TypeError):
        _blas._cblas.gemm(fn, a, b)
    with pytest.raises(ValueError):
        _blas._cblas.gemm(fn, a, randn(4, 6), out)  # inner sizes differ
    with pytest.raises(ValueError):
        _blas._cblas.gemm(fn, a, b, np.empty((6, 4), np.float32).T)  # out's rows not contiguous
    with pytest.raises(ValueError):
        _blas._cblas.gemm(fn, a, b, np.empty((4, 6), np.float64))  # out of another dtype
    _blas._cblas.gemm(fn, a, b, out)
    _assert_close(out, a, b)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_large_linear_layer_against_torch(dtype):
    """Linear's forward (bias in the GEMM) and its three gradients at a size MKL serves."""
    x, w, b = randn(4, 96, 256, seed=9, dtype=dtype), randn(320, 256, seed=10, dtype=dtype), randn(320, seed=11, dtype=dtype)
    rtol, atol = (1e-10, 1e-10) if dtype == np.float64 else (1e-5, 1e-4)  # (as below)
    check(lambda m, x, w, b: m.nn.functional.linear(x, w, b), x, w, b, rtol=rtol, atol=atol)


@pytest.mark.torch
def test_large_matmuls_against_torch():
    # sums of 256-512 products: values of magnitude ~20 whose rounding is ~1e-6 of that (float32)
    tol = {"rtol": 1e-5, "atol": 1e-4}
    a, b = randn(384, 256, seed=12), randn(256, 512, seed=13)
    check(lambda m, a, b: a @ b, a, b, **tol)
    check(lambda m, x, y: x.T @ y.T, a.T.copy(), b.T.copy(), **tol)  # both transposed
    check(lambda m, a, b: a @ b, randn(3, 128, 256, seed=14), b, **tol)
