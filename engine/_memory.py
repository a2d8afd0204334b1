"""Host memory: keep what the process frees for its next allocation (glibc's malloc).

A training step allocates and frees the same large arrays (activations, gradients, scratch) every
step. By default glibc serves blocks above a threshold (128 KiB, raised as big blocks are freed, at
most 32 MiB) with fresh ``mmap`` pages and hands freed memory back to the kernel, so each step faults
every page of those arrays in again, and the kernel zeroes each one: on W3 (benchmarks/workloads.py)
that was ~9,000 page faults and ~60 ms of system time per step. Raising the mmap and trim thresholds
keeps freed blocks in the heap for reuse, as PyTorch's caching allocators do for their memory; the
peak footprint stays what the step needs, and the process no longer shrinks after it.

It changes the whole process's allocator, so a library does not do it behind its host's back:
``engine.keep_freed_memory()`` is called by whoever owns the process (Fita's workers do, at start).
On Linux with glibc only; ``ENGINE_KEEP_FREED_MEMORY=0`` in the environment makes it a no-op.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc's malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit machines: bigger blocks are still mapped
TRIM_THRESHOLD = 1 << 30  # free memory at the top of the heap kept before any goes back to the kernel

kept = False  # whether keep_freed_memory() took effect in this process (a forked child inherits it)


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; whether it took effect."""
    global kept
    if os.environ.get("ENGINE_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return kept
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt to call (not glibc)
        return kept
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return kept
