"""``nn.Parameter``: a leaf tensor that a Module registers as one of its weights."""
from __future__ import annotations

from ..tensor import Tensor


class Parameter(Tensor):
    """Shares ``data``'s storage; requires grad unless told otherwise."""

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from ..creation import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter expects a Tensor, got {type(data).__name__}")
        self._init(data._data, data._device)
        self._vc = data._vc
        self.requires_grad_(requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo):
        out = Parameter(Tensor._make(self._data.copy(), self._device), self.requires_grad)
        memo[id(self)] = out
        return out

    def __reduce_ex__(self, protocol):
        raise TypeError("Parameters are not picklable: save a state_dict with engine.save instead")
