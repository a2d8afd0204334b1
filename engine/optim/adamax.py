"""Adamax (Adam with the infinity norm), as ``torch.optim.Adamax``."""
from __future__ import annotations

from .adam import _check_adam_family
from .optimizer import Optimizer, ParamsT, effective_grad, increment, lerp_, step_tensor, zeros_like


class Adamax(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, *, maximize: bool = False) -> None:
        _check_adam_family(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _init_state(self, p, group, state) -> None:
        state["step"] = step_tensor()
        state["exp_avg"] = zeros_like(p)
        state["exp_inf"] = zeros_like(p)

    def _update(self, p, grad, group) -> None:
        state = self._state(p, group)
        beta1, beta2 = group["betas"]
        adamax_update(p.device.xp, p._data, grad, state["exp_avg"]._data, state["exp_inf"]._data,
                      step=increment(state["step"]), lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                      weight_decay=group["weight_decay"], maximize=group["maximize"])


def adamax_update(xp, param, grad, exp_avg, exp_inf, *, step: float, lr: float, beta1: float, beta2: float,
                  eps: float, weight_decay: float, maximize: bool) -> None:
    """One Adamax step on arrays, in place; ``step`` counts this one (1 on the first)."""
    g = effective_grad(xp, grad, param, weight_decay, maximize)
    lerp_(xp, exp_avg, g, 1 - beta1)
    exp_inf *= beta2
    tmp = xp.abs(g)
    tmp += eps
    xp.maximum(exp_inf, tmp, out=exp_inf)
    clr = lr / (1 - beta1 ** step)
    update = xp.divide(exp_avg, exp_inf, out=tmp)
    update *= clr
    param -= update
