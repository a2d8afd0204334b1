"""Finite-difference checks of analytic gradients (use float64 inputs)."""
from __future__ import annotations

import numpy as np

from .. import tensor as _tensor


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def _outputs(fn, inputs):
    return [o for o in _as_tuple(fn(*inputs)) if isinstance(o, _tensor.Tensor)]


def gradcheck(func, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, **_ignored) -> bool:
    """Compare d(outputs)/d(inputs) from backward with central differences, column by column.
    Inputs that require grad must be floating point (float64 for meaningful precision)."""
    from . import grad
    inputs = _as_tuple(inputs)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, _tensor.Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradcheck expects at least one input tensor with requires_grad=True")
    outputs = _outputs(func, inputs)
    for k, out in enumerate(outputs):
        if not out.requires_grad:
            continue
        n_out = out.numel()
        analytic = {i: np.zeros((inputs[i].numel(), n_out)) for i in diff}
        for j in range(n_out):  # one backward per output element: a row of the Jacobian
            seed = np.zeros(n_out, dtype=out._host().dtype)
            seed[j] = 1
            seed_t = _tensor.Tensor._make(out._device.xp.asarray(seed.reshape(out._data.shape)), out._device)
            outs = _outputs(func, inputs)
            gs = grad([outs[k]], [inputs[i] for i in diff], [seed_t], allow_unused=True)
            for i, g in zip(diff, gs):
                if g is not None:
                    analytic[i][:, j] = g._host().reshape(-1)
        for i in diff:
            x = inputs[i]
            numeric = np.zeros_like(analytic[i])
            flat = x._data.reshape(-1)  # a view: perturb in place
            for p in range(x.numel()):
                orig = flat[p].item()
                # (recorded, not under no_grad: func may itself differentiate, as in gradgradcheck)
                flat[p] = orig + eps
                plus = _outputs(func, inputs)[k]._host().astype(np.float64).reshape(-1)
                flat[p] = orig - eps
                minus = _outputs(func, inputs)[k]._host().astype(np.float64).reshape(-1)
                flat[p] = orig
                numeric[p] = (plus - minus) / (2 * eps)
            if not np.allclose(analytic[i], numeric, atol=atol, rtol=rtol, equal_nan=True):
                err = np.abs(analytic[i] - numeric).max()
                msg = (f"Jacobian mismatch for output {k} with respect to input {i} (max abs error {err:.3g}):\n"
                       f"numerical:\n{numeric}\nanalytical:\n{analytic[i]}")
                if raise_exception:
                    raise GradcheckError(msg)
                return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps: float = 1e-6, atol: float = 1e-5,
                  rtol: float = 1e-3, raise_exception: bool = True) -> bool:
    """gradcheck of the first derivative: checks the backward's own backward (create_graph=True)."""
    from . import grad
    inputs = _as_tuple(inputs)
    outs = _outputs(func, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(0)
        grad_outputs = [_tensor.Tensor._make(o._device.xp.asarray(rng.standard_normal(o._data.shape)
                                                                  .astype(o._data.dtype)), o._device)
                        for o in outs]
    grad_outputs = [g.detach().requires_grad_() for g in grad_outputs]

    def first_derivative(*args):
        xs = args[:len(inputs)]
        gos = args[len(inputs):]
        o = _outputs(func, xs)
        gs = grad(o, [x for x in xs if isinstance(x, _tensor.Tensor) and x.requires_grad], list(gos),
                  create_graph=True, allow_unused=True)
        return tuple(g for g in gs if g is not None)
    return gradcheck(first_derivative, tuple(inputs) + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)


class GradcheckError(RuntimeError):
    pass
