"""``repr`` of tensors, as PyTorch prints them."""
from __future__ import annotations

import numpy as np

from . import dtypes


def _format_array(arr: np.ndarray, indent: int) -> str:
    kw = dict(separator=", ", prefix=" " * indent, threshold=1000, edgeitems=3, max_line_width=80)
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        integral = finite.size == 0 or bool(np.all(finite == np.round(finite)))
        big = finite.size and (np.abs(finite).max() >= 1e8 or
                               (np.abs(finite[finite != 0]).min(initial=1) < 1e-4))
        if integral and not big:
            kw.update(formatter={"float_kind": lambda v: _int_like(v)})
        elif big:
            kw.update(formatter={"float_kind": lambda v: f"{v:.4e}"})
        else:
            kw.update(precision=4, floatmode="fixed", suppress_small=True)
    return np.array2string(arr, **kw)


def _int_like(v) -> str:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{int(v)}."


def tensor_repr(t) -> str:
    arr = t._host()
    body = _format_array(arr, len("tensor("))
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    default_for_kind = {"f": dtypes.get_default_dtype(), "i": dtypes.int64, "b": dtypes.bool_}
    if arr.size == 0:
        body = "[]"
        if arr.ndim != 1:
            extras.append(f"size={tuple(arr.shape)}")
    if default_for_kind.get(arr.dtype.kind) is not t.dtype or arr.size == 0 and arr.dtype.kind != "f":
        if not (arr.size == 0 and default_for_kind.get(arr.dtype.kind) is t.dtype):
            extras.append(f"dtype={t.dtype!r}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + ", ".join([body] + extras) + ")"
