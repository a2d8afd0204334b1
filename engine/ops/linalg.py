"""Matrix products: matmul (1-D, 2-D, batched with broadcasting), mm, bmm, outer, dot, einsum."""
from __future__ import annotations

from .. import _blas, _parallel
from ..autograd import grad_mode
from ..autograd.graph import Op
from ..tensor import Tensor
from ._util import bind, operands, sum_to
from .shape import Permute


def _product(xp, a, b, ta: bool = False, tb: bool = False):
    """op(a) @ op(b) on arrays, op a transpose where asked."""
    if ta:
        a = a.T
    if tb:
        b = b.T
    if a.ndim > 2 and b.ndim == 2:
        # one 2-D GEMM: numpy's matmul of a batch against one broadcast matrix skips BLAS (~100x slower)
        return _blas.matmul(xp, a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
    if a.ndim == 2 and b.ndim == 2:
        return _blas.matmul(xp, a, b)
    return _parallel.batched_matmul(xp, a, b)


class Matmul(Op):
    """a @ b, with broadcasting and 1-D promotion. For 2-D operands ``ta``/``tb`` ask for a or b
    transposed (a free view), which lets backward multiply by a transpose without a node for it."""
    save_inputs = True
    ta = tb = False

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return _product(self.xp, a, b, self.ta, self.tb)

    def _gradient(self, x, y, ta: bool = False, tb: bool = False):
        """op(x) @ op(y) for a gradient: a node when the backward records a graph (create_graph), else
        the product of the arrays alone (an RNN's backward takes ~150 of these per step)."""
        if grad_mode.is_grad_enabled():
            return Matmul.apply(x, y, ta=ta, tb=tb)
        return Tensor._make(_product(self.xp, x._data, y._data, ta, tb), x._device)

    def saves_input(self, i):
        return self.needs_grad(1 - i)  # a's gradient reads b, and b's reads a

    def backward(self, g):
        a, b = self.inputs
        sa, sb = self.shapes
        ga = gb = None
        if len(sa) == 2 and len(sb) == 2:  # C = op(A) @ op(B), op a transpose or not
            ta, tb = self.ta, self.tb
            if self.needs_grad(0):
                ga = self._gradient(b, g, ta=tb, tb=True) if ta else self._gradient(g, b, tb=not tb)
            if self.needs_grad(1):
                gb = self._gradient(g, a, ta=True, tb=ta) if tb else self._gradient(a, g, ta=not ta)
            return ga, gb
        # treat a 1-D a as a row and a 1-D b as a column, then unbroadcast the batch dims
        sa2 = (1,) + sa if len(sa) == 1 else sa
        sb2 = sb + (1,) if len(sb) == 1 else sb
        g2 = g  # the output as if from a2 @ b2 (b first: with 1-D @ 1-D, g is 0-d and becomes (1, 1))
        if len(sb) == 1:
            g2 = g2.unsqueeze(-1)
        if len(sa) == 1:
            g2 = g2.unsqueeze(-2)
        if self.needs_grad(0):
            ga = sum_to(matmul(g2, b.reshape(sb2).mT), sa2).reshape(sa)
        if self.needs_grad(1):
            gb = sum_to(matmul(a.reshape(sa2).mT, g2), sb2).reshape(sb)
        return ga, gb


def matmul(input, other):
    if isinstance(input, Tensor) and isinstance(other, Tensor) and input._data.dtype != other._data.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {input.dtype.name} != "
                           f"{other.dtype.name}; convert one first, e.g. b.to(a.dtype)")
    a, b = operands(input, other)
    sa, sb = a._data.shape, b._data.shape  # (the arrays' shapes: this runs at every product)
    if not sa or not sb:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got {len(sa)}D and {len(sb)}D")
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    if sa[-1] != k_b:
        raise RuntimeError(f"matmul: shapes {sa} and {sb} cannot be multiplied ({sa[-1]} != {k_b}: the last dim "
                           f"of the first must equal the {'first' if len(sb) == 1 else 'second-to-last'} dim "
                           "of the second)")
    if len(sa) > 2 and len(sb) > 2:
        try:
            a._device.xp.broadcast_shapes(sa[:-2], sb[:-2])
        except ValueError:
            raise RuntimeError(f"matmul: batch dimensions of {sa} and {sb} cannot be broadcast together") from None
    if len(sa) == 2 and len(sb) == 2:
        ma, mb = _transposed_of(a), _transposed_of(b)
        if ma is not None or mb is not None:
            return Matmul.apply(a if ma is None else ma, b if mb is None else mb, ta=ma is not None,
                                tb=mb is not None)
    return Matmul.apply(a, b)


