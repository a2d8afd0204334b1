"""``engine.Tensor``: one array of a device's array module, plus what autograd needs.

The math lives in ``engine/ops``; each ops module binds its functions here as methods and operators,
so every op is defined in exactly one place.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import dtypes
from .autograd import grad_mode
from .backend import CPU, device as Device, device_of_array, to_device
from .autograd.graph import VersionCounter, RemovableHandle, accumulator, run_backward, _hook_ids


class Tensor:
    __slots__ = ("_data", "_device", "_requires_grad", "grad", "grad_fn", "_output_nr", "_vc", "_base",
                 "_view_fn", "_hooks", "_accum", "_retains_grad", "__weakref__")

    # numpy must defer to our reflected operators (np_array + tensor -> Tensor.__radd__)
    __array_priority__ = 1000

    def __init__(self, *args, dtype=None, device=None, requires_grad: bool = False):
        """``Tensor(data)`` copies data as the default float dtype; ``Tensor(2, 3)`` (or a Size) is a
        zero-filled tensor of that shape, as PyTorch's legacy constructor (its memory is uninitialized)."""
        dt = dtypes.as_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()
        sizes = (len(args) == 1 and isinstance(args[0], Size)) or (args and all(
            isinstance(a, numbers.Integral) and not isinstance(a, (bool, np.bool_, Tensor)) for a in args))
        if sizes:
            dev = Device(device) if device is not None else CPU
            src = dev.xp.zeros(_size_args(args), dtype=dt.np)
        elif len(args) > 1:
            raise TypeError(f"Tensor() takes one data argument or integer sizes, got {len(args)} arguments "
                            f"({', '.join(type(a).__name__ for a in args)})")
        else:
            src = as_array(args[0] if args else (), dt, device)
        self._init(src, device_of_array(src) if device is None else Device(device))
        self.requires_grad_(requires_grad)

    def _init(self, arr, dev, grad_fn=None):
        self._data = arr
        self._device = dev
        self._requires_grad = grad_fn is not None
        self.grad = None
        self.grad_fn = grad_fn
        self._output_nr = 0
        self._vc = VersionCounter()
        self._base = None  # for a view: the tensor that owns the memory
        self._view_fn = None  # for a view: base -> this view, replayed when an in-place op rebases the base
        self._hooks = None
        self._accum = None
        self._retains_grad = False

    @classmethod
    def _make(cls, arr, dev=None, grad_fn=None) -> "Tensor":
        t = object.__new__(Tensor)
        t._init(arr, dev if dev is not None else device_of_array(arr), grad_fn)
        return t

    # ---- metadata ---------------------------------------------------------------------------
    @property
    def shape(self) -> "Size":
        return Size(self._data.shape)

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> dtypes.dtype:
        return dtypes.from_numpy_dtype(self._data.dtype)

    @property
    def device(self) -> Device:
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def _version(self) -> int:
        return self._vc.value

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self._data.shape[_wrap_dim(dim, self.ndim)]

    def dim(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._data.itemsize

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    def stride(self, dim: int | None = None):
        """Steps in elements (not bytes) between neighbours along each dimension, as PyTorch reports."""
        if self._data.size == 0:  # numpy may report 0 strides here; PyTorch reports contiguous ones
            strides, step = [], 1
            for n in reversed(self._data.shape):
                strides.insert(0, step)
                step *= max(n, 1)
            strides = tuple(strides)
        else:
            strides = tuple(st // self._data.itemsize for st in self._data.strides)
        return strides if dim is None else strides[_wrap_dim(dim, self.ndim)]

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __hash__(self):
        return id(self)

    # ---- reading values ---------------------------------------------------------------------
    def item(self):
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar; "
                               "item() needs exactly one element")
        return self._host().reshape(()).item()

    def tolist(self):
        return self._host().tolist()

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if not force:
            if self.requires_grad:
                raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                                   "Use tensor.detach().numpy() instead.")
            if self._device.type != "cpu":
                raise TypeError(f"can't convert {self._device} device type tensor to numpy. "
                                "Use Tensor.cpu() to copy the tensor to host memory first.")
            return self._data
        return self._host()

    def _host(self) -> np.ndarray:
        return self._data if self._device.type == "cpu" else self._data.get()

    def __array__(self, dtype=None, copy=None):
        """numpy's protocol: shares memory unless ``dtype`` differs or ``copy=True`` asks for a copy."""
        arr = self.numpy()
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            if copy is False:
                raise ValueError(f"converting a {self.dtype.name} tensor to numpy {np.dtype(dtype)} needs a copy, "
                                 "but copy=False was given")
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    def _python_scalar(self, kind: str):
        if self._data.size != 1:
            raise ValueError(f"only one element tensors can be converted to Python scalars; this one has "
                             f"{self._data.size} elements (shape {list(self.shape)}): use .tolist(), or index "
                             f"it first")
        return self.item()

    def __float__(self):
        return float(self._python_scalar("float"))

    def __int__(self):
        return int(self._python_scalar("int"))

    def __index__(self):
        if self.dtype.is_floating_point or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self._data.size} values is ambiguous")
        return bool(self.item())

    def __format__(self, spec: str) -> str:
        """As PyTorch: a 0-d tensor formats as its Python number (``f"{loss:.4f}"``); other tensors
        only with an empty spec (their repr)."""
        if self.ndim == 0:
            return format(self.item(), spec)
        if spec:
            raise TypeError(f"unsupported format string {spec!r} passed to Tensor.__format__: only 0-d tensors "
                            f"take a format spec, this one has shape {list(self.shape)}; format t.item() "
                            "(one element) or the values of t.tolist()")
        return repr(self)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))

    def __contains__(self, element) -> bool:
        """``x in t``: whether any element of ``t`` equals ``x``."""
        if not isinstance(element, (Tensor, numbers.Number)):
            raise RuntimeError(f"Tensor.__contains__ only supports Tensor or scalar, but you passed in a "
                               f"{type(element).__name__}")
        return bool((self == element).any().item())

    def __repr__(self) -> str:
        from ._format import tensor_repr
        return tensor_repr(self)

    # ---- autograd ---------------------------------------------------------------------------
    def _edge(self):
        if self.grad_fn is not None:
            return (self.grad_fn, self._output_nr)
        if self._requires_grad:
            return (accumulator(self), 0)
        return None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        """``t.requires_grad = flag`` is ``t.requires_grad_(flag)``, with the same checks."""
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want "
                                   "to use a computed variable in a subgraph that doesn't require "
                                   "differentiation use var_no_grad = var.detach().")
            self._requires_grad = True  # an op's output always requires grad
            return self
        if requires_grad and self._data.dtype.kind != "f":
            raise RuntimeError(f"only Tensors of floating point dtype can require gradients, got {self.dtype}")
        self._requires_grad = bool(requires_grad)
        return self

    def detach(self) -> "Tensor":
        """The same storage (and version counter) without history."""
        t = Tensor._make(self._data, self._device)
        t._vc = self._vc
        return t

    def detach_(self) -> "Tensor":
        self.grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self) -> "Tensor":
        """The same storage without history; changes through it are invisible to autograd."""
        return Tensor._make(self._data, self._device)

    @data.setter
    def data(self, other: "Tensor"):
        """Swap in ``other``'s storage (any shape); history and ``requires_grad`` stay."""
        if not isinstance(other, Tensor):
            raise TypeError(f"data must be set to a Tensor, got {type(other).__name__}")
        if self._requires_grad and other._data.dtype.kind != "f":
            raise RuntimeError(f"data set to a tensor that requires gradients must be floating point, got "
                               f"{other.dtype}")
        self._data = other._data
        self._device = other._device

    def backward(self, gradient=None, retain_graph=None, create_graph: bool = False, inputs=None) -> None:
        if gradient is None:
            if self._data.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; this tensor has "
                                   f"shape {tuple(self.shape)}: pass gradient= (a tensor of that shape)")
            gradient = Tensor._make(self._device.xp.ones_like(self._data), self._device)
        elif not isinstance(gradient, Tensor):
            gradient = Tensor._make(as_array(gradient, self.dtype, self._device), self._device)
        elif gradient._data.shape != self._data.shape:
            raise RuntimeError(f"backward: gradient has shape {tuple(gradient.shape)} but the tensor has "
                               f"shape {tuple(self.shape)}; they must match")
        if retain_graph is None:
            retain_graph = create_graph
        if inputs is not None:
            from .autograd import grad as _grad
            inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
            grads = _grad([self], inputs, [gradient], retain_graph=retain_graph,
                          create_graph=create_graph, allow_unused=True)
            for t, g in zip(inputs, grads):
                if g is not None:
                    t.grad = g.detach().clone() if t.grad is None else t.grad + g
            return
        run_backward([self], [gradient], retain_graph, create_graph)

    def register_hook(self, hook) -> RemovableHandle:
        """``hook(grad)`` runs when the gradient w.r.t. this tensor is computed; it may return a new one."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn.add_pre_hook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = {}
        key = next(_hook_ids)
        self._hooks[key] = hook
        return RemovableHandle(self._hooks, key)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor, accumulated like a leaf's."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self._retains_grad:
            return
        import weakref
        ref = weakref.ref(self)

        def keep(grad):
            t = ref()
            if t is not None:
                g = grad.detach().clone() if not grad_mode.is_grad_enabled() else grad
                t.grad = g if t.grad is None else t.grad + g
        self.grad_fn.add_pre_hook(self._output_nr, keep)
        self._retains_grad = True

    # ---- in-place machinery -----------------------------------------------------------------
    def _inplace(self, fn, *args, **kwargs) -> "Tensor":
        """Run the out-of-place ``fn(self, *args)`` and write the result into this tensor's storage.
        With autograd on, this tensor becomes the op's output: its old value (a snapshot carrying
        its old place in the graph) is what the op saw."""
        recording = grad_mode._state.enabled and (
            self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args))
        if recording:
            if self.requires_grad and self.grad_fn is None:
                raise RuntimeError("a leaf Variable that requires grad is being used in an in-place "
                                   "operation. Wrap the update in engine.no_grad(), or use an out-of-place op.")
            if self._base is not None and self._base.requires_grad and self._base.grad_fn is None:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                                   "in-place operation. Wrap it in engine.no_grad(), or clone the leaf first.")
            old = Tensor._make(self._data.copy(), self._device)
            old.grad_fn, old._output_nr, old.requires_grad = self.grad_fn, self._output_nr, self.requires_grad
            result = fn(old, *args, **kwargs)
        else:
            result = fn(self, *args, **kwargs)
        if result._data.dtype != self._data.dtype and result.dtype.category > self.dtype.category:
            raise RuntimeError(f"result type {result.dtype.name} can't be cast to the desired output type "
                               f"{self.dtype.name} of an in-place op; convert the tensor first, "
                               f"e.g. t = t.to({result.dtype})")
        if tuple(result.shape) != tuple(self.shape):
            raise RuntimeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                               f"{list(result.shape)} of the in-place op")
        try:
            self._device.xp.copyto(self._data, result._data, casting="unsafe")
        except ValueError as e:  # numpy: read-only (e.g. an expanded view)
            raise RuntimeError(f"cannot write in place into this tensor ({e}); use .clone() first") from None
        self._vc.value += 1
        if result.grad_fn is not None:
            if result.dtype != self.dtype:
                result = result.to(self.dtype)
            if self._base is not None:
                self._rebase_view(result)
            else:
                self.grad_fn, self._output_nr, self.requires_grad = result.grad_fn, result._output_nr, True
        return self

    def _rebase_view(self, new_value: "Tensor") -> None:
        """An in-place op recorded on a view changed its base too: the base becomes the output of a
        node that routes the gradient of the view's region to ``new_value`` and the rest to the
        base's old history (PyTorch's CopySlices); the view becomes a fresh view of the new base."""
        from .ops.index import CopySlices
        base = self._base
        rebased = CopySlices.apply(base, new_value, view_fn=self._view_fn)
        base.grad_fn, base._output_nr, base.requires_grad = rebased.grad_fn, 0, True
        fresh = self._view_fn(base)
        self.grad_fn, self._output_nr, self.requires_grad = fresh.grad_fn, fresh._output_nr, True

    # ---- conversion -------------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None, non_blocking: bool = False, copy: bool = False):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other_tensor)``."""
        device, dtype = parse_to_args(args, device, dtype)
        from .ops.shape import to_device_op, cast
        out = self
        if device is not None and Device(device) is not self._device:
            out = to_device_op(out, Device(device))
        if dtype is not None and dtypes.as_dtype(dtype) != out.dtype:
            out = cast(out, dtypes.as_dtype(dtype))
        if copy and out is self:
            out = self.clone()
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, device=None) -> "Tensor":
        return self.to(Device("cuda", device) if isinstance(device, int) or device is None else device)

    def type(self, dtype=None, non_blocking: bool = False):
        """``t.type()`` is the legacy type name (``'engine.FloatTensor'``); ``t.type(dtype)`` casts and
        also takes such a name (``'engine.LongTensor'``, ``'torch.cuda.FloatTensor'``)."""
        if dtype is None:
            return ("engine.cuda." if self.is_cuda else "engine.") + _LEGACY_TYPE_NAMES[self.dtype.name]
        if isinstance(dtype, str) and dtype.endswith("Tensor"):
            parts = dtype.split(".")
            by_legacy = {v: k for k, v in _LEGACY_TYPE_NAMES.items()}
            if len(parts) < 2 or parts[0] not in ("engine", "torch") or parts[-1] not in by_legacy \
                    or parts[1:-1] not in ([], ["cuda"]):
                raise ValueError(f"invalid type {dtype!r}: expected e.g. 'engine.FloatTensor' or "
                                 "'engine.cuda.LongTensor'")
            return self.to(device="cuda" if parts[1:-1] == ["cuda"] else "cpu", dtype=by_legacy[parts[-1]])
        return self.to(dtype)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    def new_tensor(self, data, dtype=None, device=None, requires_grad: bool = False) -> "Tensor":
        from .creation import tensor
        return tensor(data, dtype=dtype or self.dtype, device=device or self._device, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False):
        return self.new_full(_size_args(size), 0, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False):
        return self.new_full(_size_args(size), 1, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad: bool = False):
        return self.new_full(_size_args(size), 0, dtype=dtype, device=device, requires_grad=requires_grad)

    def new_full(self, size, fill_value, dtype=None, device=None, requires_grad: bool = False):
        from .creation import full
        return full(size, fill_value, dtype=dtype or self.dtype, device=device or self._device,
                    requires_grad=requires_grad)


