"""NAdam (Adam with Nesterov momentum and a momentum schedule), as ``torch.optim.NAdam``."""
from __future__ import annotations

from .adam import _check_adam_family
from .optimizer import Optimizer, ParamsT, add_scaled_, effective_grad, increment, step_tensor, update_moments, zeros_like


class NAdam(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, momentum_decay: float = 4e-3,
                 decoupled_weight_decay: bool = False, *, maximize: bool = False) -> None:
        _check_adam_family(lr, betas, eps, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _init_state(self, p, group, state) -> None:
        state["step"] = step_tensor()
        mu_product = step_tensor()  # a scalar of the same dtype, on the CPU, starting at 1
        mu_product._data += 1
        state["mu_product"] = mu_product
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)

    def _update(self, p, grad, group) -> None:
        state = self._state(p, group)
        beta1, beta2 = group["betas"]
        nadam_update(p.device.xp, p._data, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data,
                     state["mu_product"]._data, step=increment(state["step"]), lr=group["lr"], beta1=beta1,
                     beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                     momentum_decay=group["momentum_decay"], maximize=group["maximize"],
                     decoupled_weight_decay=group["decoupled_weight_decay"])


def nadam_update(xp, param, grad, exp_avg, exp_avg_sq, mu_product, *, step: float, lr: float, beta1: float,
                 beta2: float, eps: float, weight_decay: float, momentum_decay: float, maximize: bool,
                 decoupled_weight_decay: bool) -> None:
    """One NAdam step on arrays, in place; ``step`` counts this one (1 on the first). ``mu_product`` is
    the 0-d CPU array of the momentum coefficients' running product, updated here in its own dtype."""
    if weight_decay and decoupled_weight_decay:
        param *= 1 - lr * weight_decay
        weight_decay = 0
    g = effective_grad(xp, grad, param, weight_decay, maximize)
    bias_correction2 = 1 - beta2 ** step
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product *= mu
    mu_product_now = float(mu_product)
    mu_product_next = mu_product_now * mu_next

    tmp = update_moments(xp, exp_avg, exp_avg_sq, g, beta1, beta2)
    denom = xp.divide(exp_avg_sq, bias_correction2, out=tmp)
    xp.sqrt(denom, out=denom)
    denom += eps
    # The Nesterov step: part along the current gradient, part along the next momentum.
    add_scaled_(xp, param, -lr * (1.0 - mu) / (1.0 - mu_product_now), xp.divide(g, denom))
    add_scaled_(xp, param, -lr * mu_next / (1.0 - mu_product_next), xp.divide(exp_avg, denom, out=denom))
