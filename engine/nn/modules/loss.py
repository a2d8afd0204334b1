"""Loss modules: PyTorch's constructors (including the deprecated size_average/reduce pair), with
``weight``/``pos_weight`` as buffers (so they follow ``.to()`` and appear in the state_dict, as in
PyTorch). The reduction is checked when the loss is built, so a bad spec fails before training."""
from __future__ import annotations

from ..functional import loss as L
from .module import Module

__all__ = ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss", "BCELoss",
           "BCEWithLogitsLoss", "KLDivLoss"]


class _Loss(Module):
    _reductions = L.REDUCTIONS

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = L._legacy(self._get_name(), size_average, reduce, reduction, self._reductions)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error (input - target)^2."""

    def forward(self, input, target):
        return L._mse_loss(self._get_name(), input, target, self.reduction)


class L1Loss(_Loss):
    """Mean absolute error |input - target|."""

    def forward(self, input, target):
        return L._l1_loss(self._get_name(), input, target, self.reduction)


class SmoothL1Loss(_Loss):
    """Squared below ``beta`` (scaled by 1/beta), absolute above."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):
        return L._smooth_l1_loss(self._get_name(), input, target, self.reduction, self.beta)


class HuberLoss(_Loss):
    """Squared below ``delta``, delta-scaled absolute above (SmoothL1Loss times delta)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):
        return L._huber_loss(self._get_name(), input, target, self.reduction, self.delta)


class CrossEntropyLoss(_WeightedLoss):
    """log_softmax over dim 1 and NLL against class indices (N,)/(N, d1, ...) or probabilities of the
    input's shape; ``weight`` per class, ``ignore_index``, ``label_smoothing``."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        return L._cross_entropy(self._get_name(), input, target, self.weight, self.ignore_index, self.reduction,
                                self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (N, C) / (N, C, d1, ...) at class indices."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return L._nll_loss(self._get_name(), input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities in [0, 1]."""

    def forward(self, input, target):
        return L._binary_cross_entropy(self._get_name(), input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross entropy of sigmoid(input), computed stably from the logits; ``pos_weight`` scales the
    positive term (per class, broadcast along the last dim)."""

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean", pos_weight=None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return L._binary_cross_entropy_with_logits(self._get_name(), input, target, self.weight, self.reduction,
                                                   self.pos_weight)


class KLDivLoss(_Loss):
    """KL divergence of ``target`` from ``input`` (log-probabilities). Use reduction='batchmean' for the
    true KL divergence; 'mean' divides by the element count, as PyTorch does."""
    _reductions = L.KL_REDUCTIONS

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return L._kl_div(self._get_name(), input, target, self.reduction, self.log_target)
