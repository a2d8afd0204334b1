"""SGD with momentum, dampening, Nesterov momentum, L2 weight decay and maximize, as ``torch.optim.SGD``."""
from __future__ import annotations

from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT, add_scaled_, effective_grad


class SGD(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _update(self, p, grad, group) -> None:
        # Without momentum SGD keeps no state at all (state_dict()["state"] stays empty, as PyTorch's).
        momentum = group["momentum"]
        state = self.state[p] if momentum != 0 else {}
        buf = state.get("momentum_buffer")
        new_buf = sgd_update(p.device.xp, p._data, grad, None if buf is None else buf._data, lr=group["lr"],
                             momentum=momentum, dampening=group["dampening"],
                             weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                             maximize=group["maximize"])
        if buf is None and momentum != 0:
            state["momentum_buffer"] = Tensor._make(new_buf, p.device)


def sgd_update(xp, param, grad, momentum_buffer, *, lr: float, momentum: float, dampening: float,
               weight_decay: float, nesterov: bool, maximize: bool):
    """One SGD step on arrays, in place. ``momentum_buffer`` is None on the first step with momentum,
    when the buffer starts as the gradient itself; returns the (possibly new) buffer."""
    g = effective_grad(xp, grad, param, weight_decay, maximize)
    if momentum != 0:
        if momentum_buffer is None:
            momentum_buffer = g if g is not grad else g.copy()  # never alias the parameter's .grad
        else:
            momentum_buffer *= momentum
            if dampening:
                add_scaled_(xp, momentum_buffer, 1 - dampening, g)
            else:
                momentum_buffer += g
        if nesterov:  # g + momentum * buf
            look_ahead = xp.multiply(momentum_buffer, momentum)
            look_ahead += g
            g = look_ahead
        else:
            g = momentum_buffer
    add_scaled_(xp, param, -lr, g)
    return momentum_buffer
