"""Devices and their array modules. The only module that knows numpy from CuPy: ops ask a tensor's
device for its ``xp`` and write their math once against it. CuPy is imported lazily, on first use
of a "cuda" device, so CPU-only machines never need it."""
from __future__ import annotations

import numpy as np

from . import _native

_cupy = None
_cupy_error: Exception | None = None


def _import_cupy():
    global _cupy, _cupy_error
    if _cupy is None and _cupy_error is None:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception as e:  # ImportError, or CUDA missing/broken
            _cupy_error = e
    return _cupy


def cuda_is_available() -> bool:
    cp = _import_cupy()
    return cp is not None and cp.cuda.runtime.getDeviceCount() > 0


def cuda_device_count() -> int:
    return _import_cupy().cuda.runtime.getDeviceCount() if cuda_is_available() else 0


class device:
    """``engine.device("cpu")``, ``engine.device("cuda:1")``, ``engine.device("cuda", 0)``."""

    __slots__ = ("type", "index", "_xp")

    def __new__(cls, spec="cpu", index: int | None = None):
        if isinstance(spec, device):
            return spec
        if isinstance(spec, int):
            spec, index = "cuda", spec
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()):
            raise RuntimeError(f"invalid device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if idx:
            if index is not None:
                raise RuntimeError(f"device {spec!r} already has an index; do not pass index={index}")
            index = int(idx)
        if kind == "cpu":
            index = None
        elif index is None:
            index = 0
        key = (kind, index)
        cached = _devices.get(key)
        if cached is None:
            cached = object.__new__(cls)
            cached.type, cached.index = key
            cached._xp = np if kind == "cpu" else None
            _devices[key] = cached
        return cached

    @property
    def xp(self):
        """The array module for this device: numpy or cupy (checked once, then cached)."""
        if self._xp is None:
            self._xp = self._resolve_cuda()
        return self._xp

    def _resolve_cuda(self):
        cp = _import_cupy()
        if cp is None:
            raise RuntimeError(
                f"device {self} needs CuPy and an NVIDIA GPU, but CuPy could not be used "
                f"({_cupy_error!r}). Install the 'cuda' extra (pip install 'fita[cuda]') on a machine "
                "with a GPU, or use device='cpu'.")
        if self.index >= cp.cuda.runtime.getDeviceCount():
            raise RuntimeError(f"device {self} does not exist: "
                               f"{cp.cuda.runtime.getDeviceCount()} CUDA device(s) visible")
        return cp

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self) -> str:
        return (f"device(type='{self.type}')" if self.index is None
                else f"device(type='{self.type}', index={self.index})")

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (RuntimeError, TypeError):
                return False
        return self is other

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


_devices: dict = {}
CPU = device("cpu")


def device_of_array(arr) -> device:
    """The device an array lives on (numpy -> cpu, cupy -> cuda:N)."""
    if isinstance(arr, np.ndarray) or np.isscalar(arr):
        return CPU
    return device("cuda", arr.device.id)


def to_device(arr, dev: device):
    """Copy an array to ``dev`` (no copy when it is there already)."""
    src = device_of_array(arr)
    if src is dev:
        return arr
    if dev.type == "cpu":
        return arr.get()
    cp = dev.xp
    with cp.cuda.Device(dev.index):
        return cp.asarray(arr)


def scatter_add(xp, target, index, values) -> None:
    """target[index] += values, accumulating over repeated indices (numpy's ufunc.at, cupyx on GPU; rows
    picked by one integer array, as an embedding's gradient, by a fused CPU kernel)."""
    if xp is np:
        if not (type(index) is tuple and len(index) == 1 and _native.ready
                and _native.index_add_rows(target, index[0], values)):
            np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


try:  # numpy keeps its error state in a context variable: setting it costs ~0.3 µs, np.errstate ~2 µs
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj
    _QUIET = _make_extobj(all="ignore")  # (with numpy's default buffer size and no error callback)
except (ImportError, TypeError):  # another numpy's internals: np.errstate, as documented
    _extobj_contextvar = None


class ieee:
    """``with ieee(xp):`` inf and nan results (log(0), 1/0, 0*inf, exp(1000), a cast that overflows)
    are answers, not warnings, as in PyTorch. A no-op for cupy, which does not warn. The ops whose
    results may be inf or nan enter it on every call, so it sets numpy's error state itself where
    numpy's internals allow (one context-variable set), as np.errstate does."""

    __slots__ = ("on", "state")

    def __init__(self, xp):
        self.on = xp is np

    def __enter__(self):
        if self.on:
            if _extobj_contextvar is not None:
                self.state = _extobj_contextvar.set(_QUIET)
            else:
                self.state = np.errstate(all="ignore")
                self.state.__enter__()

    def __exit__(self, *exc):
        if self.on:
            if _extobj_contextvar is not None:
                _extobj_contextvar.reset(self.state)
            else:
                self.state.__exit__(*exc)


def quietly(xp, fn, *args):
    """``fn(*args)`` inside ``ieee(xp)``, in one call: the binary ops' path, taken at every ``a + b``."""
    if xp is not np or _extobj_contextvar is None:
        with ieee(xp):
            return fn(*args)
    token = _extobj_contextvar.set(_QUIET)
    try:
        return fn(*args)
    finally:
        _extobj_contextvar.reset(token)
