"""Intra-op threads for the CPU's big elementwise passes.

numpy's ufuncs run on one core, but release the GIL while they loop; BLAS has its own threads. A pass
over a large contiguous array (relu, its gradient, an optimizer's update) is therefore split into one
range per thread, ``torch.set_num_threads``-style: ``engine.set_num_threads(n)`` (default: the cores
this process may run on). Small arrays stay on the calling thread, where a hand-off would cost more
than it saves, and so does everything on CuPy.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as _np

GRAIN = 1 << 17  # elements per thread at least
CHUNK = 1 << 15  # a multi-pass kernel walks its range in pieces this long, so its passes stay in cache

_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None
_local = threading.local()  # set inside the pool's workers: no nested splitting


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads: it starts its own pool if needed


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def set_num_threads(n: int) -> None:
    global _threads, _pool
    if int(n) < 1:
        raise ValueError(f"set_num_threads: expected a positive number of threads, got {n}")
    _threads = int(n)
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def get_num_threads() -> int:
    return _threads


def _mark_worker():
    _local.worker = True


def parts(n: int, per_item: int = 1) -> int:
    """Over how many threads n items of ``per_item`` elements each are split: one per thread when they
    are enough work, at most one per ``GRAIN`` elements; 1 inside a worker (no nested splitting)."""
    k = min(_threads, n, n * per_item // GRAIN)
    return 1 if k <= 1 or getattr(_local, "worker", False) else k


def parallel_for(n: int, fn, per_item: int = 1) -> None:
    """``fn(start, stop)`` over ranges covering [0, n): one range per thread when the n items (of
    ``per_item`` elements each) are enough work, the first on the calling thread. ``fn`` must release
    the GIL to gain anything (numpy ufuncs do). The C kernels have a pool of their own (_pool.c)."""
    global _pool
    k = parts(n, per_item)
    if k == 1:
        fn(0, n)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(_threads - 1, thread_name_prefix="engine", initializer=_mark_worker)
    bounds = [n * i // k for i in range(k + 1)]
    # each worker runs in a copy of the caller's context: numpy's error state (``with ieee(xp)``) lives
    # in a context variable, and an op's quiet inf/nan must stay quiet in every thread
    futures = [_pool.submit(contextvars.copy_context().run, fn, bounds[i], bounds[i + 1]) for i in range(1, k)]
    try:
        fn(bounds[0], bounds[1])
    except BaseException:
        for f in futures:
            if not f.cancel():
                f.exception()  # wait: a running worker still writes into the caller's arrays
        raise
    for i, f in enumerate(futures, 1):
        if f.cancel():  # not started: on a busy machine the caller takes it rather than wait for a core
            fn(bounds[i], bounds[i + 1])
        else:
            f.result()


_blas = None  # threadpoolctl's controllers of the BLAS libraries loaded (looked up on first use)
_blas_saved: list = []  # their thread counts while a block holds them at one
_blas_lock = threading.Lock()
_blas_users = 0

BLAS_IDLE_SPIN = 16  # log2 of the cycles an idle OpenBLAS thread spins before it sleeps: ~30 µs


def _blas_controllers() -> list:
    """threadpoolctl's controllers of the loaded BLAS libraries; none without threadpoolctl (a dependency
    of the install, but a bare checkout run by another python, as on a lent GPU machine, may lack it:
    the engine then leaves BLAS's threads as they are rather than fail to import)."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas = []
        else:
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
    return _blas


