"""dtypes, their aliases, PyTorch's type promotion (promote_types, result dtypes of binary ops with
tensors, 0-d tensors and Python scalars), the default dtype, and devices."""
import copy
import itertools
import pickle

import numpy as np
import pytest

import engine

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64"]
PAIRS = list(itertools.product(NAMES, NAMES))


def tname(dt) -> str:
    """'float32' for both torch.float32 and engine.float32."""
    return str(dt).split(".")[-1]


# ---- the dtype objects ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_dtype_objects_match_torch(name):
    e, t = getattr(engine, name), getattr(torch, name)
    assert isinstance(e, engine.dtype)
    assert e.is_floating_point == t.is_floating_point
    assert e.is_signed == t.is_signed
    assert e.itemsize == t.itemsize
    assert repr(e) == repr(t).replace("torch.", "engine.")
    assert str(e) == str(t).replace("torch.", "engine.")


@pytest.mark.parametrize("alias, target", [("float", "float32"), ("double", "float64"), ("half", "float16"),
                                           ("long", "int64"), ("int", "int32"), ("short", "int16")])
def test_aliases_are_the_same_objects(alias, target):
    assert getattr(engine, alias) is getattr(engine, target)
    assert tname(getattr(torch, alias)) == target


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_survive_copy_deepcopy_and_pickle(name):
    d = getattr(engine, name)
    assert copy.copy(d) is d
    assert copy.deepcopy(d) is d
    assert pickle.loads(pickle.dumps(d)) is d


@pytest.mark.parametrize("pytype, expected", [(float, "float64"), (int, "int64"), (bool, "bool")])
def test_python_types_as_dtype_mean_what_torch_means(pytype, expected):
    # torch.zeros(2, dtype=float) is float64 (not the default dtype)
    assert tname(torch.zeros(2, dtype=pytype).dtype) == expected
    assert engine.zeros(2, dtype=pytype).dtype is getattr(engine, expected)
    assert engine.tensor([1, 2], dtype=pytype).dtype is getattr(engine, expected)
    assert engine.tensor([1, 2]).to(pytype).dtype is getattr(engine, expected)


def test_numpy_dtypes_and_names_are_accepted():
    assert engine.zeros(2, dtype=np.float64).dtype is engine.float64
    assert engine.zeros(2, dtype="int32").dtype is engine.int32
    with pytest.raises(TypeError, match="unsupported dtype"):
        engine.zeros(2, dtype="complex64")


# ---- promotion --------------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b", PAIRS)
def test_promote_types_matches_torch(a, b):
    expected = tname(torch.promote_types(getattr(torch, a), getattr(torch, b)))
    assert engine.promote_types(getattr(engine, a), getattr(engine, b)).name == expected


def _operand(m, name, kind):
    dt = getattr(m, name)
    return m.ones(3, dtype=dt) if kind == "dim" else m.ones((), dtype=dt)


def _result_dtype(m, op, x, y):
    try:
        return tname(op(x, y).dtype)
    except RuntimeError as e:  # e.g. torch refuses `-` on bools
        return f"error: {type(e).__name__}"


BINARY_OPS = {
    "add": lambda x, y: x + y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
    "floordiv": lambda x, y: x // y,
    "pow": lambda x, y: x ** y,
    "eq": lambda x, y: x == y,
    "lt": lambda x, y: x < y,
    "maximum": lambda x, y: (torch if isinstance(x, torch.Tensor) else engine).maximum(x, y),
}
KINDS = [("dim", "dim"), ("dim", "zero"), ("zero", "dim"), ("zero", "zero")]


def _bool_arithmetic(op, a, b) -> bool:
    """Bool arithmetic that torch refuses: covered by test_arithmetic_on_bools_is_refused_as_in_torch."""
    return op in ("floordiv", "pow") and a == "bool" and b in ("bool", True)


