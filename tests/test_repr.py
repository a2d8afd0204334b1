"""repr of tensors compared with PyTorch's, character for character (with 'torch.' read as 'engine.'):
fixed, integer and scientific notation, widths, dtype/size/requires_grad/grad_fn suffixes, line
wrapping and summarization of large tensors, and set_printoptions."""
import math
import re

import numpy as np
import pytest

import engine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def both(expr: str):
    return eval(expr, {"m": engine, "math": math}), eval(expr, {"m": torch, "math": math})


def assert_repr_like_torch(expr: str):
    e, t = both(expr)
    want = repr(t).replace("torch.", "engine.")
    assert repr(e) == want, f"\n{expr}\nengine:\n{e!r}\ntorch:\n{want}"
    assert str(e) == repr(e)


CASES = {
    # floats
    "decimals": "m.tensor([[1.5, 2.25], [3.0, 4.0]])",
    "negative decimals": "m.tensor([-1.5, 2.0, 0.125])",
    "integral floats": "m.tensor([1.0, 2.0, -3.0])",
    "integral floats of mixed width": "m.arange(6.0).reshape(2, 3) * 20",
    "float scalar": "m.tensor(3.5)",
    "integral float scalar": "m.tensor(2.0)",
    "zero scalar": "m.tensor(0.0)",
    "zeros": "m.zeros(2, 3)",
    "negative zero": "m.tensor([-0.0])",
    "one decimal value": "m.tensor([0.1, -0.25, 12.5])",
    "rounding to 4 places": "m.tensor([1.23456789, 0.00015])",
    "ratio just at 1000": "m.tensor([1.0, 1000.0])",
    "ratio over 1000 (integral)": "m.tensor([1.0, 1001.0])",
    "ratio over 1000": "m.tensor([0.5, 1000.0])",
    "large": "m.tensor([1e10, 1.0])",
    "1e8 exactly": "m.tensor([1e8])",
    "just over 1e8": "m.tensor([1.5e8])",
    "small": "m.tensor([1e-5, 1.0])",
    "tiny only": "m.tensor([1e-10])",
    "at 1e-4": "m.tensor([0.0001, 1.0])",
    "huge and tiny": "m.tensor([1e-20, 1e20])",
    "scientific matrix": "m.tensor([[1e10, 1.0], [2.0, 3.0]])",
    "mid-size decimals": "m.tensor([123456.789, 1.0])",
    "nan scalar": "m.tensor(float('nan'))",
    "non-finite": "m.tensor([float('nan'), float('inf'), -float('inf'), 0.0])",
    "inf with decimals": "m.tensor([float('inf'), 1.5])",
    "nan with integral": "m.tensor([1.0, float('nan')])",
    # other dtypes
    "int64": "m.tensor([1, 2, -300])",
    "int64 matrix": "m.tensor([[1, 20], [300, -4]])",
    "int64 scalar": "m.tensor(3)",
    "big int64": "m.tensor([-5, 100000000000])",
    "int32": "m.tensor([1, 2], dtype=m.int32)",
    "uint8": "m.ones(3, 4, dtype=m.uint8)",
    "int8": "m.tensor([-128, 127], dtype=m.int8)",
    "int16": "m.tensor([[7]], dtype=m.int16)",
    "bool": "m.tensor([True, False])",
    "bool all true": "m.tensor([True, True])",
    "bool matrix": "m.eye(2, 3, dtype=m.bool)",
    "bool scalar": "m.tensor(True)",
    "float64": "m.tensor([1.0, 2.0], dtype=m.float64)",
    "float64 decimals": "m.tensor([[1.123456, 2.5]], dtype=m.float64)",
    "float64 scalar": "m.tensor(2.5, dtype=m.float64)",
    "float16": "m.tensor([1.5, 2.5], dtype=m.float16)",
    "float16 large": "m.tensor([65504.0, 1.0], dtype=m.float16)",
    "float16 integral": "m.ones(2, dtype=m.float16)",
    # empty
    "empty": "m.tensor([])",
    "empty 2-d": "m.zeros(0, 3)",
    "empty int64": "m.zeros(2, 0, dtype=m.int64)",
    "empty 1-d int64": "m.zeros(0, dtype=m.int64)",
    "empty bool": "m.zeros(0, dtype=m.bool)",
    "empty float64 3-d": "m.zeros(1, 0, 2, dtype=m.float64)",
    # autograd
    "requires_grad": "m.tensor([1.5, 2.0], requires_grad=True)",
    "requires_grad integral": "m.tensor([1.0, 2.0], requires_grad=True)",
    "requires_grad float64": "m.tensor([1.0, 2.0], dtype=m.float64, requires_grad=True)",
    "requires_grad scalar": "m.tensor(3.25, dtype=m.float64, requires_grad=True)",
    "requires_grad empty": "m.zeros(0, 2, requires_grad=True)",
    "grad_fn mul": "m.tensor([1.5, 2.0], requires_grad=True) * 2",
    "grad_fn add": "m.tensor([1.5, 2.0], requires_grad=True) + 1",
    "grad_fn sum": "m.tensor([[1.0, -2.0], [3.0, 4.0]], requires_grad=True).sum()",
    "grad_fn exp": "m.tensor([0.0, 1.0], requires_grad=True).exp()",
    "grad_fn clone": "m.tensor([1.0], requires_grad=True).clone()",
    "grad_fn float64": "m.tensor([1.5], dtype=m.float64, requires_grad=True) * 3",
    "detached": "(m.tensor([1.5], requires_grad=True) * 2).detach()",
    # layout
    "3-d": "m.arange(24.0).reshape(2, 3, 4)",
    "4-d": "m.arange(16).reshape(2, 2, 2, 2)",
    "column": "m.arange(3.0).reshape(3, 1) / 4",
    "transposed view": "m.arange(6).reshape(2, 3).t()",
    "wrapped vector": "m.arange(40.0) / 3",
    "wrapped int vector": "m.arange(40)",
    "wrapped linspace": "m.linspace(-1, 1, 30)",
    "wide matrix": "m.arange(60.0).reshape(2, 30) * 1.5",
    "suffix wraps to a new line": "m.arange(15.0, dtype=m.float64).reshape(1, 15) * 1.25",
    "requires_grad wraps": "(m.arange(16.0) + 0.5).requires_grad_()",
    # summarization (more than 1000 elements)
    "summarized vector": "m.arange(2000)",
    "summarized float vector": "m.arange(2000.0) / 7",
    "summarized matrix": "m.arange(3000).reshape(30, 100)",
    "summarized 3-d": "m.arange(5000.0).reshape(5, 10, 100)",
    "summarized with decimals": "m.linspace(0, 1, 1001)",
    "summarized scientific": "m.arange(1001.0) * 1e6",
    "summarized requires_grad": "m.ones(40, 30, requires_grad=True)",
}