def quiet_blas_threads() -> None:
    """Make OpenBLAS's idle threads sleep ~30 µs after a GEMM instead of spinning ~0.1 s (its default,
    2**28 cycles) waiting for the next. Spinning, they hold cores that the engine's own threads (a
    convolution's blocks, a split elementwise pass) and any other framework in the process need: W2's
    step took 1.4x as long with them, and PyTorch's steps run in the same process by the benchmark
    took up to 3x as long. Unless ``OPENBLAS_THREAD_TIMEOUT`` is set already (the user's choice
    stands), it is set here for an OpenBLAS loaded later and for child processes, and one loaded
    already (numpy imported before the engine) re-reads it and restarts its threads, which start
    again on the next call (as after a fork). Called once, by ``import engine``."""
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_IDLE_SPIN)
    with _blas_lock:
        for c in _blas_controllers():
            lib = c.dynlib  # threadpoolctl's handle on the loaded library
            if c.internal_api == "openblas" and hasattr(lib, "openblas_read_env") and hasattr(lib, "blas_thread_shutdown_"):
                lib.openblas_read_env()
                lib.blas_thread_shutdown_()


@contextlib.contextmanager
def _one_blas_thread():
    """BLAS on one thread while the block runs (nested and concurrent blocks share the setting)."""
    global _blas_saved, _blas_users
    with _blas_lock:
        _blas_controllers()
        if _blas_users == 0:
            _blas_saved = [c.num_threads for c in _blas]
            for c in _blas:
                c.set_num_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for c, n in zip(_blas, _blas_saved):
                    c.set_num_threads(n)


def gemm_blocks(xp, n: int, fn) -> None:
    """``fn(start, stop)`` over ranges of ``n`` independent blocks of work that run their own GEMMs:
    one range per thread, with BLAS on one thread meanwhile (a pool of BLAS threads beside the
    engine's, on the same cores, only gets in the way, and small GEMMs split badly). One ``fn(0, n)``
    on CuPy, with one thread, or inside a worker."""
    if xp is not _np or min(_threads, n) <= 1 or getattr(_local, "worker", False):
        fn(0, n)
        return
    with _one_blas_thread():
        parallel_for(n, fn, per_item=GRAIN)


def batched_matmul(xp, a, b):
    """``xp.matmul(a, b)`` for stacks of matrices with the same batch dims: on numpy, the stack split
    along its first dim over the threads, each part's small GEMMs on one BLAS thread. numpy calls BLAS
    once per matrix, and OpenBLAS splitting each small GEMM (attention's 128x128x64) over its own
    threads costs more in hand-offs than it gains: W3's attention products ran 20-45% faster split."""
    if (xp is not _np or a.ndim < 3 or a.shape[:-2] != b.shape[:-2] or a.shape[0] < 2
            or a.size + b.size < 2 * GRAIN):
        return xp.matmul(a, b)
    out = _np.empty(a.shape[:-1] + b.shape[-1:], dtype=_np.result_type(a, b))

    def run(start, stop):
        _np.matmul(a[start:stop], b[start:stop], out=out[start:stop])

    gemm_blocks(xp, a.shape[0], run)
    return out


def split(xp, n: int, fn, per_item: int = 1) -> None:
    """``parallel_for`` for numpy work; one ``fn(0, n)`` on CuPy, which queues its kernels itself."""
    if xp is _np:
        parallel_for(n, fn, per_item)
    else:
        fn(0, n)


def flat_views(xp, *arrays):
    """1-D views of same-sized C-contiguous numpy arrays (None passes through), or None when one of
    them is not such an array (then a kernel runs on the arrays whole)."""
    if xp is not _np:
        return None
    out = []
    size = None
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        if not a.flags.c_contiguous or (size is not None and a.size != size):
            return None
        size = a.size
        out.append(a.reshape(-1))
    return out


def map_chunks(xp, fn, *arrays, chunk: int | None = -1) -> None:
    """``fn(*pieces)`` over matching pieces of ``arrays`` (same size, updated in place): pieces of
    ``chunk`` elements (default CHUNK; None: one piece per thread), spread over the threads, when they
    are contiguous numpy arrays; else once on the whole arrays. Pieces that fit in the cache speed up
    kernels of many passes over several arrays."""
    flat = flat_views(xp, *arrays)
    if flat is None:
        fn(*arrays)
        return
    _over_pieces(fn, flat, next(a.size for a in flat if a is not None), CHUNK if chunk == -1 else chunk)


