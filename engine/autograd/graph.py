"""The tape: graph nodes recorded by the forward pass, and the backward walk that replays them.

Every differentiable op is an ``Op`` subclass with ``forward`` (on raw arrays of the device's ``xp``)
and ``backward`` (on Tensors, built from differentiable ops, so that ``create_graph=True`` records a
graph of the backward pass itself and higher-order gradients work). A node keeps only what its
backward needs (declared by ``save_inputs`` / ``save_output``, or stashed by ``forward``) and drops it
once backward has run, unless ``retain_graph=True``.
"""
from __future__ import annotations

import heapq
import itertools
import sys
import weakref

import numpy as _np

from . import grad_mode
from .. import tensor as _tensor  # circular: resolved at call time
from ..backend import ieee

_seq = itertools.count()


class VersionCounter:
    """Shared by a tensor and its views; bumped by every in-place change, checked by backward."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


class RemovableHandle:
    def __init__(self, hooks: dict, key):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


_hook_ids = itertools.count()


class Node:
    """One recorded operation. ``next_edges[i]`` is where the gradient of input i goes:
    ``(node, output_index)``, or None when input i needs no gradient."""

    __slots__ = ("next_edges", "seq", "__dict__", "__weakref__")
    # defaults that few nodes change (set on the instance then): not written at every op
    num_outputs = 1
    _pre_hooks = None
    _freed = False

    def __init__(self, **params):
        if params:
            self.__dict__.update(params)
        self.seq = next(_seq)

    def name(self) -> str:
        return type(self).__name__ + "Backward0"

    def __repr__(self) -> str:
        return f"<{self.name()} object at {id(self):#x}>"

    @property
    def next_functions(self):
        return tuple((e[0], e[1]) if e is not None else (None, 0) for e in self.next_edges)

    def add_pre_hook(self, output_index: int, hook) -> RemovableHandle:
        if self._pre_hooks is None:
            self._pre_hooks = {}
        key = (output_index, next(_hook_ids))
        self._pre_hooks[key] = hook
        return RemovableHandle(self._pre_hooks, key)

    def run_backward(self, grads: list):
        """Gradients w.r.t. the inputs, given gradients w.r.t. the outputs (a tuple, one per input)."""
        raise NotImplementedError

    def release(self) -> None:
        """Drop everything backward needed; a later backward through this node is an error."""
        self.__dict__.clear()
        self._freed = True


class AccumulateGrad(Node):
    """The end of an edge into a leaf tensor: adds the incoming gradient to ``leaf.grad``."""

    def __init__(self, leaf):
        super().__init__()
        self.leaf = leaf
        self.next_edges = ()

    def name(self) -> str:
        return "AccumulateGrad"

    def release(self) -> None:
        pass  # holds no saved state; the same accumulator serves every graph the leaf joins

    def run_backward(self, grads):
        leaf, grad = self.leaf, grads[0]
        if leaf._hooks:
            for hook in list(leaf._hooks.values()):
                new = hook(grad)
                if new is not None:
                    grad = new
        if leaf.grad is None:
            # a gradient anything else may hold (another leaf, a view, a hook, the caller) is copied:
            # later accumulation adds into .grad in place
            if grad_mode.is_grad_enabled() or _unshared(grad):
                leaf.grad = grad
            else:
                leaf.grad = _tensor.Tensor._make(grad._data.copy())
        elif grad_mode.is_grad_enabled():
            leaf.grad = leaf.grad + grad
        else:
            leaf.grad._data += grad._data
        return ()


# Python 3.14's interpreter may hold references on its stack without counting them, so counts could
# read low there; it copies instead
_COUNTS_ARE_EXACT = sys.version_info < (3, 14)


def _unshared(grad) -> bool:
    """Whether only the backward walk holds ``grad`` (its buffer list and the caller's name for it) and
    only ``grad`` holds its array, which owns its memory and has no views (a view holds its base): then
    a leaf keeps it as its ``.grad`` without a copy, as PyTorch's AccumulateGrad steals a gradient whose
    use count is 1. Any other holder raises a count, which only ever means a copy."""
    data = grad._data
    return (_COUNTS_ARE_EXACT and getattr(data, "base", True) is None and sys.getrefcount(data) == 3
            and sys.getrefcount(grad) == 4)


class Op(Node):
    """Base of the engine's differentiable ops.

    Subclasses define ``forward(self, *arrays) -> array`` and ``backward(self, grad) -> grad or tuple``
    (one entry per input; None where there is none). Inputs may be Tensors or plain numbers; keyword
    arguments of ``apply`` become attributes of the node.
    """

    save_inputs = False  # backward reads self.inputs
    save_output = False  # backward reads self.output
    differentiable = True
    changes_device = False  # the output lives elsewhere than the inputs (to(device))
    is_view = False  # the output may share the first input's memory (reshape, permute, basic indexing)

    @classmethod
    def apply(cls, *inputs, **params):
        Tensor = _tensor.Tensor
        node = cls(**params)
        dev = None
        record = False
        arrays = []
        for x in inputs:
            if isinstance(x, Tensor):
                arrays.append(x._data)
                if dev is None:
                    dev = x._device
                record = record or x._requires_grad
            else:
                arrays.append(x)
        node.device = dev
        node.xp = (dev._xp or dev.xp) if dev is not None else None
        out = node.forward(*arrays)
        if isinstance(out, _np.generic):  # numpy reduces 0-d results to scalars; a Tensor holds arrays
            out = _np.asarray(out)
        out_dev = None if cls.changes_device else dev  # None: Tensor._make reads it off the array
        if not (record and cls.differentiable and grad_mode._state.enabled):
            result = Tensor._make(out, out_dev)
            if cls.is_view:
                _share_storage(result, inputs[0], cls, params)
            return result
        node.next_edges = tuple([x._edge() if isinstance(x, Tensor) else None for x in inputs])
        result = Tensor._make(out, out_dev, grad_fn=node)
        if cls.is_view:
            _share_storage(result, inputs[0], cls, params)
        if cls.save_inputs:
            node._inputs = tuple([((x, x._vc.value) if node.saves_input(i) else (None, None))
                                  if isinstance(x, Tensor) else (x, None) for i, x in enumerate(inputs)])
        if cls.save_output:
            node._output = (out, result._vc, result._vc.value)
        return result

    # -- what backward reads -------------------------------------------------------------------
    @property
    def inputs(self) -> tuple:
        try:
            saved = self._inputs
        except AttributeError:
            raise_freed() if self._freed else None
            raise
        for x, version in saved:
            if version is not None:
                check_version(x, version, self)
        return tuple(x for x, _ in saved)

    @property
    def output(self):
        try:
            arr, vc, version = self._output
        except AttributeError:
            raise_freed() if self._freed else None
            raise
        if vc.value != version:
            raise_modified(arr.shape, vc.value, version, self)
        # re-wrapped rather than kept, so that the node and its output do not form a cycle
        return _tensor.Tensor._make(arr, self.device, grad_fn=self if grad_mode.is_grad_enabled() else None)

    def needs_grad(self, i: int) -> bool:
        return self.next_edges[i] is not None

    def saves_input(self, i: int) -> bool:
        """With ``save_inputs``: whether input i is kept. Ops whose backward reads an input only for
        another input's gradient keep it only when that gradient is needed (less memory, and fewer
        false in-place alarms: ``y[1:] = y[:-1] * w`` with a constant ``w``)."""
        return True

    def run_backward(self, grads):
        g = self.backward(grads[0])
        return g if type(g) is tuple else (g,)

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__} has no backward")


def _share_storage(view, base, op, params) -> None:
    """A view shares its base's version counter, so an in-place change through either is seen, and
    remembers how to re-derive itself from the tensor owning the memory (for in-place rebasing)."""
    if not view.device.xp.may_share_memory(view._data, base._data):
        return
    view._vc = base._vc
    if base._base is None:
        view._base, view._view_fn = base, lambda root: op.apply(root, **params)
    else:
        outer = base._view_fn
        view._base, view._view_fn = base._base, lambda root: op.apply(outer(root), **params)


def check_version(x, version: int, node) -> None:
    if x._vc.value != version:
        raise_modified(x.shape, x._vc.value, version, node)


def raise_modified(shape, now: int, expected: int, node):
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [Tensor of shape {list(shape)}], which is input or output of {node.name()}, is at "
        f"version {now}; expected version {expected} instead. Hint: do the in-place change after "
        "backward, or on a .clone() of the tensor.")


def raise_freed():
    raise RuntimeError(
        "Trying to backward through the graph a second time (or directly access saved tensors after "
        "they have already been freed). Saved intermediate values of the graph are freed when you call "
        ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
        "graph a second time or if you need to access saved tensors after calling backward.")


# ---- the backward walk ---------------------------------------------------------------------------

def _collect(roots):
    """Every node reachable from ``roots`` and its count of incoming edges (iterative DFS)."""
    deps: dict = {}
    seen = set()
    stack = [n for n in roots]
    for n in roots:
        seen.add(n)
    while stack:
        node = stack.pop()
        for edge in node.next_edges:
            if edge is None:
                continue
            child = edge[0]
            deps[child] = deps.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return deps


def run_backward(tensors, grad_tensors, retain_graph: bool, create_graph: bool, inputs=None,
                 allow_unused: bool = False):
    """Propagate ``grad_tensors`` from ``tensors`` back through the graph.

    Without ``inputs``: accumulate into the ``.grad`` of every leaf reached (``Tensor.backward``).
    With ``inputs``: return their gradients and touch no ``.grad`` (``autograd.grad``).
    """
    capture = None
    if inputs is not None:
        capture = {}
        for i, t in enumerate(inputs):
            if not t.requires_grad:
                raise RuntimeError(f"autograd.grad: input {i} does not require grad; "
                                   "call requires_grad_() on it before the forward pass")
            edge = t._edge()
            capture.setdefault((edge[0], edge[1]), []).append(i)
    results = [None] * (len(inputs) if inputs is not None else 0)

    buffers: dict = {}
    roots = []
    for t, g in zip(tensors, grad_tensors):
        edge = t._edge()
        if edge is None:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn; "
                               "call requires_grad_() on the leaf tensors before computing the output")
        node, idx = edge
        buf = buffers.setdefault(node, [None] * node.num_outputs)
        buf[idx] = g if buf[idx] is None else _accumulate(buf[idx], g, create_graph)
        if node not in roots:
            roots.append(node)
    deps = _collect(roots)
    ready = [(-n.seq, n) for n in roots if deps.get(n, 0) == 0]
    heapq.heapify(ready)

    state = grad_mode._state
    previous, state.enabled = state.enabled, create_graph
    try:
        while ready:
            node = heapq.heappop(ready)[1]
            out_grads = _run_node(node, buffers.pop(node, None), capture, results, retain_graph)
            for i, edge in enumerate(node.next_edges):
                if edge is None:
                    continue
                child, idx = edge
                g = out_grads[i] if out_grads is not None else None
                if g is not None:
                    buf = buffers.get(child)
                    if buf is None:
                        buf = buffers[child] = [None] * child.num_outputs
                    buf[idx] = g if buf[idx] is None else _accumulate(buf[idx], g, create_graph)
                deps[child] -= 1
                if deps[child] == 0:
                    heapq.heappush(ready, (-child.seq, child))
            g = out_grads = None  # the gradients live in the buffers alone (see _unshared)
    finally:
        state.enabled = previous

    if inputs is not None:
        for i, r in enumerate(results):
            if r is None and not allow_unused:
                raise RuntimeError(
                    f"One of the differentiated Tensors (input {i}) appears to not have been used in the "
                    "graph. Set allow_unused=True if this is the desired behavior.")
        return tuple(results)
    return None


def _accumulate(total, g, create_graph: bool):
    """The sum of two gradients for one output. Without a graph to record, matching arrays are added
    directly (a new array: either may be shared), skipping the op machinery."""
    if not create_graph and type(total) is type(g) is _tensor.Tensor:
        a, b = total._data, g._data
        if a.shape == b.shape and a.dtype == b.dtype and total._device is g._device:
            with ieee(_np):  # inf + -inf is nan, quietly, as the op says it
                return _tensor.Tensor._make(a + b, total._device)
    return total + g


def _run_node(node, grads, capture, results, retain_graph: bool):
    """Run one node's backward on the summed gradients of its outputs; None when nothing flows."""
    if grads is None or not any(g is not None for g in grads):
        return None
    if node._freed:
        raise_freed()
    if node._pre_hooks:
        for (out_idx, _), hook in list(node._pre_hooks.items()):
            if grads[out_idx] is not None:
                new = hook(grads[out_idx])
                if new is not None:
                    grads[out_idx] = new
    if capture is not None:
        for idx, g in enumerate(grads):
            for i in capture.get((node, idx), ()):
                results[i] = g
        if type(node) is AccumulateGrad:
            return None  # autograd.grad never touches .grad
    out = node.run_backward(grads)
    if not retain_graph:
        node.release()
    if len(out) != len(node.next_edges):
        raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                           f"(expected {len(node.next_edges)}, got {len(out)})")
    return out


def accumulator(t):
    """The AccumulateGrad node of leaf ``t``: one per leaf (held weakly), so a leaf used twice in a
    graph gets one summed gradient and its hooks run once."""
    acc = t._accum() if t._accum is not None else None
    if acc is None:
        acc = AccumulateGrad(t)
        t._accum = weakref.ref(acc)
    return acc
