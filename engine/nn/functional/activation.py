"""Activation functions. The common ones are single ops with a hand-written backward (one node per
call, as fused kernels will be on the GPU); all are differentiable twice through their backward."""
from __future__ import annotations

import math

from ...autograd.graph import Op
from ...ops import elementwise as ew
from ...ops.reduce import log_softmax, softmax
from ...ops._util import float_operand

__all__ = ["relu", "relu_", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid", "softplus", "softmax",
           "log_softmax", "hardtanh", "relu6", "mish", "logsigmoid", "softsign", "tanhshrink", "threshold",
           "glu", "selu", "celu", "hardsigmoid", "hardswish"]


def relu(input, inplace: bool = False):
    return input.relu_() if inplace else ew.relu(input)


def relu_(input):
    return input.relu_()


tanh, sigmoid = ew.tanh, ew.sigmoid


class LeakyRelu(Op):
    save_inputs = True

    def forward(self, x):
        return self.xp.where(x > 0, x, x * x.dtype.type(self.slope))

    def backward(self, g):
        x = self.inputs[0]
        return ew.where(x > 0, g, g * self.slope)


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False):
    if inplace:
        return input._inplace(leaky_relu, negative_slope)
    return LeakyRelu.apply(float_operand(input), slope=negative_slope)


class Elu(Op):
    save_inputs = True
    save_output = True

    def forward(self, x):
        xp = self.xp
        neg = self.alpha * xp.expm1(xp.minimum(x, 0) * self.input_scale) * self.scale
        return xp.where(x > 0, x * self.scale, neg).astype(x.dtype, copy=False)

    def backward(self, g):
        x, y = self.inputs[0], self.output
        # for x <= 0, d/dx [s a (e^{i x} - 1)] = i (y + s a)
        return ew.where(x > 0, g * self.scale, g * (y + self.scale * self.alpha) * self.input_scale)


def elu(input, alpha: float = 1.0, inplace: bool = False):
    if inplace:
        return input._inplace(elu, alpha)
    return Elu.apply(float_operand(input), alpha=alpha, scale=1.0, input_scale=1.0)


def selu(input, inplace: bool = False):
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    if inplace:
        return input._inplace(selu)
    return Elu.apply(float_operand(input), alpha=alpha, scale=scale, input_scale=1.0)


def celu(input, alpha: float = 1.0, inplace: bool = False):
    if inplace:
        return input._inplace(celu, alpha)
    return Elu.apply(float_operand(input), alpha=alpha, scale=1.0, input_scale=1.0 / alpha)


class Gelu(Op):
    save_inputs = True

    def forward(self, x):
        xp = self.xp
        if self.approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
            return (0.5 * x * (1 + xp.tanh(inner))).astype(x.dtype, copy=False)
        return (0.5 * x * (1 + _erf(xp, x / math.sqrt(2)))).astype(x.dtype, copy=False)

    def backward(self, g):
        x = self.inputs[0]
        if self.approximate == "tanh":
            k = math.sqrt(2 / math.pi)
            t = ew.tanh(k * (x + 0.044715 * x * x * x))
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
        cdf = 0.5 * (1 + ew.erf(x * (1 / math.sqrt(2))))
        pdf = ew.exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return g * (cdf + x * pdf)


def _erf(xp, x):
    if xp.__name__ == "numpy":
        from scipy.special import erf
    else:
        from cupyx.scipy.special import erf
    return erf(x)


def gelu(input, approximate: str = "none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(float_operand(input), approximate=approximate)


class Silu(Op):
    save_inputs = True

    def forward(self, x):
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        sig = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return (x * sig).astype(x.dtype, copy=False)

    def backward(self, g):
        x = self.inputs[0]
        s = ew.sigmoid(x)
        return g * s * (1 + x * (1 - s))


def silu(input, inplace: bool = False):
    if inplace:
        return input._inplace(silu)
    return Silu.apply(float_operand(input))


class Softplus(Op):
    save_inputs = True

    def forward(self, x):
        xp = self.xp
        bx = x * self.beta
        # log1p(exp(bx)) without overflow; linear above the threshold, as PyTorch
        soft = (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / self.beta
        return xp.where(bx > self.threshold, x, soft).astype(x.dtype, copy=False)

    def backward(self, g):
        x = self.inputs[0]
        bx = x * self.beta
        return ew.where(bx > self.threshold, g, g * ew.sigmoid(bx))


def softplus(input, beta: float = 1.0, threshold: float = 20.0):
    return Softplus.apply(float_operand(input), beta=beta, threshold=threshold)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    if inplace:
        return input._inplace(hardtanh, min_val, max_val)
    return ew.clamp(input, min_val, max_val)


def relu6(input, inplace: bool = False):
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace: bool = False):
    if inplace:
        return input._inplace(hardsigmoid)
    return ew.clamp(input / 6 + 0.5, 0.0, 1.0)


def hardswish(input, inplace: bool = False):
    if inplace:
        return input._inplace(hardswish)
    return input * hardsigmoid(input)


def logsigmoid(input):
    return -softplus(-input)


def mish(input, inplace: bool = False):
    if inplace:
        return input._inplace(mish)
    return input * ew.tanh(softplus(input))


def softsign(input):
    return input / (1 + ew.abs(input))


def tanhshrink(input):
    return input - ew.tanh(input)


def threshold(input, threshold: float, value: float, inplace: bool = False):
    if inplace:
        return input._inplace(globals()["threshold"], threshold, value)
    return ew.where(input > threshold, input, value)


def glu(input, dim: int = -1):
    a, b = input.chunk(2, dim)
    return a * ew.sigmoid(b)

