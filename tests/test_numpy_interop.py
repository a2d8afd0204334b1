"""numpy interop: Tensor.numpy() and np.asarray share memory, np.array copies, dtype requests convert,
from_numpy/as_tensor share, numpy scalars mix with tensors as in PyTorch."""
import numpy as np
import pytest

import engine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_numpy_shares_memory():
    t = engine.tensor([1.0, 2.0, 3.0])
    n = t.numpy()
    assert isinstance(n, np.ndarray) and n.dtype == np.float32
    n[0] = 7.0
    assert t[0].item() == 7.0
    t[1] = -1.0
    assert n[1] == -1.0
    assert np.shares_memory(n, t.numpy())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"])
def test_numpy_dtype_matches_torch(dtype):
    e = engine.ones(2, dtype=getattr(engine, dtype))
    t = torch.ones(2, dtype=getattr(torch, dtype))
    assert e.numpy().dtype == t.numpy().dtype
    assert np.asarray(e).dtype == np.asarray(t).dtype


def test_numpy_of_views_shares_memory_and_keeps_layout():
    x = engine.arange(12.0).reshape(3, 4)
    v = x.t().numpy()
    assert v.shape == (4, 3) and not v.flags.c_contiguous
    v[0, 1] = -5.0
    assert x[1, 0].item() == -5.0


def test_numpy_refuses_tensors_that_require_grad():
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    for conv in (lambda: x.numpy(), lambda: np.asarray(x), lambda: np.array(x), lambda: (x * 2).numpy()):
        with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
            conv()
    n = x.detach().numpy()
    n[0] = 10.0
    assert x[0].item() == 10.0  # detach shares storage
    assert x.numpy(force=True).tolist() == [10.0, 2.0]


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # torch's __array__
def test_np_asarray_shares_and_np_array_copies():
    for m in (engine, torch):
        t = m.tensor([1.0, 2.0])
        a = np.asarray(t)
        a[0] = 5.0
        assert t[0].item() == 5.0, m.__name__
        c = np.array(t)
        c[1] = 9.0
        assert t[1].item() == 2.0, m.__name__


def test_np_asarray_with_dtype_converts():
    t = engine.tensor([1, 2])
    f = np.asarray(t, dtype=np.float32)
    assert f.dtype == np.float32 and f.tolist() == [1.0, 2.0]
    f[0] = 100.0
    assert t[0].item() == 1  # a conversion is a copy
    same = np.asarray(t, dtype=np.int64)
    same[0] = 3
    assert t[0].item() == 3  # no conversion needed: shared


def test_array_protocol_copy_keyword():
    t = engine.tensor([1.0, 2.0])
    shared = np.asarray(t, copy=False)
    shared[0] = 4.0
    assert t[0].item() == 4.0
    copied = np.asarray(t, copy=True)
    copied[0] = 0.0
    assert t[0].item() == 4.0
    with pytest.raises(ValueError, match="copy"):
        np.asarray(t, dtype=np.float64, copy=False)


def test_0d_tensor_to_numpy():
    for m in (engine, torch):
        a = np.asarray(m.tensor(2.5))
        assert a.shape == () and a.dtype == np.float32 and a.item() == 2.5


def test_numpy_functions_accept_tensors():
    t = engine.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert np.sum(np.asarray(t)) == 10.0
    assert np.allclose(np.asarray(t) @ np.asarray(t), (t @ t).numpy())
    assert np.array_equal(np.asarray(t.tolist()), t.numpy())


@pytest.mark.parametrize("npd", [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                 np.uint8, np.bool_])
def test_round_trip_through_numpy_keeps_dtype_and_values(npd):
    a = (np.arange(6) % 3).astype(npd).reshape(2, 3)
    for t in (engine.tensor(a), engine.from_numpy(a), engine.as_tensor(a)):
        back = t.numpy()
        assert back.dtype == a.dtype and np.array_equal(back, a)
    assert engine.tensor(a).dtype.name == str(torch.tensor(a).dtype).split(".")[-1]


def test_numpy_scalars_mix_with_tensors_as_in_torch():
    cases = [
        lambda m: np.float32(2) * m.tensor([1.0, 2.0]),
        lambda m: m.tensor([1.0, 2.0]) * np.float64(2),
        lambda m: np.float64(2) + m.tensor([1.0, 2.0]),
        lambda m: np.int64(3) + m.tensor([1, 2]),
        lambda m: m.tensor([1, 2]) * np.float64(0.5),
        lambda m: m.tensor([1.0, 2.0])[np.int64(1)],
    ]
    for case in cases:
        e, t = case(engine), case(torch)
        assert isinstance(e, engine.Tensor)
        assert str(e.dtype).split(".")[-1] == str(t.dtype).split(".")[-1]
        assert e.tolist() == t.tolist()


def test_numpy_scalars_build_tensors_of_their_dtype():
    for v in (np.float64(1.5), np.float32(1.5), np.int32(3), np.int16(-2), np.uint8(200), np.float16(0.5)):
        e, t = engine.tensor(v), torch.tensor(v)
        assert e.dtype.name == str(t.dtype).split(".")[-1] and e.item() == t.item()


def test_from_numpy_of_readonly_arrays_refuses_in_place_writes():
    a = np.arange(3.0)
    a.setflags(write=False)
    t = engine.from_numpy(a)
    assert t.tolist() == [0.0, 1.0, 2.0]
    assert (t + 1).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(RuntimeError, match="clone"):
        t.add_(1)


def test_from_numpy_of_a_broadcast_view():
    a = np.broadcast_to(np.arange(3.0), (2, 3))
    t = engine.from_numpy(a)
    assert t.shape == (2, 3) and t.stride() == (0, 1)
    assert t.sum().item() == 6.0
