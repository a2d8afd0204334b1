"""RAdam (Adam with a rectified adaptive learning rate), as ``torch.optim.RAdam``."""
from __future__ import annotations

from .adam import _check_adam_family
from .optimizer import Optimizer, ParamsT, effective_grad, increment, step_tensor, update_moments, zeros_like


class RAdam(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, decoupled_weight_decay: bool = False, *,
                 maximize: bool = False) -> None:
        _check_adam_family(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, group, state) -> None:
        state["step"] = step_tensor()
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)

    def _update(self, p, grad, group) -> None:
        state = self._state(p, group)
        beta1, beta2 = group["betas"]
        radam_update(p.device.xp, p._data, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data,
                     step=increment(state["step"]), lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                     weight_decay=group["weight_decay"], maximize=group["maximize"],
                     decoupled_weight_decay=group["decoupled_weight_decay"])


def radam_update(xp, param, grad, exp_avg, exp_avg_sq, *, step: float, lr: float, beta1: float, beta2: float,
                 eps: float, weight_decay: float, maximize: bool, decoupled_weight_decay: bool) -> None:
    """One RAdam step on arrays, in place; ``step`` counts this one (1 on the first). Until the
    variance of the adaptive rate is tractable (rho_t <= 5) the step is plain momentum SGD."""
    if weight_decay and decoupled_weight_decay:
        param *= 1 - lr * weight_decay
        weight_decay = 0
    g = effective_grad(xp, grad, param, weight_decay, maximize)
    tmp = update_moments(xp, exp_avg, exp_avg_sq, g, beta1, beta2)

    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
    update = xp.divide(exp_avg, bias_correction1, out=tmp)  # the bias-corrected first moment
    update *= lr
    if rho_t > 5.0:
        rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
        adaptive_lr = xp.sqrt(exp_avg_sq)
        adaptive_lr += eps
        xp.divide(bias_correction2 ** 0.5, adaptive_lr, out=adaptive_lr)
        update *= adaptive_lr
        update *= rect
    param -= update
