"""Differentiable ops by family; importing this package binds them onto Tensor."""
from . import elementwise, reduce, shape, index, linalg  # noqa: F401
