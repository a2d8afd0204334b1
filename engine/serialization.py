"""``engine.save`` / ``engine.load`` in the safetensors format; never pickle.

``engine.load`` only ever reads safetensors files: whatever a file holds, loading it runs no code. A
state_dict (a flat dict of str -> Tensor) is written as a plain safetensors file that
``safetensors.torch.load_file`` reads into a PyTorch state_dict, and a safetensors file written from
PyTorch loads back as a dict of engine tensors. Nested containers of tensors and plain values (an
optimizer's state_dict, a checkpoint) are written as their tensors plus a JSON description of the
structure in the file's metadata. docs/formats.md describes the layout.

Differences from ``torch.save``/``torch.load``: only tensors, dicts, lists, tuples, str, int, float,
bool and None are saved (save a module's or optimizer's ``state_dict()``, not the object); tensors
load without ``requires_grad`` and without shared storage; dicts come back as plain dicts (an
OrderedDict's order is kept); devices are not recorded: tensors load on the CPU unless
``map_location`` names another device.
"""
from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import safetensors
import safetensors.numpy

from .backend import CPU, device as Device, to_device
from .tensor import Tensor

# the metadata key that holds the structure; the format version inside it
META_KEY = "fita"
FORMAT_VERSION = 1
_TENSOR, _TUPLE, _DICT, _FLOAT = "$tensor", "$tuple", "$dict", "$float"

# the safetensors dtype codes of the engine's dtypes
_DTYPES = ("F16", "F32", "F64", "I8", "I16", "I32", "I64", "U8", "BOOL")


def save(obj, f) -> None:
    """Write ``obj`` (a tensor, or dicts/lists/tuples of tensors and plain values) to ``f``, a path or
    a binary file object, as safetensors."""
    arrays: dict = {}
    structure = _encode(obj, (), arrays)
    metadata = {"format": "pt",  # the tensors are in PyTorch's layout (Hugging Face's loaders check this)
                META_KEY: json.dumps({"version": FORMAT_VERSION, "object": structure}, allow_nan=False)}
    if isinstance(f, (str, os.PathLike)):
        safetensors.numpy.save_file(arrays, f, metadata=metadata)
        return
    if isinstance(f, io.TextIOBase) or not hasattr(f, "write"):
        raise TypeError(f"engine.save: f must be a path or a file opened in binary mode ('wb'), got {f!r}")
    f.write(safetensors.numpy.save(arrays, metadata=metadata))


def load(f, map_location=None):
    """Read what ``save`` wrote (or any safetensors file: a flat dict of tensors, sorted by name) from
    a path or a binary file object. ``map_location`` (None: the CPU, or a device / device string)
    is where the tensors go."""
    dev = _load_device(map_location)
    name = os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", repr(f))
    data = _read(f)
    header = _header(data, name)
    for key, info in header.items():
        if key != "__metadata__" and info.get("dtype") not in _DTYPES:
            raise TypeError(f"engine.load: tensor {key!r} in {name} has dtype {info.get('dtype')}, which the engine "
                            f"does not support (supported: {', '.join(_DTYPES)}); convert it before saving, e.g. "
                            "to float32")
    try:
        arrays = safetensors.numpy.load(data)
    except safetensors.SafetensorError as e:
        raise _corrupt(name, e) from None
    del data  # the arrays own copies; let the file's bytes go
    tensors = {k: Tensor._make(to_device(a, dev), dev) for k, a in arrays.items()}
    meta = header.get("__metadata__") or {}
    if META_KEY not in meta:  # a plain safetensors file (e.g. from PyTorch): a flat state_dict
        return {k: tensors[k] for k in sorted(tensors)}
    try:
        described = json.loads(meta[META_KEY])
        version = described["version"]
        structure = described["object"]
        if not isinstance(version, int):
            raise TypeError(f"version is {version!r}, not an integer")
    except (ValueError, KeyError, TypeError) as e:
        raise _corrupt(name, f"its {META_KEY!r} metadata is not valid ({e})") from None
    if version > FORMAT_VERSION:
        raise RuntimeError(f"engine.load: {name} was written in format version {version}, newer than this "
                           f"engine reads ({FORMAT_VERSION}); upgrade Fita")
    used: set = set()
    obj = _decode(structure, tensors, used, name)
    if used != set(tensors):
        raise _corrupt(name, f"tensors {sorted(set(tensors) - used)} are not part of its structure")
    return obj