@pytest.mark.parametrize("op", list(BINARY_OPS))
@pytest.mark.parametrize("ka, kb", KINDS)
def test_binary_op_result_dtype_for_every_pair_of_tensor_dtypes(op, ka, kb):
    fn = BINARY_OPS[op]
    wrong = []
    for a, b in PAIRS:
        if _bool_arithmetic(op, a, b):
            continue
        want = _result_dtype(torch, fn, _operand(torch, a, ka), _operand(torch, b, kb))
        got = _result_dtype(engine, fn, _operand(engine, a, ka), _operand(engine, b, kb))
        if want != got:
            wrong.append(f"{a}({ka}) {op} {b}({kb}): torch {want}, engine {got}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("ka, kb", KINDS)
def test_subtraction_result_dtype_without_bools(ka, kb):
    fn = lambda x, y: x - y  # noqa: E731
    for a, b in PAIRS:
        if "bool" in (a, b):
            continue
        assert _result_dtype(engine, fn, _operand(engine, a, ka), _operand(engine, b, kb)) == \
            _result_dtype(torch, fn, _operand(torch, a, ka), _operand(torch, b, kb)), (a, b)


@pytest.mark.parametrize("ka, kb", KINDS)
def test_arithmetic_on_bools_is_refused_as_in_torch(ka, kb):
    wrong = []
    cases = [("sub", lambda x, y: x - y, a, b) for a, b in PAIRS if "bool" in (a, b)]
    cases += [(op, BINARY_OPS[op], "bool", "bool") for op in ("floordiv", "pow")]
    for op, fn, a, b in cases:
        want = _result_dtype(torch, fn, _operand(torch, a, ka), _operand(torch, b, kb))
        got = _result_dtype(engine, fn, _operand(engine, a, ka), _operand(engine, b, kb))
        if want != got:
            wrong.append(f"{a}({ka}) {op} {b}({kb}): torch {want}, engine {got}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("op", ["add", "mul", "div", "eq", "pow"])
@pytest.mark.parametrize("kind", ["dim", "zero"])
def test_binary_op_result_dtype_with_python_scalars(op, kind):
    fn = BINARY_OPS[op]
    wrong = []
    for name in NAMES:
        for scalar in (True, 3, 2.5):
            if _bool_arithmetic(op, name, scalar):
                continue
            for reflected in (False, True):
                f = (lambda x, s: fn(s, x)) if reflected else fn
                want = _result_dtype(torch, f, _operand(torch, name, kind), scalar)
                got = _result_dtype(engine, f, _operand(engine, name, kind), scalar)
                if want != got:
                    wrong.append(f"{name}({kind}) {op} {scalar!r} reflected={reflected}: torch {want}, engine {got}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("a, b", [("uint8", "int64"), ("int32", "float16"), ("bool", "uint8"),
                                  ("float16", "float64"), ("int8", "uint8")])
def test_result_type_matches_torch(a, b):
    for ka, kb in KINDS:
        x, y = _operand(torch, a, ka), _operand(torch, b, kb)
        ex, ey = _operand(engine, a, ka), _operand(engine, b, kb)
        assert engine.result_type(ex, ey).name == tname(torch.result_type(x, y))
    for s in (True, 7, 1.5):
        assert engine.result_type(_operand(engine, a, "dim"), s).name == \
            tname(torch.result_type(_operand(torch, a, "dim"), s))


def test_zero_dim_tensor_of_higher_category_promotes_but_same_category_does_not():
    # a 0-d tensor keeps its own dtype when its category wins (unlike a Python float)
    assert (engine.ones(3, dtype=engine.int32) + engine.tensor(1.5, dtype=engine.float64)).dtype is engine.float64
    assert (engine.ones(3, dtype=engine.int32) + 1.5).dtype is engine.float32
    assert (engine.ones(3, dtype=engine.uint8) + engine.tensor(1000)).dtype is engine.uint8
    assert (engine.ones(3, dtype=engine.float16) + engine.tensor(1.0, dtype=engine.float64)).dtype is engine.float16


# ---- the default dtype ------------------------------------------------------------------------------

@pytest.fixture
def default_float64():
    engine.set_default_dtype(engine.float64)
    try:
        yield
    finally:
        engine.set_default_dtype(engine.float32)


def test_default_dtype_is_float32():
    assert engine.get_default_dtype() is engine.float32


def test_set_default_dtype_changes_float_creation_and_scalar_promotion(default_float64):
    assert engine.get_default_dtype() is engine.float64
    assert engine.tensor([1.5]).dtype is engine.float64
    assert engine.zeros(2).dtype is engine.float64
    assert engine.rand(2).dtype is engine.float64
    assert engine.arange(0.0, 1.0, 0.5).dtype is engine.float64
    assert engine.tensor([1]).dtype is engine.int64
    assert (engine.tensor([1, 2]) * 0.5).dtype is engine.float64
    assert (engine.ones(2, dtype=engine.float32) * 0.5).dtype is engine.float32


def test_set_default_dtype_refuses_non_float():
    with pytest.raises(TypeError):
        torch.set_default_dtype(torch.int64)
    with pytest.raises(TypeError, match="floating"):
        engine.set_default_dtype(engine.int64)
    assert engine.get_default_dtype() is engine.float32


# ---- devices ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["cpu", "cuda:1", "cuda:0"])
def test_device_objects_match_torch(spec):
    e, t = engine.device(spec), torch.device(spec)
    assert e.type == t.type and e.index == t.index
    assert str(e) == str(t)
    assert repr(e) == repr(t)


def test_device_construction_forms():
    cpu = engine.device("cpu")
    assert engine.device(cpu) is cpu
    assert engine.device("cuda", 1) == engine.device("cuda:1")
    assert engine.device("cuda:1") != engine.device("cuda:0")
    assert engine.device(1) == engine.device("cuda:1")  # an int means a CUDA ordinal, as in torch
    assert hash(engine.device("cpu")) == hash(cpu)
    assert pickle.loads(pickle.dumps(cpu)) is cpu


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "cpu:0:1", "gpu"])
def test_invalid_device_strings_raise(spec):
    with pytest.raises(RuntimeError):
        torch.device(spec)
    with pytest.raises(RuntimeError, match="invalid device"):
        engine.device(spec)


