"""The engine's compiled parts, both optional: where no C compiler is found the build goes on without
them and the engine runs the same operations in numpy. Everything else is in pyproject.toml.

- engine._kernels: the fused CPU kernels (engine/_kernels.c) and the thread pool that runs them
  (engine/_pool.c), built as a plain shared library that engine/_native.py loads with ctypes.
- engine._cblas: a CPython module that calls MKL's GEMM for small products with little overhead
  (engine/_cblas.c, used by engine/_blas.py)."""
from setuptools import Extension, setup

setup(ext_modules=[
    Extension(
        "engine._kernels", ["engine/_kernels.c", "engine/_pool.c"], depends=["engine/_pool.h"],
        optional=True,
        # no fused multiply-adds: the elementwise kernels must round exactly as the numpy code they replace
        extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno", "-std=c11"],
    ),
    Extension("engine._cblas", ["engine/_cblas.c"], optional=True, extra_compile_args=["-O2"]),
])
