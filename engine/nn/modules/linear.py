"""Identity, Linear, Bilinear: weights laid out and initialised as PyTorch's."""
from __future__ import annotations

import math

from ... import creation
from .. import functional as F, init
from ..parameter import Parameter
from .module import Module


def _factory(device, dtype) -> dict:
    return {"device": device, "dtype": dtype}


def _check_features(layer: Module, x, expected: int, what: str = "in_features") -> None:
    if x.ndim == 0 or x.shape[-1] != expected:
        raise RuntimeError(f"{layer._get_name()}({layer.extra_repr()}): expected input with last dimension "
                           f"{what}={expected}, got input of shape {tuple(x.shape)}")


def weight_and_bias_(module: Module, weight_shape, bias_size: int, bias: bool, device, dtype) -> None:
    """Register ``weight`` (uninitialised) and ``bias`` (or None), as PyTorch's layers lay them out."""
    module.weight = Parameter(creation.empty(*weight_shape, **_factory(device, dtype)))
    if bias:
        module.bias = Parameter(creation.empty(bias_size, **_factory(device, dtype)))
    else:
        module.register_parameter("bias", None)


def fan_in_uniform_(tensor, fan_in: int) -> None:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's bias init (zeros when fan_in is 0)."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    init.uniform_(tensor, -bound, bound)


class Identity(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """y = x W^T + b; weight (out_features, in_features), both ~ U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        weight_and_bias_(self, (out_features, in_features), out_features, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in_uniform_(self.bias, self.in_features)

    def forward(self, input):
        _check_features(self, input, self.in_features)
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """y = x1^T A x2 + b; weight (out_features, in1_features, in2_features)."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        self.in1_features, self.in2_features, self.out_features = in1_features, in2_features, out_features
        weight_and_bias_(self, (out_features, in1_features, in2_features), out_features, bias, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input1, input2):
        _check_features(self, input1, self.in1_features, "in1_features")
        _check_features(self, input2, self.in2_features, "in2_features")
        return F.bilinear(input1, input2, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
