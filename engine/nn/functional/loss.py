"""Loss functions with PyTorch's signatures, reductions and conventions.

The classification losses are fused nodes: ``cross_entropy`` with class indices (log-softmax + NLL +
label smoothing; backward softmax - target, through a second op so double backward works),
``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``. The others are short compositions
of differentiable ops. Each public function is a thin wrapper of a private one that takes the name to
use in errors, so that ``nn.CrossEntropyLoss`` reports as itself.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...autograd.graph import Op
from ...ops import elementwise as ew
from ...ops.index import Gather, _axis_grids
from ...ops.reduce import log_softmax, softmax
from ...ops._util import ieee, operands
from ...tensor import Tensor
from .activation import softplus

__all__ = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "cross_entropy", "nll_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

REDUCTIONS = ("mean", "sum", "none")


# ---- shared checks --------------------------------------------------------------------------------

def check_reduction(name: str, reduction, allowed=REDUCTIONS) -> str:
    if reduction not in allowed:
        raise ValueError(f"{name}: reduction must be one of {', '.join(map(repr, allowed))}, got {reduction!r}")
    return reduction


def _legacy(name: str, size_average, reduce, reduction, allowed=REDUCTIONS) -> str:
    """PyTorch's deprecated ``size_average``/``reduce`` pair, when given, overrides ``reduction``."""
    if size_average is not None or reduce is not None:
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else "mean" if size_average else "sum"
    return check_reduction(name, reduction, allowed)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _check_tensors(name: str, **tensors) -> None:
    for what, t in tensors.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected {what} to be a Tensor, got {type(t).__name__}")


def _same_shape(name: str, input, target, what: str = "target") -> None:
    _check_tensors(name, input=input, **{what: target})
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"{name}: {what} of shape {tuple(target.shape)} does not match the input's shape "
                         f"{tuple(input.shape)}; give them the same shape (broadcasting them, e.g. (N, 1) "
                         "against (N,), is almost always a bug)")


def _constant(name: str, what: str, t, input):
    """A weight-like argument that is not differentiated (as in PyTorch), as an array of input's dtype."""
    if t is None:
        return None
    _check_tensors(name, **{what: t})
    if t.requires_grad:
        raise RuntimeError(f"{name}: {what} is not differentiable; pass {what}.detach()")
    return t.to(input.device, input.dtype)._data


def _float_input(name: str, input) -> None:
    if not input.dtype.is_floating_point:
        raise RuntimeError(f"{name}: expected a floating-point input, got {input.dtype.name}")


# ---- regression ------------------------------------------------------------------------------------

def _weighted(name: str, loss, weight, reduction: str, mean_over_weight: bool):
    """PyTorch's optional per-element ``weight``: mse and l1 average over the weights' sum, huber over
    the element count."""
    if weight is None:
        return _reduce(loss, reduction)
    if tuple(weight.shape) != tuple(loss.shape):
        raise ValueError(f"{name}: weight of shape {tuple(weight.shape)} must have the input's shape "
                         f"{tuple(loss.shape)}")
    loss = loss * weight
    if reduction == "mean" and mean_over_weight:
        return loss.sum() / weight.sum()
    return _reduce(loss, reduction)


def _diff(name, input, target):
    _same_shape(name, input, target)
    x, t = operands(input, target)
    return x - t


def _mse_loss(name, input, target, reduction="mean", weight=None):
    return _weighted(name, ew.square(_diff(name, input, target)), weight, reduction, True)


def _l1_loss(name, input, target, reduction="mean", weight=None):
    return _weighted(name, ew.abs(_diff(name, input, target)), weight, reduction, True)


def _smooth_l1_loss(name, input, target, reduction="mean", beta=1.0):
    if beta < 0:
        raise ValueError(f"{name}: beta must be >= 0, got {beta}")
    d = _diff(name, input, target)
    ad = ew.abs(d)
    loss = ad if beta == 0 else ew.where(ad < beta, 0.5 * d * d / beta, ad - 0.5 * beta)
    return _reduce(loss, reduction)


def _huber_loss(name, input, target, reduction="mean", delta=1.0, weight=None):
    if delta <= 0:
        raise ValueError(f"{name}: delta must be > 0, got {delta}")
    d = _diff(name, input, target)
    ad = ew.abs(d)
    loss = ew.where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta))
    return _weighted(name, loss, weight, reduction, False)


def mse_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    return _mse_loss("mse_loss", input, target, _legacy("mse_loss", size_average, reduce, reduction), weight)


def l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", weight=None):
    return _l1_loss("l1_loss", input, target, _legacy("l1_loss", size_average, reduce, reduction), weight)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
    return _smooth_l1_loss("smooth_l1_loss", input, target,
                           _legacy("smooth_l1_loss", size_average, reduce, reduction), beta)


