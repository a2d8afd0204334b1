"""engine.save / engine.load: safetensors files, exact round trips, nested structures, PyTorch interop,
clear errors for what cannot be saved and for broken files."""
import io
import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import safetensors
import safetensors.numpy

import engine
from engine import nn


def roundtrip(obj, tmp_path=None, **load_kwargs):
    """Save and load through a path when tmp_path is given, else through an in-memory binary file."""
    if tmp_path is not None:
        path = tmp_path / "obj.safetensors"
        engine.save(obj, path)
        return engine.load(path, **load_kwargs)
    buf = io.BytesIO()
    engine.save(obj, buf)
    buf.seek(0)
    return engine.load(buf, **load_kwargs)


def metadata_of(path) -> dict:
    with safetensors.safe_open(path, framework="np") as f:
        return f.metadata()


@pytest.mark.parametrize("via_path", [True, False])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                                   "bool"])
def test_dtypes_round_trip_exactly(dtype, via_path, tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((3, 4)) * 100
    arr = (raw > 0) if dtype == "bool" else raw.astype(dtype)
    if dtype.startswith("float"):
        arr[0, :3] = [np.inf, -np.inf, np.nan]
    sd = {"w": engine.from_numpy(arr), "scalar": engine.from_numpy(np.array(arr[1, 1])), "empty":
          engine.from_numpy(arr[:0])}
    out = roundtrip(sd, tmp_path if via_path else None)
    assert list(out) == ["w", "scalar", "empty"]
    for k, t in sd.items():
        assert out[k].dtype == t.dtype and tuple(out[k].shape) == tuple(t.shape)
        assert out[k].numpy().tobytes() == t.numpy().tobytes()  # bit for bit, nan included


def test_non_contiguous_tensors_are_saved_as_their_values(tmp_path):
    base = engine.arange(24.0).reshape(2, 3, 4)
    views = {"t": base[0].t(), "strided": base[:, ::2, 1::2], "permuted": base.permute(2, 0, 1),
             "expanded": engine.arange(3.0).reshape(3, 1).expand(3, 5)}
    assert not any(v.is_contiguous() for v in views.values())
    engine.save(views, tmp_path / "v.safetensors")
    plain = safetensors.numpy.load_file(tmp_path / "v.safetensors")  # what any reader sees
    for k, v in views.items():
        np.testing.assert_array_equal(plain[k], v.numpy())
        np.testing.assert_array_equal(engine.load(tmp_path / "v.safetensors")[k].numpy(), v.numpy())


def test_optimizer_like_state_round_trips_with_its_structure():
    state = {
        "state": {0: {"step": engine.tensor(3.0), "exp_avg": engine.ones(2, 3)},
                  1: {"step": engine.tensor(3.0), "exp_avg": engine.zeros(3)}},
        "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                          "amsgrad": False, "foreach": None, "name": "body", "params": [0, 1]}],
        "plateau": {"best": math.inf, "worse": -math.inf, "nothing": math.nan, "ints": (1, (2, [3]))},
        "odd keys": {"$tensor": 1, "a.b": engine.tensor([1]), "a": {"b": engine.tensor([2])},
                     None: "none", True: "true", 2.5: "float"},
    }
    out = roundtrip(state)
    assert out["state"][0]["exp_avg"].shape == (2, 3) and out["state"][0]["step"].item() == 3.0
    assert out["state"][1]["exp_avg"].shape == (3,)
    assert out["param_groups"] == state["param_groups"]
    assert isinstance(out["param_groups"][0]["betas"], tuple)  # tuples stay tuples
    plateau = out["plateau"]
    assert plateau["best"] == math.inf and plateau["worse"] == -math.inf and math.isnan(plateau["nothing"])
    assert plateau["ints"] == (1, (2, [3]))
    odd = out["odd keys"]
    assert list(odd) == ["$tensor", "a.b", "a", None, True, 2.5]
    assert odd["$tensor"] == 1 and odd["a.b"].tolist() == [1] and odd["a"]["b"].tolist() == [2]
    assert (odd[None], odd[True], odd[2.5]) == ("none", "true", "float")


def test_other_roots_and_the_documented_layout(tmp_path):
    path = tmp_path / "o.safetensors"
    engine.save([engine.tensor([1, 2]), ("x", 3)], path)
    assert safetensors.numpy.load_file(path)["0"].tolist() == [1, 2]  # tensors under dotted paths
    meta = metadata_of(path)
    assert meta["format"] == "pt"
    assert json.loads(meta["fita"]) == {"version": 1, "object": [{"$tensor": "0"}, {"$tuple": ["x", 3]}]}
    out = engine.load(path)
    assert out[0].tolist() == [1, 2] and out[1] == ("x", 3)
    assert roundtrip(engine.tensor([[1.5]])).tolist() == [[1.5]]


def test_state_dict_keeps_its_order_and_loads_into_a_model():
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    sd = roundtrip(model.state_dict())
    assert isinstance(sd, dict) and list(sd) == list(model.state_dict())
    other = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    other.load_state_dict(sd)
    x = engine.randn(5, 4)
    np.testing.assert_array_equal(other(x).detach().numpy(), model(x).detach().numpy())


def test_loaded_tensors_are_plain_writable_tensors():
    p = nn.Parameter(engine.ones(2))
    out = roundtrip({"p": p})["p"]
    assert type(out) is engine.Tensor and not out.requires_grad
    out.add_(1)  # optimizer state is updated in place after loading
    assert out.tolist() == [2.0, 2.0] and p.tolist() == [1.0, 1.0]


def test_unsavable_objects_raise_type_errors_that_say_what_to_do():
    with pytest.raises(TypeError, match=r"cannot save a Linear at the top level.*state_dict\(\)"):
        engine.save(nn.Linear(2, 2), io.BytesIO())
    with pytest.raises(TypeError, match=r"cannot save a set at key model\.layers\.1"):
        engine.save({"model": {"layers": [1, {2}]}}, io.BytesIO())
    with pytest.raises(TypeError, match=r"dict key \(1, 2\) at key groups is a tuple"):
        engine.save({"groups": {(1, 2): 0}}, io.BytesIO())
    with pytest.raises(TypeError, match="binary mode"):
        engine.save({}, io.StringIO())


def test_map_location(tmp_path):
    engine.save({"w": engine.ones(2)}, tmp_path / "w.safetensors")
    assert engine.load(tmp_path / "w.safetensors", map_location="cpu")["w"].device == engine.device("cpu")
    with pytest.raises(TypeError, match="map_location must be None, a device"):
        engine.load(tmp_path / "w.safetensors", map_location={"cuda:0": "cpu"})


@pytest.mark.cuda
def test_cuda_tensors_save_and_load_onto_a_device(tmp_path):
    t = engine.arange(6.0, device="cuda").reshape(2, 3).t()
    engine.save({"t": t}, tmp_path / "c.safetensors")
    out = engine.load(tmp_path / "c.safetensors", map_location="cuda:0")["t"]
    assert out.device == engine.device("cuda:0")
    np.testing.assert_array_equal(out.cpu().numpy(), t.cpu().numpy())
    assert engine.load(tmp_path / "c.safetensors")["t"].device == engine.device("cpu")


def test_broken_files_raise_errors_naming_the_file(tmp_path):
    good = tmp_path / "good.safetensors"
    engine.save({"w": engine.ones(100), "nested": {"x": 1}}, good)
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len])
    header["__metadata__"]["fita"] = "{not json"
    bad_meta = json.dumps(header).encode()
    cases = {
        "truncated.safetensors": data[:-10],
        "cut_in_header.safetensors": data[:20],
        "tiny.safetensors": b"abc",
        "empty.safetensors": b"",
        "garbage.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\x00" * 40,
        "bad_meta.safetensors": len(bad_meta).to_bytes(8, "little") + bad_meta + data[8 + header_len:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(RuntimeError, match=f"{name} is not a valid safetensors file"):
            engine.load(path)
    with pytest.raises(TypeError, match="binary mode"):
        engine.load(io.StringIO("text"))


def test_plain_safetensors_files_load_as_flat_dicts(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file({"b": np.arange(3, dtype=np.int32), "a": np.ones((2, 2), np.float16)}, path)
    out = engine.load(path)
    assert list(out) == ["a", "b"]
    assert out["a"].dtype == engine.float16 and out["b"].tolist() == [0, 1, 2]


# ---- PyTorch interop -------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
import safetensors.torch  # noqa: E402


def _mlp(lib):
    return lib.nn.Sequential(lib.nn.Linear(5, 8), lib.nn.ReLU(), lib.nn.Linear(8, 3))


def assert_same_model(model, tmodel, x):
    """Bit-identical weights under the same names, hence the same outputs (up to the last bit, where
    numpy's and PyTorch's matrix products may round differently)."""
    tsd = tmodel.state_dict()
    assert list(model.state_dict()) == list(tsd)
    for k, v in model.state_dict().items():
        assert v.numpy().tobytes() == tsd[k].numpy().tobytes(), k
    with torch.no_grad():
        expected = tmodel(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(engine.from_numpy(x)).detach().numpy(), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.torch
def test_engine_file_loads_into_torch_with_the_same_outputs(tmp_path):
    engine.manual_seed(1)
    model = _mlp(engine)
    path = tmp_path / "engine.safetensors"
    engine.save(model.state_dict(), path)
    tmodel = _mlp(torch)
    tmodel.load_state_dict(safetensors.torch.load_file(path))  # strict: the keys are PyTorch's
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    assert_same_model(model, tmodel, x)


@pytest.mark.torch
def test_torch_file_loads_into_engine_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    tmodel = _mlp(torch)
    path = tmp_path / "torch.safetensors"
    safetensors.torch.save_file(tmodel.state_dict(), path)
    model = _mlp(engine)
    model.load_state_dict(engine.load(path))
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32)
    assert_same_model(model, tmodel, x)


@pytest.mark.torch
def test_unsupported_dtypes_from_torch_are_named(tmp_path):
    path = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, path)
    with pytest.raises(TypeError, match=r"tensor 'w' in .*bf16.safetensors has dtype BF16"):
        engine.load(path)
