"""The engine's fused CPU kernels (engine/_kernels.c), built as a plain shared library that
engine/_native.py loads with ctypes. Optional: where no C compiler is found the build goes on
without it and the engine runs the same operations in numpy. Everything else is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "engine._kernels", ["engine/_kernels.c", "engine/_pool.c"], depends=["engine/_pool.h"],
    optional=True,
    # no fused multiply-adds: the elementwise kernels must round exactly as the numpy code they replace
    extra_compile_args=["-O3", "-ffp-contract=off", "-fno-math-errno", "-std=c11"],
)])