def huber_loss(input, target, reduction: str = "mean", delta: float = 1.0, weight=None):
    return _huber_loss("huber_loss", input, target, check_reduction("huber_loss", reduction), delta, weight)


# ---- class indices: cross entropy and NLL ------------------------------------------------------------

class _ClassTargets:
    """Class-index targets of an (N, C, d1, ...) input, checked, with the per-position weight of each
    target class (0 where ignored) and the 'mean' denominator (the sum of those weights)."""

    def __init__(self, name: str, input, target, weight, ignore_index: int):
        xp = input.device.xp
        c = input.shape[1]
        t = target.to(input.device)._data
        self.valid = t != ignore_index
        bad = self.valid & ((t < 0) | (t >= c))
        if bool(bad.any()):
            raise IndexError(f"{name}: target class index {int(t[bad][0])} is out of range for {c} classes "
                             f"(expected indices in [0, {c}), or ignore_index={ignore_index} to skip a position)")
        safe = xp.where(self.valid, t, 0)
        self.index = safe[:, None]  # (N, 1, d1, ...): gather/scatter index along the class dim
        self.grids = _axis_grids(xp, self.index.shape, 1, self.index)
        self.keep = self.valid.astype(input._data.dtype)  # 1 where counted, 0 where ignored
        self.weight = _constant(name, "weight", weight, input)
        self.wt = self.keep if self.weight is None else self.weight[safe] * self.keep
        self.denom = xp.asarray(self.wt.sum())
        self.c = c
        self.w_sum = c if self.weight is None else self.weight.sum()


def _class_dims(name: str, input, target, what: str):
    """(input, target) with a batch dim (unbatched (C,) with a 0-d target gets one), and whether it was added."""
    _check_tensors(name, input=input, target=target)
    _float_input(name, input)
    if input.ndim == 0:
        raise ValueError(f"{name}: expected input of shape (N, C) or (N, C, d1, ...) with {what}, got a 0-d tensor")
    if input.ndim == 1:
        return input.unsqueeze(0), target.unsqueeze(0), True
    return input, target, False


def _index_shape(input) -> tuple:
    return (input.shape[0],) + tuple(input.shape[2:])


def _check_weight(name: str, weight, c: int) -> None:
    if weight is not None and (not isinstance(weight, Tensor) or tuple(weight.shape) != (c,)):
        got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"{name}: weight must be a 1-D tensor with one entry per class ({c}), got {got}")


def _reduce_by(loss: Tensor, reduction: str, denom, unbatched: bool) -> Tensor:
    if reduction == "none":
        return loss.reshape(()) if unbatched else loss
    total = loss.sum()
    return total if reduction == "sum" else total / Tensor._make(denom, loss.device)


class CrossEntropy(Op):
    """Per-position loss -(1-e) w[t] log p[t] - (e/C) sum_c w_c log p_c, p = softmax over dim 1, as
    one node; ``targets`` (a _ClassTargets) carries the indices and weights, e the label smoothing."""
    save_inputs = True  # x, for the softmax that double backward differentiates

    def forward(self, x):
        xp, ct, eps = self.xp, self.targets, self.smoothing
        with ieee(xp):
            m = xp.amax(x, axis=1, keepdims=True)
            shifted = x - xp.where(xp.isfinite(m), m, 0)
            picked = shifted[ct.grids][:, 0]
            if eps:  # sum_c w_c shifted_c, taken before shifted becomes exp(shifted) in place
                ws = shifted.sum(axis=1) if ct.weight is None else xp.tensordot(ct.weight, shifted, axes=([0], [1]))
            e = xp.exp(shifted, out=shifted)
            total = e.sum(axis=1, keepdims=True)
            log_total = xp.log(total)[:, 0]
            loss = ct.wt * (log_total - picked)  # -w[t] log p[t]
            if eps:
                smooth = ct.keep * (ct.w_sum * log_total - ws)  # -sum_c w_c log p_c
                loss = (1 - eps) * loss + (eps / ct.c) * smooth
            e /= total
        self.p = e  # softmax: the backward is (p - target distribution) per position
        return loss.astype(x.dtype, copy=False)

    def backward(self, g):
        return CrossEntropyGrad.apply(self.inputs[0], g, p=self.p, targets=self.targets, smoothing=self.smoothing)


