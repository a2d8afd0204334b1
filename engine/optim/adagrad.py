"""Adagrad with learning-rate decay, as ``torch.optim.Adagrad``."""
from __future__ import annotations

from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT, effective_grad, increment, step_tensor


class Adagrad(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, maximize=maximize)
        super().__init__(params, defaults)
        # As PyTorch, the accumulators exist from the start (a fresh state_dict already holds them).
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group, self.state[p])

    def _init_state(self, p, group, state) -> None:
        state["step"] = step_tensor()
        state["sum"] = Tensor._make(p.device.xp.full_like(p._data, group["initial_accumulator_value"]), p.device)

    def _update(self, p, grad, group) -> None:
        state = self._state(p, group)
        adagrad_update(p.device.xp, p._data, grad, state["sum"]._data, step=increment(state["step"]),
                       lr=group["lr"], lr_decay=group["lr_decay"], eps=group["eps"],
                       weight_decay=group["weight_decay"], maximize=group["maximize"])


def adagrad_update(xp, param, grad, state_sum, *, step: float, lr: float, lr_decay: float, eps: float,
                   weight_decay: float, maximize: bool) -> None:
    """One Adagrad step on arrays, in place; ``step`` counts this one (1 on the first)."""
    g = effective_grad(xp, grad, param, weight_decay, maximize)
    clr = lr / (1 + (step - 1) * lr_decay)
    tmp = xp.multiply(g, g)
    state_sum += tmp
    std = xp.sqrt(state_sum, out=tmp)
    std += eps
    update = xp.divide(g, std, out=std)
    update *= clr
    param -= update
