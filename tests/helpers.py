"""Shared utilities for the op tests: run one callable on engine and torch tensors built from the same
numpy arrays, compare values, dtypes and gradients; and a finite-difference gradcheck in float64.

A test callable takes the library module first, then the tensors (and any other arguments passed
through unchanged), e.g. ``lambda m, a, b: m.maximum(a, b)`` or ``lambda m, x: x.sum(1)``.
"""
from __future__ import annotations

import numpy as np

import engine

try:  # torch is only the oracle; modules that need it call pytest.importorskip("torch") first
    import torch
except ImportError:  # pragma: no cover
    torch = None

F32 = dict(rtol=1e-5, atol=1e-6)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape, seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.asarray(rng(seed).standard_normal(shape), dtype=dtype)


def away_from(x: np.ndarray, points=(0.0,), gap: float = 0.2) -> np.ndarray:
    """``x`` moved at least ``gap`` away from each of ``points`` (kinks of abs, relu, clamp, ...), so
    that finite differences and the two libraries' conventions at a kink don't enter a test."""
    x = np.array(x, copy=True)
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + np.where(x[near] >= p, gap, -gap)
    return x


# ---- building tensors ------------------------------------------------------------------------------

def _wants_grad(a, requires_grad) -> bool:
    return requires_grad and isinstance(a, np.ndarray) and a.dtype.kind == "f"


def to_engine(a, requires_grad: bool = False):
    if not isinstance(a, np.ndarray):
        return a
    return engine.tensor(a.copy(), requires_grad=_wants_grad(a, requires_grad))


def to_torch(a, requires_grad: bool = False):
    if not isinstance(a, np.ndarray):
        return a
    return torch.tensor(a.copy(), requires_grad=_wants_grad(a, requires_grad))


def _np(t) -> np.ndarray:
    if isinstance(t, engine.Tensor):
        return t.detach().numpy()
    return t.detach().cpu().numpy()


def _flat_outputs(out) -> list:
    if isinstance(out, (tuple, list)):
        return [o for x in out for o in _flat_outputs(x)]
    return [out]


def assert_same(e, t, *, rtol, atol, what="value"):
    """An engine tensor and a torch tensor agree in shape, dtype name and values (nan where nan)."""
    assert isinstance(e, engine.Tensor), f"{what}: engine gave {type(e).__name__}, not a Tensor"
    assert tuple(e.shape) == tuple(t.shape), f"{what}: shape {tuple(e.shape)} != torch {tuple(t.shape)}"
    tname = str(t.dtype).replace("torch.", "")
    assert e.dtype.name == tname, f"{what}: dtype {e.dtype.name} != torch {tname}"
    ev, tv = _np(e), _np(t)
    if ev.dtype.kind in "biu":
        np.testing.assert_array_equal(ev, tv, err_msg=what)
    else:
        np.testing.assert_allclose(ev.astype(np.float64), tv.astype(np.float64), rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=what)


# ---- the comparison --------------------------------------------------------------------------------

def check(fn, *args, rtol: float | None = None, atol: float | None = None, grad: bool = True,
          grad_rtol: float | None = None, grad_atol: float | None = None, requires_grad=None, seed: int = 1,
          torch_fn=None):
    """Run ``fn(module, *tensors)`` with engine and with torch on tensors built from the same numpy
    arrays (arguments that are not arrays pass through unchanged). Compare every output's shape,
    dtype and values; then backpropagate the same random upstream gradient through every floating
    output and compare the gradients of every floating input (dtype and values).

    ``requires_grad``: None (every floating array) or a sequence of booleans, one per argument.
    ``torch_fn``: a different callable for torch, where the spellings differ.
    Returns the engine outputs and the torch outputs.
    """
    ref = args[0] if args and isinstance(args[0], np.ndarray) else None
    if rtol is None:
        rtol = 1e-10 if ref is not None and ref.dtype == np.float64 else F32["rtol"]
    if atol is None:
        atol = 1e-12 if ref is not None and ref.dtype == np.float64 else F32["atol"]
    grad_rtol = rtol if grad_rtol is None else grad_rtol
    grad_atol = atol if grad_atol is None else grad_atol
    flags = [True] * len(args) if requires_grad is None else list(requires_grad)
    e_in = [to_engine(a, grad and f) for a, f in zip(args, flags)]
    t_in = [to_torch(a, grad and f) for a, f in zip(args, flags)]
    e_out = fn(engine, *e_in)
    t_out = (torch_fn or fn)(torch, *t_in)
    e_flat, t_flat = _flat_outputs(e_out), _flat_outputs(t_out)
    assert len(e_flat) == len(t_flat), f"engine gave {len(e_flat)} outputs, torch {len(t_flat)}"
    for k, (e, t) in enumerate(zip(e_flat, t_flat)):
        assert_same(e, t, rtol=rtol, atol=atol, what=f"output {k}")
    if not grad:
        return e_out, t_out

    leaves = [k for k, x in enumerate(t_in) if isinstance(x, torch.Tensor) and x.requires_grad]
    pairs = [(e, t) for e, t in zip(e_flat, t_flat) if t.requires_grad]
    if not leaves or not pairs:
        return e_out, t_out
    for e, t in pairs:
        assert e.requires_grad, "engine output does not require grad where torch's does"
    r = rng(seed)
    seeds = [r.standard_normal(tuple(t.shape)).astype(_np(t).dtype) for _, t in pairs]
    engine.autograd.backward([e for e, _ in pairs], [engine.tensor(s) for s in seeds])
    torch.autograd.backward([t for _, t in pairs], [torch.tensor(s) for s in seeds])
    for k in leaves:
        eg, tg = e_in[k].grad, t_in[k].grad
        if tg is None or eg is None:
            other = eg if tg is None else tg
            assert other is None or not _np(other).any(), \
                f"grad of input {k}: engine {'None' if eg is None else 'set'}, torch {'None' if tg is None else 'set'}"
            continue
        assert_same(eg, tg, rtol=grad_rtol, atol=grad_atol, what=f"grad of input {k}")
    return e_out, t_out


def check_dtype(fn, *args, torch_fn=None):
    """Only the result's dtype name (and shape and value) against torch, no gradients."""
    return check(fn, *args, grad=False, torch_fn=torch_fn, rtol=1e-3, atol=1e-3)


def gradcheck(fn, *args, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4, requires_grad=None) -> None:
    """``engine.autograd.gradcheck`` of ``fn(engine, *tensors)`` with every floating array as a float64
    leaf (the others pass through unchanged). Raises on a Jacobian mismatch."""
    flags = [True] * len(args) if requires_grad is None else list(requires_grad)
    inputs = []
    for a, f in zip(args, flags):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            a = a.astype(np.float64)
        inputs.append(to_engine(a, f))
    assert engine.autograd.gradcheck(lambda *xs: fn(engine, *xs), tuple(inputs), eps=eps, atol=atol, rtol=rtol)