class CrossEntropyGrad(Op):
    """d loss / d x = g * (coef * p - q), with q the (smoothed, weighted) target distribution and coef its
    total per position. Its own backward (in tensor ops) makes cross_entropy twice differentiable."""
    save_inputs = True

    def forward(self, x, g):
        ct, eps = self.targets, self.smoothing
        self.coef = (1 - eps) * ct.wt
        if eps:
            self.coef = self.coef + (eps / ct.c) * ct.w_sum * ct.keep
        gx = self.p * (g * self.coef)[:, None]
        gx[ct.grids] -= ((1 - eps) * ct.wt * g)[:, None]
        if eps:
            w = 1 if ct.weight is None else ct.weight.reshape((1, -1) + (1,) * (gx.ndim - 2))
            gx -= (eps / ct.c) * (ct.keep * g)[:, None] * w
        return gx

    def backward(self, gg):
        x, g = self.inputs
        ct, eps = self.targets, self.smoothing
        const = lambda a: Tensor._make(self.xp.asarray(a, dtype=x._data.dtype), self.device)  # noqa: E731
        p = softmax(x, 1)
        coef = const(self.coef)
        gg_p = (gg * p).sum(1)
        dx = (g * coef).unsqueeze(1) * p * (gg - gg_p.unsqueeze(1)) if self.needs_grad(0) else None
        dg = None
        if self.needs_grad(1):
            dg = coef * gg_p - const((1 - eps) * ct.wt) * Gather.apply(gg, dim=1, index=ct.index).squeeze(1)
            if eps:
                w = gg if ct.weight is None else gg * const(ct.weight.reshape((1, -1) + (1,) * (gg.ndim - 2)))
                dg = dg - const((eps / ct.c) * ct.keep) * w.sum(1)
        return dx, dg


def _cross_entropy(name, input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{name}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    what = "class indices or probabilities"
    x, t, unbatched = _class_dims(name, input, target, what)
    c = x.shape[1]
    _check_weight(name, weight, c)
    if t.dtype.is_floating_point and tuple(t.shape) == tuple(x.shape):
        return _cross_entropy_probs(name, x, t, weight, reduction, label_smoothing, unbatched)
    if t.dtype.is_floating_point or t.dtype.name == "bool" or tuple(t.shape) != _index_shape(x):
        shape = tuple(input.shape)
        idx_shape = () if unbatched else _index_shape(x)
        raise ValueError(f"{name}: expected target of shape {idx_shape} with class indices in [0, {c}) (an integer "
                         f"tensor), or class probabilities of shape {shape} (a float tensor); got a "
                         f"{target.dtype.name} target of shape {tuple(target.shape)}")
    ct = _ClassTargets(name, x, t, weight, ignore_index)
    loss = CrossEntropy.apply(x, targets=ct, smoothing=float(label_smoothing))
    return _reduce_by(loss, reduction, ct.denom, unbatched)


def _cross_entropy_probs(name, x, target, weight, reduction, label_smoothing, unbatched):
    c = x.shape[1]
    y = target.to(x.device, x.dtype)
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / c
    prod = log_softmax(x, 1) * y
    w = _constant(name, "weight", weight, x)
    if w is not None:
        prod = prod * Tensor._make(w.reshape((1, c) + (1,) * (x.ndim - 2)), x.device)
    loss = -prod.sum(1)
    if reduction == "none":
        return loss.reshape(()) if unbatched else loss
    return _reduce(loss, reduction)  # 'mean': over positions, whatever the weights (as PyTorch)


def _nll_loss(name, input, target, weight=None, ignore_index=-100, reduction="mean"):
    x, t, unbatched = _class_dims(name, input, target, "log-probabilities")
    c = x.shape[1]
    _check_weight(name, weight, c)
    if t.dtype.is_floating_point or t.dtype.name == "bool" or tuple(t.shape) != _index_shape(x):
        idx_shape = () if unbatched else _index_shape(x)
        raise ValueError(f"{name}: expected target of shape {idx_shape} with class indices in [0, {c}) (an integer "
                         f"tensor), got a {target.dtype.name} target of shape {tuple(target.shape)}")
    ct = _ClassTargets(name, x, t, weight, ignore_index)
    picked = Gather.apply(x, dim=1, index=ct.index).squeeze(1)
    loss = -picked * Tensor._make(ct.wt, x.device)
    return _reduce_by(loss, reduction, ct.denom, unbatched)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                  reduction: str = "mean", label_smoothing: float = 0.0):
    reduction = _legacy("cross_entropy", size_average, reduce, reduction)
    return _cross_entropy("cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing)


def nll_loss(input, target, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
             reduction: str = "mean"):
    reduction = _legacy("nll_loss", size_average, reduce, reduction)
    return _nll_loss("nll_loss", input, target, weight, ignore_index, reduction)


# ---- binary ------------------------------------------------------------------------------------------

_BCE_EPS = float(np.float32(1e-12))  # PyTorch's EPSILON is a C float: 9.99999996e-13


class BinaryCrossEntropy(Op):
    """-w (y log x + (1 - y) log(1 - x)), each log clamped to >= -100; PyTorch's backward
    w (x - y) / max(x (1 - x), 1e-12), and -w logit(x) for the target."""
    save_inputs = True

    def forward(self, x, y):
        xp = self.xp
        with ieee(xp):
            loss = (y - 1) * xp.maximum(xp.log1p(-x), -100) - y * xp.maximum(xp.log(x), -100)
        return loss * self.weight if self.weight is not None else loss

    def backward(self, g):
        x, y = self.inputs
        if self.weight is not None:
            g = g * Tensor._make(self.weight, self.device)
        gx = g * (x - y) / ew.clamp((1 - x) * x, min=_BCE_EPS) if self.needs_grad(0) else None
        gy = g * (ew.log1p(-x) - ew.log(x)) if self.needs_grad(1) else None
        return gx, gy


class BinaryCrossEntropyWithLogits(Op):
    """(1 - y) x + l softplus(-x), l = 1 + (pos_weight - 1) y, times weight: BCE of sigmoid(x), stable
    for any x. The softplus is log1p(exp(-|x|)) + max(-x, 0)."""
    save_inputs = True

    def forward(self, x, y):
        xp = self.xp
        sp = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)
        lw = 1 if self.pos_weight is None else (self.pos_weight - 1) * y + 1
        loss = (1 - y) * x + lw * sp
        return loss * self.weight if self.weight is not None else loss

    def backward(self, g):
        x, y = self.inputs
        const = lambda a: Tensor._make(a, self.device)  # noqa: E731
        if self.weight is not None:
            g = g * const(self.weight)
        pw = None if self.pos_weight is None else const(self.pos_weight)
        gx = gy = None
        if self.needs_grad(0):
            s = ew.sigmoid(x)
            gx = g * (s - y) if pw is None else g * ((1 + (pw - 1) * y) * s - pw * y)
        if self.needs_grad(1):
            gy = -x if pw is None else (pw - 1) * softplus(-x, 1.0, float("inf")) - x
            gy = g * gy
        return gx, gy