_LEGACY_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
                      "int64": "LongTensor", "int32": "IntTensor", "int16": "ShortTensor", "int8": "CharTensor",
                      "uint8": "ByteTensor", "bool": "BoolTensor"}


class Size(tuple):
    """``tensor.shape``: a tuple, printed as PyTorch prints it."""

    def __repr__(self) -> str:
        return f"engine.Size({list(self)})"

    def __getitem__(self, key):
        out = tuple.__getitem__(self, key)
        return Size(out) if isinstance(key, slice) else out

    def __add__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple(self) + tuple(other))

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n


def parse_to_args(args, device=None, dtype=None):
    """(device, dtype) from the positional forms of ``Tensor.to`` and ``Module.to``:
    a device (string or object), a dtype, or a tensor whose device and dtype are taken."""
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (str, Device)):
            device = a
        else:
            dtype = a
    return device, dtype


def _wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def _size_args(size) -> tuple:
    """``f(2, 3)`` and ``f((2, 3))`` and ``f([2, 3])`` all mean shape (2, 3)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"size must be a sequence of ints, got {type(s).__name__} {s!r}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
        out.append(int(s))
    return tuple(out)


def as_array(data, dtype=None, device=None):
    """An array of ``device``'s xp from Python data, numpy/cupy arrays or Tensors.
    ``dtype=None`` infers as PyTorch does (Python floats -> float32, ints -> int64)."""
    dev = Device(device) if device is not None else None
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        arr = data
    else:
        arr = _from_python(data, dtype)
    if dev is None:
        dev = device_of_array(arr)
    arr = to_device(arr, dev)
    target = dtypes.as_dtype(dtype).np if dtype is not None else dtypes.from_numpy_dtype(arr.dtype).np
    return arr.astype(target, copy=False)


def _from_python(data, dtype):
    """A numpy array from Python data: numbers, bools, (nested) lists/tuples of them, numpy scalars and
    arrays, tensors. With ``dtype=None`` the dtype is PyTorch's: the promotion of every element's type,
    where Python floats are the default float dtype, ints int64, bools bool, and numpy scalars, numpy
    arrays and tensors keep their own dtype."""
    inferred = _infer_dtype(data)
    target = dtypes.as_dtype(dtype) if dtype is not None else inferred
    if isinstance(data, (list, tuple, range)):
        data = _nested_map(data, lambda x: x._host() if isinstance(x, Tensor) else x)
    try:
        return np.asarray(data, dtype=target.np)
    except ValueError as e:
        if "inhomogeneous" in str(e) or "sequence" in str(e):
            raise ValueError("could not build a tensor: the nested sequences do not have a regular shape "
                             "(e.g. [[1, 2], [3]]); every sequence at one depth must have the same length "
                             f"({e})") from None
        raise


def _infer_dtype(data) -> dtypes.dtype:
    result = None
    seen = set()  # Python scalar types already counted: each decides the dtype once
    stack = [data]
    while stack:
        x = stack.pop()
        kind = type(x)
        if kind in seen:
            continue
        if kind is list or kind is tuple or kind is range:
            stack.extend(x)
            continue
        if isinstance(x, (np.ndarray, np.generic)):  # before float: np.float64 subclasses float
            d = dtypes.from_numpy_dtype(x.dtype)
        elif isinstance(x, Tensor):
            d = x.dtype
        elif isinstance(x, (bool, int, float)):
            d = (dtypes.bool_ if isinstance(x, bool) else dtypes.int64 if isinstance(x, int)
                 else dtypes.get_default_dtype())
            seen.add(kind)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
            continue
        else:
            raise TypeError(f"could not infer the dtype of {type(x).__name__} {x!r:.40}: a tensor is built from "
                            "numbers, bools, (nested) lists or tuples of them, numpy arrays or tensors")
        result = d if result is None else dtypes.promote_types(result, d)
    return dtypes.get_default_dtype() if result is None else result


def _nested_map(data, fn):
    if isinstance(data, (list, tuple)):
        return [_nested_map(x, fn) for x in data]
    return fn(data)


__all__ = ["Tensor", "Size", "as_array", "CPU"]
