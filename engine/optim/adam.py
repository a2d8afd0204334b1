"""Adam and AdamW (decoupled weight decay), with amsgrad and maximize, as ``torch.optim.Adam/AdamW``."""
from __future__ import annotations

from .. import _native
from .._parallel import map_chunks
from .optimizer import Optimizer, ParamsT, effective_grad, increment, step_tensor, update_moments, zeros_like


def _check_adam_family(lr, betas, eps, weight_decay) -> None:
    """The checks (and messages) PyTorch shares between Adam, AdamW, Adamax, NAdam and RAdam."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


class Adam(Optimizer):
    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False) -> None:
        _check_adam_family(lr, betas, eps, weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, group, state) -> None:
        state["step"] = step_tensor()
        state["exp_avg"] = zeros_like(p)
        state["exp_avg_sq"] = zeros_like(p)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_like(p)

    def _update(self, p, grad, group) -> None:
        state = self._state(p, group)
        beta1, beta2 = group["betas"]
        max_exp_avg_sq = state["max_exp_avg_sq"]._data if group["amsgrad"] else None
        adam_update(p.device.xp, p._data, grad, state["exp_avg"]._data, state["exp_avg_sq"]._data, max_exp_avg_sq,
                    step=increment(state["step"]), lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                    weight_decay=group["weight_decay"], maximize=group["maximize"],
                    decoupled_weight_decay=group["decoupled_weight_decay"])


class AdamW(Adam):
    """Adam whose weight decay shrinks the parameters directly instead of entering the gradient's moments."""

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # as PyTorch: an AdamW always decouples
            group["decoupled_weight_decay"] = True


def adam_update(xp, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step: float, lr: float, beta1: float,
                beta2: float, eps: float, weight_decay: float, maximize: bool, decoupled_weight_decay: bool) -> None:
    """One Adam step on arrays, in place; ``step`` counts this one (1 on the first). With
    ``max_exp_avg_sq`` (amsgrad) the running maximum of ``exp_avg_sq`` normalises the step. Its dozen
    passes run on cache-sized pieces of the arrays, spread over the threads."""
    decay = 1 - lr * weight_decay if weight_decay and decoupled_weight_decay else None
    if decay is not None:
        weight_decay = 0
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    if _native.usable(xp, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq):  # the kernel below, fused
        _native.adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, decay=1.0 if decay is None else decay,
                     l2=weight_decay, maximize=maximize, lerp_weight=1 - beta1, beta2=beta2,
                     bias_correction2_sqrt=bias_correction2_sqrt, eps=eps, step_size=step_size)
        return

    def kernel(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq):
        if decay is not None:
            param *= decay
        g = effective_grad(xp, grad, param, weight_decay, maximize)
        tmp = update_moments(xp, exp_avg, exp_avg_sq, g, beta1, beta2)
        if max_exp_avg_sq is not None:
            xp.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        denom = xp.sqrt(exp_avg_sq if max_exp_avg_sq is None else max_exp_avg_sq, out=tmp)
        denom /= bias_correction2_sqrt
        denom += eps
        update = xp.divide(exp_avg, denom, out=tmp)
        update *= step_size
        param -= update

    map_chunks(xp, kernel, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq)