@pytest.mark.parametrize("key", list(CASES))
def test_repr_matches_torch(key):
    assert_repr_like_torch(CASES[key])


# ops whose backward node engine/ops names differently from torch (e.g. engine's mean is a sum and a
# division, reshape is not a view node): only the name inside grad_fn=<...> may differ
RENAMED_GRAD_FN = ["x.mean()", "x.reshape(-1)", "x.t()", "x[0]", "x.to(m.float64)", "x.unsqueeze(0)", "x.sum(0)",
                   "x.transpose(0, 1)", "x @ x.t()", "x.clamp(0, 1)"]


@pytest.mark.parametrize("expr", RENAMED_GRAD_FN)
def test_repr_with_any_grad_fn_matches_torch_but_for_the_node_name(expr):
    def make(m):
        x = m.tensor([[1.5, 2.0], [3.0, 4.0]], requires_grad=True)
        return eval(expr, {"m": m, "x": x})
    e, t = make(engine), make(torch)
    pattern = re.compile(r"grad_fn=<(\w+)>")
    assert pattern.search(repr(e)) and pattern.search(repr(t))
    assert pattern.search(repr(e)).group(1).endswith(("Backward0", "Backward1"))
    norm = lambda s: pattern.sub("grad_fn=<?>", s.replace("torch.", "engine."))  # noqa: E731
    assert norm(repr(e)) == norm(repr(t))


def test_repr_of_random_data_matches_torch():
    rng = np.random.default_rng(0)
    for shape, scale in [((3, 4), 1.0), ((7,), 100.0), ((2, 2, 3), 1e-3), ((5, 5), 1e5), ((50,), 1.0)]:
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        assert repr(engine.tensor(a)) == repr(torch.tensor(a)).replace("torch.", "engine.")
        a64 = a.astype(np.float64)
        assert repr(engine.tensor(a64)) == repr(torch.tensor(a64)).replace("torch.", "engine.")


def test_repr_follows_the_default_dtype():
    engine.set_default_dtype(engine.float64)
    torch.set_default_dtype(torch.float64)
    try:
        for expr in ("m.tensor([1.5])", "m.tensor([1.5], dtype=m.float32)", "m.zeros(0, dtype=m.float32)",
                     "m.zeros(0)"):
            assert_repr_like_torch(expr)
    finally:
        engine.set_default_dtype(engine.float32)
        torch.set_default_dtype(torch.float32)


@pytest.fixture
def printoptions():
    yield
    engine.set_printoptions(profile="default")
    torch.set_printoptions(profile="default")


@pytest.mark.parametrize("options", [{"precision": 2}, {"precision": 6}, {"sci_mode": True}, {"sci_mode": False},
                                     {"threshold": 5}, {"edgeitems": 1, "threshold": 10}, {"linewidth": 40},
                                     {"profile": "short"}, {"profile": "full"}], ids=str)
def test_set_printoptions_matches_torch(options, printoptions):
    engine.set_printoptions(**options)
    torch.set_printoptions(**options)
    for expr in ("m.tensor([[1.123456789, 22.5], [0.001, 3.0]])", "m.arange(20.0) / 3", "m.arange(30).reshape(5, 6)",
                 "m.tensor([1e-7, 1.0])", "m.tensor(1.0)", "m.arange(2000)"):
        assert_repr_like_torch(expr)


def test_set_printoptions_rejects_unknown_profile(printoptions):
    with pytest.raises(ValueError, match="profile"):
        engine.set_printoptions(profile="nope")


def test_float16_repr_emits_no_overflow_warning(recwarn):
    repr(engine.tensor([60000.0, 1.5], dtype=engine.float16))
    repr(engine.ones(3, dtype=engine.float16) * 1000)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_repr_of_other_objects():
    assert repr(engine.zeros(2, 3).shape) == "engine.Size([2, 3])"
    assert repr(engine.Size([])) == "engine.Size([])"
    assert repr(engine.float32) == "engine.float32"
    assert repr(engine.device("cpu")) == "device(type='cpu')"


def test_repr_on_device_shows_the_device(device):
    t = engine.tensor([1.5, 2.0], device=device)
    cpu_repr = repr(engine.tensor([1.5, 2.0]))
    if device == "cpu":
        assert repr(t) == cpu_repr
    else:
        assert repr(t) == "tensor([1.5000, 2.0000], device='cuda:0')"
        assert repr(engine.tensor([1, 2], dtype=engine.int32, device=device)) == \
            "tensor([1, 2], device='cuda:0', dtype=engine.int32)"