# ---- encoding: Python objects <-> (JSON structure, named arrays) ----------------------------------

def _encode(obj, path: tuple, arrays: dict):
    """The JSON form of ``obj``; each tensor goes into ``arrays`` under its dotted path."""
    if isinstance(obj, Tensor):
        key = base = ".".join(map(str, path))
        n = 0
        while key in arrays:  # {"a.b": t, "a": {"b": u}}: both paths read "a.b"
            n += 1
            key = f"{base}#{n}"
        # contiguous copy on the host: safetensors writes raw memory, and views may be strided
        arrays[key] = np.asarray(obj.detach().cpu().numpy(), order="C")
        return {_TENSOR: key}
    scalar = _encode_scalar(obj)
    if scalar is not _NOT_SCALAR:
        return scalar
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, path + (k,), arrays) for k, v in obj.items()}
        pairs = []
        for k, v in obj.items():
            key = _encode_scalar(k)
            if key is _NOT_SCALAR:
                raise TypeError(f"engine.save: dict key {k!r} at {_where(path)} is a {type(k).__name__}; keys must "
                                "be str, int, float, bool or None")
            pairs.append([key, _encode(v, path + (k,), arrays)])
        return {_DICT: pairs}
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, path + (i,), arrays) for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    hint = (" (save its state_dict(): engine.save(obj.state_dict(), f), and restore it with load_state_dict)"
            if hasattr(obj, "state_dict") else "")
    raise TypeError(f"engine.save cannot save a {type(obj).__name__} at {_where(path)}{hint}; it saves tensors, "
                    "and dicts, lists and tuples of tensors, str, int, float, bool and None")


_NOT_SCALAR = object()


def _encode_scalar(x):
    if x is None or isinstance(x, (bool, str, np.bool_)):
        return bool(x) if isinstance(x, np.bool_) else x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else {_FLOAT: repr(x)}  # JSON has no inf/nan
    return _NOT_SCALAR


def _where(path: tuple) -> str:
    return "the top level" if not path else "key " + ".".join(map(str, path))


def _decode(node, tensors: dict, used: set, name: str):
    if isinstance(node, list):
        return [_decode(x, tensors, used, name) for x in node]
    if not isinstance(node, dict):
        return node
    tag = next(iter(node)) if len(node) == 1 else ""
    if not tag.startswith("$"):
        return {k: _decode(v, tensors, used, name) for k, v in node.items()}
    value = node[tag]
    if tag == _TENSOR:
        if value not in tensors:
            raise _corrupt(name, f"its structure refers to a tensor {value!r} that is not in the file")
        used.add(value)
        return tensors[value]
    if tag == _TUPLE:
        return tuple(_decode(x, tensors, used, name) for x in value)
    if tag == _DICT:
        return {_decode(k, tensors, used, name): _decode(v, tensors, used, name) for k, v in value}
    if tag == _FLOAT:
        return float(value)
    raise _corrupt(name, f"its structure has an unknown tag {tag!r}")


# ---- reading ------------------------------------------------------------------------------------

def _read(f) -> bytes:
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return fh.read()
    if isinstance(f, io.TextIOBase) or not hasattr(f, "read"):
        raise TypeError(f"engine.load: f must be a path or a file opened in binary mode ('rb'), got {f!r}")
    return f.read()


def _header(data: bytes, name: str) -> dict:
    """The file's JSON header: an 8-byte little-endian length, then that many bytes of JSON."""
    if len(data) < 8:
        raise _corrupt(name, f"it is {len(data)} bytes long, shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if 8 + n > len(data):
        raise _corrupt(name, f"its header claims {n} bytes but the file has {len(data) - 8} after the length")
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError) as e:
        raise _corrupt(name, f"its header is not JSON ({e})") from None
    if not isinstance(header, dict) or not all(isinstance(v, dict) for v in header.values()):
        raise _corrupt(name, "its header is not a JSON object of tensor entries")
    return header


def _corrupt(name: str, why) -> RuntimeError:
    return RuntimeError(f"engine.load: {name} is not a valid safetensors file (truncated or corrupt?): {why}")


def _load_device(map_location):
    if map_location is None:
        return CPU
    if isinstance(map_location, (str, Device)):
        return Device(map_location)
    raise TypeError(f"engine.load: map_location must be None, a device or a device string like 'cpu' or "
                    f"'cuda:0', got {type(map_location).__name__} (files hold no devices, so there is "
                    "nothing to map from)")