def _transposed_of(t):
    """The matrix m when 2-D ``t`` is the recorded ``m.T`` of it (else None): multiplying by m with a
    transpose flag records one node where ``h @ W.T`` would record two, and saves the permute's backward.
    The permute's input is m itself when m is the view's base and still has the edge it had then."""
    node = t.grad_fn
    if type(node) is not Permute or node.dims != (1, 0):
        return None
    m = t._base
    if m is None or m._data.shape != t._data.shape[::-1] or node.next_edges[0] != m._edge():
        return None
    return m


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got {input.ndim}D and {mat2.ndim}D")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"bmm: expected 3-D tensors, got {input.ndim}D and {mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"bmm: batch sizes differ: {input.shape[0]} and {mat2.shape[0]}")
    return matmul(input, mat2)


def mv(input, vec):
    if input.ndim != 2 or vec.ndim != 1:
        raise RuntimeError(f"mv: expected a 2-D matrix and a 1-D vector, got {input.ndim}D and {vec.ndim}D")
    return matmul(input, vec)


def dot(input, other):
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def outer(input, vec2):
    if input.ndim != 1 or vec2.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got {input.ndim}D and {vec2.ndim}D")
    return input.unsqueeze(1) * vec2.unsqueeze(0)


ger = outer


class Einsum(Op):
    save_inputs = True

    def forward(self, *xs):
        return self.xp.einsum(self.equation, *xs, optimize=len(xs) > 2)

    def backward(self, g):
        xs = self.inputs
        ins, out = self.subscripts
        grads = []
        for i, sub in enumerate(ins):
            if not self.needs_grad(i):
                grads.append(None)
                continue
            others = [x for j, x in enumerate(xs) if j != i]
            other_subs = [s for j, s in enumerate(ins) if j != i]
            available = set(out).union(*other_subs)
            if len(set(sub)) != len(sub):
                raise RuntimeError(f"einsum: the gradient of operand {i} ('{sub}') with a repeated index is "
                                   "not supported")
            kept = "".join(c for c in sub if c in available)
            gi = einsum(",".join([out] + other_subs) + "->" + kept, g, *others)
            # letters summed only within this operand: broadcast the gradient back over them
            for k, c in enumerate(sub):
                if c not in available:
                    gi = gi.unsqueeze(k)
            # this operand's size-1 dims that broadcast against the others: sum the gradient back;
            # dims where the gradient has size 1 (summed letters, or broadcast by the others): expand
            shape = tuple(xs[i].shape)
            gi = sum_to(gi, tuple(1 if n == 1 else m for n, m in zip(shape, gi.shape)))
            grads.append(gi.expand(shape) if tuple(gi.shape) != shape else gi)
        return tuple(grads)


def _parse_einsum(equation: str, xs) -> tuple:
    """Explicit subscripts (``...`` spelled out with fresh letters) and the output's."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    ins = lhs.split(",")
    if len(ins) != len(xs):
        raise RuntimeError(f"einsum(): {len(ins)} operand subscripts given for {len(xs)} operands in "
                           f"'{equation}'")
    used = set(eq)
    free = iter(c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    ell_dims = max((x.ndim - (len(s) - 3) for s, x in zip(ins, xs) if "..." in s), default=0)
    ell = "".join(next(free) for _ in range(ell_dims))
    expanded = []
    for s, x in zip(ins, xs):
        if "..." in s:
            n = x.ndim - (len(s) - 3)
            s = s.replace("...", ell[ell_dims - n:])
        if len(s) != x.ndim:
            raise RuntimeError(f"einsum(): the subscript '{s}' has {len(s)} letters but operand has "
                               f"{x.ndim} dims (shape {tuple(x.shape)})")
        expanded.append(s)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {}
        for s in expanded:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return expanded, out


def einsum(equation: str, *operands_):
    if len(operands_) == 1 and isinstance(operands_[0], (list, tuple)):
        operands_ = tuple(operands_[0])
    xs = operands(*operands_)
    ins, out = _parse_einsum(equation, xs)
    full = ",".join(ins) + "->" + out
    try:
        return Einsum.apply(*xs, equation=full, subscripts=(ins, out))
    except ValueError as e:
        raise RuntimeError(f"einsum('{equation}'): {e} (operand shapes "
                           f"{[tuple(x.shape) for x in xs]})") from None


bind(matmul=matmul, mm=mm, bmm=bmm, mv=mv, dot=dot, outer=outer, ger=outer,
     __matmul__=matmul, __rmatmul__=lambda self, other: matmul(other, self))
