"""Automatic differentiation: the tape (graph.py), grad mode, custom Functions, gradcheck."""
from __future__ import annotations

from .. import tensor as _tensor
from .function import Function, FunctionCtx
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .graph import Node, run_backward


def _seeds(outputs, grad_outputs):
    seeds = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if out.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; output {i} has "
                                   f"shape {tuple(out.shape)}: pass grad_outputs")
            g = _tensor.Tensor._make(out._device.xp.ones_like(out._data), out._device)
        elif tuple(g.shape) != tuple(out.shape):
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {tuple(g.shape)} and "
                               f"output[{i}] has a shape of {tuple(out.shape)}.")
        seeds.append(g)
    return seeds


def _listify(x):
    return [x] if isinstance(x, _tensor.Tensor) else list(x)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph: bool = False,
         allow_unused: bool = False, is_grads_batched: bool = False, materialize_grads: bool = False):
    """Gradients of ``outputs`` w.r.t. ``inputs`` (a tuple), without touching any ``.grad``."""
    outputs, inputs = _listify(outputs), _listify(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    seeds = _seeds(outputs, _listify(grad_outputs) if not isinstance(grad_outputs, list) else grad_outputs)
    if retain_graph is None:
        retain_graph = create_graph
    result = run_backward(outputs, seeds, retain_graph, create_graph, inputs=inputs,
                          allow_unused=allow_unused or materialize_grads)
    if materialize_grads:
        result = tuple(g if g is not None else x.new_zeros(x.shape) for g, x in zip(result, inputs))
    return result


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph: bool = False, inputs=None) -> None:
    tensors = _listify(tensors)
    if grad_tensors is None:
        grad_tensors = [None] * len(tensors)
    seeds = _seeds(tensors, _listify(grad_tensors) if not isinstance(grad_tensors, list) else grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    if inputs is not None:
        for t, g in zip(_listify(inputs), grad(tensors, _listify(inputs), seeds, retain_graph, create_graph,
                                               allow_unused=True)):
            if g is not None:
                t.grad = g if t.grad is None else t.grad + g
        return
    run_backward(tensors, seeds, retain_graph, create_graph)


__all__ = ["Function", "FunctionCtx", "Node", "backward", "enable_grad", "grad", "gradcheck", "gradgradcheck",
           "GradcheckError", "inference_mode", "is_grad_enabled", "no_grad", "set_grad_enabled"]