def test_device_of_new_tensors_is_cpu():
    for t in (engine.zeros(2), engine.tensor([1]), engine.tensor([1.0], device="cpu"),
              engine.ones(1, device=engine.device("cpu"))):
        assert t.device == engine.device("cpu")
        assert t.device.type == "cpu" and t.device.index is None
        assert not t.is_cuda


def _cuda_usable() -> bool:
    return engine.cuda.is_available()


@pytest.mark.skipif(_cuda_usable(), reason="this machine has a usable GPU")
def test_cuda_is_not_available_here():
    assert engine.cuda.is_available() is False
    assert engine.cuda.device_count() == 0


@pytest.mark.skipif(_cuda_usable(), reason="this machine has a usable GPU")
@pytest.mark.parametrize("make", [
    lambda: engine.zeros(2, device="cuda"),
    lambda: engine.tensor([1.0], device="cuda:0"),
    lambda: engine.randn(2, device="cuda"),
    lambda: engine.arange(3, device=engine.device("cuda")),
    lambda: engine.tensor([1.0]).cuda(),
    lambda: engine.tensor([1.0]).to("cuda"),
    lambda: engine.Generator("cuda"),
], ids=["zeros", "tensor", "randn", "arange", ".cuda()", ".to('cuda')", "Generator"])
def test_cuda_without_a_gpu_raises_a_clear_runtime_error(make):
    with pytest.raises(RuntimeError, match=r"(?s)CuPy.*device='cpu'"):
        make()