def _over_pieces(fn, views, n: int, step: int | None, per_item: int = 1) -> None:
    """``fn`` on pieces of ``step`` items (None: one piece per thread) of the first axis of ``views``
    (None entries pass through), the items spread over the threads."""
    def run(start, stop):
        size = step or max(stop - start, 1)
        for s in range(start, stop, size):
            e = min(s + size, stop)
            fn(*(None if v is None else v[s:e] for v in views))

    parallel_for(n, run, per_item=per_item)


def map_rows(xp, fn, *arrays, lead: int) -> None:
    """``fn(*pieces)`` over pieces of rows: the arrays' first ``lead`` dims (the same in each) are the
    rows, the rest of each array is what one row holds (it may differ between arrays: a softmax's
    scores and their row maxima). Pieces of whole rows, about CHUNK elements of the first array, are
    spread over the threads, so that a kernel of several passes (a softmax, a layer norm) makes them
    in cache. Once on the whole arrays when they are small (no pieces to make), on CuPy, or when one
    is not C-contiguous, so ``fn`` must work on any leading shape (reduce over trailing axes)."""
    if xp is not _np or arrays[0].size < 2 * GRAIN or any(not a.flags.c_contiguous for a in arrays):
        fn(*arrays)
        return
    n = math.prod(arrays[0].shape[:lead])
    views = [a.reshape((n,) + a.shape[lead:]) for a in arrays]
    per_row = views[0][0].size if n else 1
    _over_pieces(fn, views, n, max(1, CHUNK // max(per_row, 1)), per_item=per_row)


def ufunc(xp, f, *args, out=None, **kwargs):
    """``f(*args, out=out, **kwargs)`` for a numpy ufunc, split over the threads along the result's first
    axis when the result is big (operands that broadcast along that axis are passed whole)."""
    for a in args:
        if type(a) is _np.ndarray and a.size >= 2 * GRAIN and _threads > 1:
            break
    else:  # small (or CuPy) operands, or one thread: one call
        return f(*args, **kwargs) if out is None else f(*args, out=out, **kwargs)
    shape = _np.broadcast_shapes(*(a.shape for a in args if type(a) is _np.ndarray))
    rows = shape[0] if shape else 0
    if rows < _threads or (out is not None and out.shape != shape):
        return f(*args, out=out, **kwargs)
    if out is None:  # the result's dtype, as f decides it, from a call on one row
        dtype = f(*(a[:1] if type(a) is _np.ndarray and a.ndim == len(shape) else a for a in args),
                  **kwargs).dtype
        out = _np.empty(shape, dtype=dtype)
    split = [type(a) is _np.ndarray and a.ndim == len(shape) and a.shape[0] == rows for a in args]

    def run(start, stop):
        f(*(a[start:stop] if s else a for a, s in zip(args, split)), out=out[start:stop], **kwargs)

    parallel_for(rows, run, per_item=out.size // rows)
    return out


def reduce(xp, x, method: str, axis, keepdims: bool = False, **kwargs):
    """``x.<method>(axis=axis, keepdims=keepdims)`` (sum, mean, max, ...), split over the threads along
    the first axis when that axis is not reduced: each thread's rows are reduced in the same order as
    unsplit ones, so the result does not depend on the thread count."""
    if (_threads == 1 or type(x) is not _np.ndarray or x.size < 2 * GRAIN or axis is None
            or any(a % x.ndim == 0 for a in (axis if type(axis) is tuple else (axis,)))):
        return getattr(x, method)(axis=axis, keepdims=keepdims, **kwargs)
    first = getattr(x[:1], method)(axis=axis, keepdims=keepdims, **kwargs)
    out = _np.empty((x.shape[0],) + first.shape[1:], dtype=first.dtype)

    def run(start, stop):
        getattr(x[start:stop], method)(axis=axis, keepdims=keepdims, out=out[start:stop], **kwargs)

    parallel_for(x.shape[0], run, per_item=x.size // x.shape[0])
    return out
