"""``engine.autograd.Function``: custom differentiable ops written by users, as in PyTorch."""
from __future__ import annotations

from . import grad_mode
from .graph import Node
from .. import tensor as _tensor


class FunctionCtx(Node):
    """The ``ctx`` a custom Function's forward and backward receive; it is also the graph node."""

    def __init__(self, fn_cls):
        super().__init__()
        self._fn_cls = fn_cls
        self.saved_for_backward = ()
        self._non_differentiable = set()
        self.materialize_grads = True
        self.needs_input_grad = ()

    def name(self) -> str:
        return self._fn_cls.__name__ + "Backward"

    def save_for_backward(self, *tensors) -> None:
        self.saved_for_backward = tuple((t, t._vc.value) if isinstance(t, _tensor.Tensor) else (t, None)
                                        for t in tensors)

    @property
    def saved_tensors(self) -> tuple:
        if self._freed:
            from .graph import raise_freed
            raise_freed()
        from .graph import check_version
        for t, version in self.saved_for_backward:
            if version is not None:
                check_version(t, version, self)
        return tuple(t for t, _ in self.saved_for_backward)

    def mark_non_differentiable(self, *tensors) -> None:
        self._non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors) -> None:
        pass  # in-place outputs are returned as new graph outputs here; nothing to rebase

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)

    def run_backward(self, grads):
        if self.materialize_grads:
            grads = [g if g is not None else _tensor.Tensor._make(self._out_zero[i]())
                     for i, g in enumerate(grads)]
        result = self._fn_cls.backward(self, *grads)
        if not isinstance(result, tuple):
            result = (result,)
        # backward returns one entry per forward argument; keep those of the tensor arguments
        if len(result) != len(self._arg_is_tensor):
            raise RuntimeError(f"function {self.name()} returned an incorrect number of gradients "
                               f"(expected {len(self._arg_is_tensor)}, got {len(result)})")
        grads_in = []
        for g, (is_tensor, shape) in zip(result, self._arg_is_tensor):
            if not is_tensor:
                continue
            if g is not None and tuple(g.shape) != shape:
                raise RuntimeError(f"function {self.name()} returned an invalid gradient: got shape "
                                   f"{tuple(g.shape)} but expected shape {shape}")
            grads_in.append(g)
        return tuple(grads_in)


class Function:
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``; call
    ``MyFn.apply(*args)``. Forward runs without recording; backward returns one gradient (or None)
    per forward argument."""

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("a Function subclass must define forward(ctx, *args)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("a Function subclass must define backward(ctx, *grad_outputs)")

    @classmethod
    def apply(cls, *args, **kwargs):
        Tensor = _tensor.Tensor
        ctx = FunctionCtx(cls)
        tensor_args = [a for a in args if isinstance(a, Tensor)]
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with grad_mode.no_grad():
            outputs = cls.forward(ctx, *args, **kwargs)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        record = grad_mode.is_grad_enabled() and any(t.requires_grad for t in tensor_args)
        if not record:
            return outputs
        ctx.next_edges = tuple(t._edge() for t in tensor_args)
        ctx._arg_is_tensor = [(isinstance(a, Tensor), tuple(a.shape) if isinstance(a, Tensor) else None)
                              for a in args]
        ctx.num_outputs = len(outs)
        ctx._out_zero = []
        wrapped = []
        input_ids = {id(t) for t in tensor_args}
        for i, o in enumerate(outs):
            if not isinstance(o, Tensor):
                wrapped.append(o)
                ctx._out_zero.append(None)
                continue
            if id(o) in input_ids:
                o = o.detach()  # an input returned as is: a new output object on the same storage
            ctx._out_zero.append(_zero_maker(o))
            if id(o) not in ctx._non_differentiable and o.is_floating_point():
                o.grad_fn, o._output_nr, o.requires_grad = ctx, i, True
            wrapped.append(o)
        return wrapped[0] if single else tuple(wrapped)


def _zero_maker(t):
    shape, dtype, xp = tuple(t.shape), t._data.dtype, t._device.xp
    return lambda: xp.zeros(shape, dtype=dtype)
