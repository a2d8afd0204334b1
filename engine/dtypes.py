"""dtypes with PyTorch's names, and PyTorch's type-promotion rules (which differ from numpy's)."""
from __future__ import annotations

import numpy as np


class dtype:
    """A tensor element type, e.g. ``engine.float32``. Wraps one numpy dtype."""

    __slots__ = ("name", "np", "is_floating_point", "is_signed", "itemsize", "_rank")

    def __init__(self, name: str, np_dtype, rank: int):
        self.name = name
        self.np = np.dtype(np_dtype)
        self.is_floating_point = self.np.kind == "f"
        self.is_signed = self.np.kind in "fi"
        self.itemsize = self.np.itemsize
        self._rank = rank  # order within a category, for promotion

    @property
    def category(self) -> int:
        """0 bool, 1 integer, 2 floating point."""
        return 2 if self.is_floating_point else (0 if self.np.kind == "b" else 1)

    def __repr__(self) -> str:
        return f"engine.{self.name}"

    def __reduce__(self):  # copy, deepcopy and pickle keep identity
        return (_dtype_by_name, (self.name,))


def _dtype_by_name(name: str) -> "dtype":
    return _by_name[name]


bool_ = dtype("bool", np.bool_, 0)
uint8 = dtype("uint8", np.uint8, 1)
int8 = dtype("int8", np.int8, 1)
int16 = dtype("int16", np.int16, 2)
int32 = dtype("int32", np.int32, 3)
int64 = dtype("int64", np.int64, 4)
float16 = dtype("float16", np.float16, 1)
float32 = dtype("float32", np.float32, 2)
float64 = dtype("float64", np.float64, 3)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)
_by_name = {d.name: d for d in ALL}
_by_np = {d.np: d for d in ALL}

_default_float = float32


def get_default_dtype() -> dtype:
    return _default_float


def set_default_dtype(d: dtype) -> None:
    global _default_float
    d = as_dtype(d)
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating-point types are allowed, got {d}")
    _default_float = d


def as_dtype(d) -> dtype:
    """Accept an engine dtype, a numpy dtype/type, a Python type or a name like 'float32'.
    As in PyTorch, the Python type ``float`` means float64 (``torch.zeros(2, dtype=float)``)."""
    if isinstance(d, dtype):
        return d
    if d is float:
        return float64
    if d is int:
        return int64
    if d is bool:
        return bool_
    if isinstance(d, str) and d in _by_name:
        return _by_name[d]
    try:
        return _by_np[np.dtype(d)]
    except (TypeError, KeyError):
        raise TypeError(f"unsupported dtype {d!r}; use one of "
                        + ", ".join(f"engine.{n}" for n in _by_name)) from None


def from_numpy_dtype(npd) -> dtype:
    try:
        return _by_np[np.dtype(npd)]
    except KeyError:
        raise TypeError(f"numpy arrays of dtype {np.dtype(npd)} are not supported; supported: "
                        + ", ".join(str(d.np) for d in ALL)) from None


def promote_types(a: dtype, b: dtype) -> dtype:
    """The smallest dtype that holds both, as ``torch.promote_types`` (int64 + float16 -> float16)."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.category == 1 and (a is uint8) != (b is uint8):  # uint8 with a signed int
        other = b if a is uint8 else a
        return int16 if other is int8 else other
    return a if a._rank >= b._rank else b


def _combine_categories(higher, lower):
    """PyTorch's rule: a lower-priority operand changes the result only if its category is higher."""
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.is_floating_point:
        return higher
    if higher is bool_ or lower.category > higher.category:
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> dtype:
    """Result dtype of an elementwise op on tensors and Python scalars, by PyTorch's rules:
    dimensioned tensors decide; 0-d tensors, then Python scalars, count only when of a higher category."""
    dim = zero = wrapped = None
    for x in operands:
        d = getattr(x, "dtype", None)
        if isinstance(d, dtype):
            if x.ndim > 0:
                dim = d if dim is None else promote_types(dim, d)
            else:
                zero = d if zero is None else promote_types(zero, d)
        else:
            d = scalar_dtype(x)
            wrapped = d if wrapped is None else promote_types(wrapped, d)
    return _combine_categories(dim, _combine_categories(zero, wrapped))


def scalar_dtype(x) -> dtype:
    """The dtype a Python (or numpy) scalar takes when it meets a tensor."""
    if isinstance(x, (bool, np.bool_)):
        return bool_
    if isinstance(x, (int, np.integer)):
        return int64
    if isinstance(x, (float, np.floating)):
        return _default_float
    raise TypeError(f"expected a Tensor or a number, got {type(x).__name__}")
