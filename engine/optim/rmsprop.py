"""RMSprop (optionally centered, with momentum), as ``torch.optim.RMSprop``."""
from __future__ import annotations

from .optimizer import Optimizer, ParamsT, add_scaled_, effective_grad, increment, lerp_, step_tensor, zeros_like


class RMSprop(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *,
                 maximize: bool = False) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _init_state(self, p, group, state) -> None:
        state["step"] = step_tensor()
        state["square_avg"] = zeros_like(p)
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = zeros_like(p)

    def _update(self, p, grad, group) -> None:
        state = self._state(p, group)
        increment(state["step"])  # kept for PyTorch's state layout; RMSprop's math does not use it
        buf = state["momentum_buffer"]._data if group["momentum"] > 0 else None
        grad_avg = state["grad_avg"]._data if group["centered"] else None
        rmsprop_update(p.device.xp, p._data, grad, state["square_avg"]._data, grad_avg, buf, lr=group["lr"],
                       alpha=group["alpha"], eps=group["eps"], weight_decay=group["weight_decay"],
                       momentum=group["momentum"], maximize=group["maximize"])


def rmsprop_update(xp, param, grad, square_avg, grad_avg, momentum_buffer, *, lr: float, alpha: float,
                   eps: float, weight_decay: float, momentum: float, maximize: bool) -> None:
    """One RMSprop step on arrays, in place. ``grad_avg`` is given when centered (the variance, not the
    raw second moment, normalises the step), ``momentum_buffer`` when momentum > 0."""
    g = effective_grad(xp, grad, param, weight_decay, maximize)
    square_avg *= alpha
    tmp = xp.multiply(g, g)
    tmp *= 1 - alpha
    square_avg += tmp
    if grad_avg is not None:
        lerp_(xp, grad_avg, g, 1 - alpha)
        avg = xp.multiply(grad_avg, grad_avg, out=tmp)
        xp.subtract(square_avg, avg, out=avg)
        xp.sqrt(avg, out=avg)
    else:
        avg = xp.sqrt(square_avg, out=tmp)
    avg += eps
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += xp.divide(g, avg, out=avg)
        add_scaled_(xp, param, -lr, momentum_buffer, tmp)
    else:
        update = xp.divide(g, avg, out=avg)
        update *= lr
        param -= update
