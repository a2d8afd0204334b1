"""``Optimizer``: the bookkeeping every optimizer shares (param groups, per-parameter state, zero_grad,
state_dict), with PyTorch's structure and messages.

Each optimizer keeps its math in one function on raw arrays (``sgd_update``, ``adam_update``, ...),
called once per parameter with the device's array module ``xp`` and plain Python scalars. The arrays
are updated in place, so a fused GPU kernel can later replace that one function without touching
the bookkeeping here. Its temporaries are few and short-lived; numpy has no in-place ``a += s * b``.
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from copy import deepcopy
from itertools import chain
from typing import Any, Callable, Iterable

from .. import dtypes
from ..autograd.grad_mode import enable_grad, no_grad
from ..backend import CPU, to_device
from ..tensor import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]]


class Optimizer:
    """Base class of all optimizers.

    ``params`` is an iterable of tensors, of ``(name, tensor)`` pairs, or of dicts (param groups) with a
    ``"params"`` entry and per-group options that override ``defaults``.

    A subclass defines ``_update(p, grad, group)``: one step for one parameter whose ``.grad`` is not
    None, on its arrays, under ``no_grad`` (``_state(p, group)`` gives its state, created by the
    subclass's ``_init_state`` on first use). ``step`` loops over the groups and bumps each updated
    parameter's version counter, as an in-place tensor op would.
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or "
                            f"dicts, but got {_typename(params)}")
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []

        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    def __repr__(self) -> str:
        out = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            out += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    out += f"    {key}: {group[key]}\n"
        return out + ")"

    # ---- the step ---------------------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None):
        """One optimization step. ``closure`` re-evaluates the model and returns the loss (it runs with
        grad enabled); the loss it returns is returned."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, p.grad._data, group)
                        p._vc.value += 1
        return loss

    def _update(self, p: Tensor, grad, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _update(p, grad, group) or step()")

    def _state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        """``p``'s state, filled by ``_init_state`` on its first step (PyTorch's lazy initialisation)."""
        state = self.state[p]
        if not state:
            self._init_state(p, group, state)
        return state

    def _init_state(self, p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        """Fill a parameter's empty state before its first step (PyTorch's names: ``step``, ``exp_avg``...)."""

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``set_to_none=True``) or fill them with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g._data.fill(0)
                    g._vc.value += 1

    # ---- param groups -----------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with its own options; missing ones come from the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                            "ordering of tensors in sets will change between runs. Please use a list instead.")
        else:
            params = list(params)

        names = [p[0] for p in params if isinstance(p, tuple)]
        param_group["params"] = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            param_group["param_names"] = names

        for param in param_group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(param))
            if not (param.is_leaf or param.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)

        ids = [id(p) for p in param_group["params"]]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this "
                          "will cause an error; see github.com/pytorch/pytorch/issues/40967 for more "
                          "information", stacklevel=3)
        for group in self.param_groups:
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        existing = {id(p) for group in self.param_groups for p in group["params"]}
        if not existing.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ---- state_dict -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``, as PyTorch: a
        parameter is named by its position across the groups. The state's tensors are not copied."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned, for an optimizer built over the same parameters.
        State tensors are copied onto each parameter's device (and dtype, but for scalars), so the
        loaded dict is never aliased; options missing from old dicts fall back to the defaults."""
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))

        state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if isinstance(k, str) and k.isdigit():  # a dict that went through JSON has string keys
                k = int(k)
            if k in id_map:
                state[id_map[k]] = _copy_state(id_map[k], v)
            else:
                state[k] = v
        for group, new_group in zip(groups, saved_groups):
            new_group["params"] = group["params"]
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            for name, default in self.defaults.items():
                new_group.setdefault(name, default)
        self.state = state
        self.param_groups = saved_groups


# CPU scalars that keep their own dtype: PyTorch casts ``mu_product`` to the parameter's dtype on
# load, which would make a resumed NAdam differ from an uninterrupted one.
_SCALAR_STATE = ("step", "mu_product")


def _copy_state(param: Tensor, value, key=None):
    """A deep copy of one parameter's state, tensors moved to the parameter's device; floating tensors
    take its dtype too, except the scalars ``step`` and ``mu_product``, which stay as they are."""
    if isinstance(value, Tensor):
        if key in _SCALAR_STATE:
            return Tensor._make(value._data.copy(), value.device)
        arr = to_device(value._data, param.device)
        if param.is_floating_point() and value.is_floating_point():
            arr = arr.astype(param._data.dtype, copy=arr is value._data)
        elif arr is value._data:
            arr = arr.copy()
        return Tensor._make(arr, param.device)
    if isinstance(value, dict):
        return {k: _copy_state(param, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_state(param, v) for v in value)
    return value


def _typename(obj) -> str:
    return f"engine.{type(obj).__name__}" if isinstance(obj, Tensor) else type(obj).__name__


# ---- helpers for the optimizers' math ---------------------------------------------------------------

def step_tensor() -> Tensor:
    """A new ``step`` counter: a 0-d CPU tensor (float64 when that is the default dtype, else float32),
    as PyTorch keeps it, so reading it never waits for a GPU."""
    dt = dtypes.float64 if dtypes.get_default_dtype() == dtypes.float64 else dtypes.float32
    return Tensor._make(CPU.xp.zeros((), dtype=dt.np), CPU)


def increment(step: Tensor) -> float:
    """Add one to a ``step`` tensor in place and return its new value."""
    step._data += 1
    return float(step._data)


def zeros_like(p: Tensor) -> Tensor:
    return Tensor._make(p.device.xp.zeros_like(p._data), p.device)


def update_moments(xp, exp_avg, exp_avg_sq, g, beta1: float, beta2: float):
    """Adam's running moments, in place: exp_avg <- lerp toward g, exp_avg_sq <- beta2 * it + (1 - beta2) g^2.
    Returns the scratch array it used (free for the caller to reuse)."""
    lerp_(xp, exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    tmp = xp.multiply(g, g)
    tmp *= 1 - beta2
    exp_avg_sq += tmp
    return tmp


def effective_grad(xp, grad, param, weight_decay: float = 0.0, maximize: bool = False):
    """The gradient a step follows: negated to maximize, plus L2 weight decay ``weight_decay * param``.
    A new array only when it differs from ``grad``; the parameter's ``.grad`` is never modified."""
    if not weight_decay:
        return xp.negative(grad) if maximize else grad
    g = xp.multiply(param, weight_decay)
    if maximize:
        g -= grad
    else:
        g += grad
    return g


def lerp_(xp, start, end, weight: float) -> None:
    """``start += weight * (end - start)`` in place, rounded as ``torch.lerp_`` rounds it."""
    diff = xp.subtract(end, start)
    if weight < 0.5:
        diff *= weight
        start += diff
    else:
        diff *= 1 - weight
        xp.subtract(end, diff, out=start)


def add_scaled_(xp, target, value: float, source, tmp=None) -> None:
    """``target += value * source`` in place (``tmp``, when given, is a scratch array of the same shape)."""
    tmp = xp.multiply(source, value, out=tmp)
    target += tmp
