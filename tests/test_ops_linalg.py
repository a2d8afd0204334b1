"""Matrix products against PyTorch: matmul in every rank combination, mm, bmm, mv, dot, outer, einsum;
values, gradients (batch dims unbroadcast), gradcheck, and error messages."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import engine  # noqa: E402
from helpers import check, gradcheck, randn  # noqa: E402

pytestmark = pytest.mark.torch

LOOSE = dict(rtol=1e-5, atol=1e-5)

MATMUL_SHAPES = [
    ((4,), (4,)),  # 1-D @ 1-D: a scalar
    ((4,), (4, 3)),  # 1-D @ 2-D
    ((3, 4), (4,)),  # 2-D @ 1-D
    ((3, 4), (4, 2)),  # 2-D @ 2-D
    ((2, 3, 4), (2, 4, 5)),  # batched
    ((2, 1, 3, 4), (5, 4, 2)),  # broadcast batch dims
    ((2, 3, 4), (4, 5)),  # batched @ matrix: the matrix's gradient sums over the batch
    ((3, 4), (2, 4, 5)),  # matrix @ batched
    ((2, 3, 4), (4,)),  # batched @ vector
    ((4,), (2, 4, 3)),  # vector @ batched
    ((1, 3, 4), (2, 1, 4, 2)),
    ((3, 1), (1, 2)),  # outer product by matmul
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul(sa, sb):
    a, b = randn(*sa, seed=1), randn(*sb, seed=2)
    check(lambda m, x, y: x @ y, a, b, **LOOSE)
    check(lambda m, x, y: m.matmul(x, y), a, b, **LOOSE)
    gradcheck(lambda m, x, y: x @ y, a, b)


@pytest.mark.parametrize("which", [0, 1])
def test_matmul_one_side_requires_grad(which):
    a, b = randn(2, 3, 4, seed=3), randn(4, 5, seed=4)
    check(lambda m, x, y: x @ y, a, b, requires_grad=[which == 0, which == 1], **LOOSE)


def test_matmul_method_forms():
    a, b = randn(3, 4, seed=5), randn(4, 2, seed=6)
    check(lambda m, x, y: x.matmul(y), a, b, **LOOSE)
    check(lambda m, x, y: y.__rmatmul__(x), a, b, **LOOSE)


def test_matmul_rejects_mixed_dtypes_and_0d():
    for lib in (engine, torch):  # both refuse mixed dtypes in a matrix product
        with pytest.raises(RuntimeError, match="same dtype"):
            lib.ones(3, 4) @ lib.ones(4, 2, dtype=lib.float64)
    check(lambda m, x, y: x @ y, np.arange(6).reshape(2, 3), np.arange(3), grad=False)
    with pytest.raises(RuntimeError, match="matmul"):
        engine.tensor(2.0) @ engine.ones(3)


def test_mm_bmm_mv_dot_outer():
    a, b = randn(3, 4, seed=9), randn(4, 2, seed=10)
    check(lambda m, x, y: m.mm(x, y), a, b, **LOOSE)
    check(lambda m, x, y: x.mm(y), a, b, **LOOSE)
    p, q = randn(2, 3, 4, seed=11), randn(2, 4, 5, seed=12)
    check(lambda m, x, y: m.bmm(x, y), p, q, **LOOSE)
    check(lambda m, x, y: x.bmm(y), p, q, **LOOSE)
    v = randn(4, seed=13)
    check(lambda m, x, y: m.mv(x, y), a, v, **LOOSE)
    w = randn(4, seed=14)
    check(lambda m, x, y: m.dot(x, y), v, w, **LOOSE)
    u = randn(3, seed=15)
    check(lambda m, x, y: m.outer(x, y), u, v, **LOOSE)
    check(lambda m, x, y: x.outer(y), u, v, **LOOSE)
    check(lambda m, x, y: m.ger(x, y), u, v, **LOOSE, torch_fn=lambda m, x, y: m.outer(x, y))
    gradcheck(lambda m, x, y: m.bmm(x, y), p, q)
    gradcheck(lambda m, x, y: m.outer(x, y), u, v)
    gradcheck(lambda m, x, y: m.mv(x, y), a, v)


def test_mm_bmm_argument_errors():
    with pytest.raises(RuntimeError, match="mm"):
        engine.mm(engine.ones(2, 3, 4), engine.ones(4, 2))
    with pytest.raises(RuntimeError, match="bmm"):
        engine.bmm(engine.ones(2, 3, 4), engine.ones(3, 4, 2))
    with pytest.raises(RuntimeError, match="outer"):
        engine.outer(engine.ones(2, 3), engine.ones(3))


@pytest.mark.parametrize("sa,sb", [((3, 4), (5, 2)), ((4,), (3,)), ((2, 3, 4), (3, 2)), ((2, 3, 4), (3, 4, 5))])
def test_matmul_shape_error_names_op_and_both_shapes(sa, sb):
    with pytest.raises(RuntimeError) as info:
        engine.ones(*sa) @ engine.ones(*sb)
    msg = str(info.value)
    assert "matmul" in msg and str(tuple(sa)) in msg and str(tuple(sb)) in msg


def test_matmul_batch_shape_error():
    with pytest.raises(RuntimeError) as info:
        engine.ones(2, 3, 4) @ engine.ones(3, 4, 5)
    assert "(2, 3, 4)" in str(info.value) and "(3, 4, 5)" in str(info.value)


# ---- einsum -----------------------------------------------------------------------------------------

EINSUM = [
    ("ij,jk->ik", [(3, 4), (4, 2)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("i,i->", [(4,), (4,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("...ij,...jk", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),  # batch dims broadcast: gradients sum back
    ("...ij,...jk", [(3, 4), (2, 4, 5)]),
    ("b...,b...->b", [(2, 3, 1), (2, 1, 4)]),
    ("ij,jk", [(3, 4), (4, 2)]),  # implicit output: alphabetical free letters
    ("ba,ac", [(3, 4), (4, 2)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("ijk->kij", [(2, 3, 4)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ij,kl->ijkl", [(2, 3), (2, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("i j , j k -> i k", [(3, 4), (4, 2)]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM, ids=[e for e, _ in EINSUM])
def test_einsum(eq, shapes):
    arrays = [randn(*s, seed=20 + i) for i, s in enumerate(shapes)]
    check(lambda m, *xs: m.einsum(eq, *xs), *arrays, **LOOSE)
    check(lambda m, *xs: m.einsum(eq, list(xs)), *arrays, **LOOSE)
    gradcheck(lambda m, *xs: m.einsum(eq, *xs), *arrays)


@pytest.mark.parametrize("eq,shape", [("ii->i", (3, 3)), ("ii", (3, 3)), ("ii->", (4, 4)), ("bii->bi", (2, 3, 3))])
def test_einsum_repeated_index_forward(eq, shape):
    x = randn(*shape, seed=30)
    check(lambda m, t: m.einsum(eq, t), x, grad=False)


def test_einsum_errors():
    with pytest.raises(RuntimeError, match="einsum"):
        engine.einsum("ij,jk->ik", engine.ones(3, 4), engine.ones(5, 2))
    with pytest.raises(RuntimeError, match="einsum"):
        engine.einsum("ij,jk->ik", engine.ones(3, 4))
    with pytest.raises(RuntimeError, match="einsum"):
        engine.einsum("ijk,jk->ik", engine.ones(3, 4), engine.ones(4, 2))