def _binary_operands(name, input, target):
    _same_shape(name, input, target)
    _float_input(name, input)
    return operands(input, target)


def _broadcast_const(name: str, what: str, t, x, shape):
    arr = _constant(name, what, t, x)
    if arr is None:
        return None
    try:
        return x.device.xp.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"{name}: {what} of shape {tuple(t.shape)} does not broadcast to the input's shape "
                         f"{tuple(shape)}") from None


def _binary_cross_entropy(name, input, target, weight=None, reduction="mean"):
    x, y = _binary_operands(name, input, target)
    xd = x._data
    if not bool(((xd >= 0) & (xd <= 1)).all()):
        raise RuntimeError(f"{name}: all elements of input should be between 0 and 1 (probabilities); for raw "
                           "scores use binary_cross_entropy_with_logits / BCEWithLogitsLoss")
    w = _broadcast_const(name, "weight", weight, x, xd.shape)
    return _reduce(BinaryCrossEntropy.apply(x, y, weight=w), reduction)


def _binary_cross_entropy_with_logits(name, input, target, weight=None, reduction="mean", pos_weight=None):
    x, y = _binary_operands(name, input, target)
    w = _broadcast_const(name, "weight", weight, x, x.shape)
    pw = _broadcast_const(name, "pos_weight", pos_weight, x, x.shape)
    return _reduce(BinaryCrossEntropyWithLogits.apply(x, y, weight=w, pos_weight=pw), reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
    reduction = _legacy("binary_cross_entropy", size_average, reduce, reduction)
    return _binary_cross_entropy("binary_cross_entropy", input, target, weight, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction: str = "mean", pos_weight=None):
    name = "binary_cross_entropy_with_logits"
    return _binary_cross_entropy_with_logits(name, input, target, weight,
                                             _legacy(name, size_average, reduce, reduction), pos_weight)


# ---- KL divergence -----------------------------------------------------------------------------------

KL_REDUCTIONS = ("mean", "batchmean", "sum", "none")


def _kl_div(name, input, target, reduction="mean", log_target=False):
    """Pointwise target * (log target - input), input being log-probabilities. 'mean' averages over
    every element, as PyTorch does; 'batchmean' (the true KL divergence) divides the sum by the batch size."""
    _same_shape(name, input, target)
    _float_input(name, input)
    x, t = operands(input, target)
    if log_target:
        loss = ew.exp(t) * (t - x)
    else:  # xlogy(t, t) - t x: zero where t == 0, with a finite gradient there
        loss = t * ew.log(ew.where(t == 0, 1.0, t)) - t * x
    if reduction == "mean":
        warnings.warn("kl_div: reduction='mean' divides the total by the number of elements, not the batch size; "
                      "reduction='batchmean' gives the KL divergence", stacklevel=3)
    if reduction == "batchmean":
        total = loss.sum()
        return total / input.shape[0] if input.ndim else total
    return _reduce(loss, reduction)


def kl_div(input, target, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
    return _kl_div("kl_div", input, target, _legacy("kl_div", size_average, reduce, reduction, KL_REDUCTIONS),
                   log_target)
