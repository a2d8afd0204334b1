"""``engine.cuda``: what PyTorch code asks about the GPU."""
from __future__ import annotations

from .backend import cuda_device_count, cuda_is_available, device as _device


def is_available() -> bool:
    return cuda_is_available()


def device_count() -> int:
    return cuda_device_count()


def current_device() -> int:
    if not is_available():
        raise RuntimeError("no CUDA device is available")
    return _device("cuda").xp.cuda.runtime.getDevice()


def synchronize(device=None) -> None:
    if is_available():
        _device(device if device is not None else "cuda").xp.cuda.Device().synchronize()


def manual_seed(seed: int) -> None:
    from .random import generator_for
    if is_available():
        generator_for(_device("cuda"), None).manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    from .random import generator_for
    for i in range(device_count()):
        generator_for(_device("cuda", i), None).manual_seed(seed)


def max_memory_allocated(device=None) -> int:
    """Bytes held by CuPy's memory pool at its peak is not tracked by CuPy; this reports the pool's
    current total, the closest figure it offers."""
    if not is_available():
        return 0
    return _device("cuda").xp.get_default_memory_pool().total_bytes()
