"""Fita's engine: tensors with a tape-based, define-by-run autograd, on numpy (CPU) or CuPy (GPU),
with PyTorch's names. ``import engine`` and write what you would write with ``torch``."""
from __future__ import annotations

from . import dtypes as _dtypes
from .dtypes import (bool_ as bool, dtype, float16, float32, float64, get_default_dtype, int8, int16, int32,
                     int64, promote_types, set_default_dtype, uint8)
from .backend import device
from .tensor import Size, Tensor
from . import ops as _ops  # binds methods onto Tensor
from .ops.elementwise import (abs, add, allclose, bitwise_and, bitwise_not, bitwise_or, bitwise_xor, ceil,
                              clamp, clip, cos, div, divide, eq, equal, erf, exp, expm1, floor, floor_divide,
                              ge, gt, isclose, isfinite, isinf, isnan, le, lerp, log, log1p, log2,
                              logical_and, logical_not, logical_or, logical_xor, lt, maximum, minimum, mul,
                              multiply, ne, neg, negative, pow, reciprocal, relu, remainder, round, rsqrt,
                              sigmoid, sign, sin, sqrt, square, sub, subtract, tanh, true_divide, trunc, where)
from .ops.reduce import (all, amax, amin, any, argmax, argmin, count_nonzero, cumsum, log_softmax,
                         logsumexp, max, mean, min, norm, prod, softmax, std, sum, var)
from .ops.shape import (broadcast_to, cat, chunk, clone, concat, concatenate, flatten, flip, movedim, narrow,
                        permute, repeat, reshape, roll, split, squeeze, stack, swapaxes, swapdims, t,
                        transpose, tril, triu, unbind, unflatten, unsqueeze)
from .ops.index import (gather, index_add, index_select, masked_fill, masked_select, nonzero, scatter,
                        scatter_add, take_along_dim)
from .ops.linalg import bmm, dot, einsum, ger, matmul, mm, mv, outer
from .creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace,
                       logspace, normal, ones, ones_like, rand, rand_like, randint, randint_like, randn,
                       randn_like, randperm, tensor, zeros, zeros_like)
from .random import Generator, default_generator, get_rng_state, initial_seed, manual_seed, seed, set_rng_state
from .serialization import load, save
from ._format import set_printoptions
from . import _parallel
from ._parallel import get_num_threads, set_num_threads
from ._memory import keep_freed_memory
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from . import autograd, cuda, nn, utils
from . import optim

_parallel.quiet_blas_threads()

# PyTorch's aliases
float = float32
double = float64
half = float16
long = int64
int = int32
short = int16


def is_tensor(obj) -> bool:
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> bool:
    return input.is_floating_point()


def numel(input: Tensor) -> int:
    return input.numel()


def result_type(tensor1, tensor2) -> dtype:
    return _dtypes.result_type(tensor1, tensor2)


def detach(input: Tensor) -> Tensor:
    return input.detach()


__version__ = "0.1.0"
