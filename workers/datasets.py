"""Datasets a job can train on, none of which needs a download.

Built in (``data.dataset``):

============== =============== ============================== ==========================================
name           task            input (per sample)             options
============== =============== ============================== ==========================================
digits         classification  (64,) or (1, 8, 8)             ``layout: flat | image``
iris           classification  (4,)
wine           classification  (13,)
breast_cancer  classification  (30,)
diabetes       regression      (10,) -> (1,)
moons          classification  (2,)                           n_samples (1000), noise (0.1)
circles        classification  (2,)                           n_samples (1000), noise (0.05)
spirals        classification  (2,)                           n_samples (1000), noise (0.2), n_classes (2)
regression     regression      (n_features,) -> (1,)          n_samples (1000), noise (5.0), n_features (8)
sine_sequences regression      (seq_len, 1) -> (seq_len, 1)   n_samples (1000), noise (0.05), seq_len (32)
text:<name>    language_model  (seq_len,) int64 -> (seq_len,) seq_len (64)
upload:<id>    either          (features...)                  target (CSV column), task
============== =============== ============================== ==========================================

The first five are scikit-learn's bundled datasets (``diabetes`` with its raw, unscaled features);
the synthetic ones are drawn from ``training.seed``. ``text:<name>`` reads ``<name>.txt`` from the
corpus directory (``DataSettings.corpus_dir``, default the repository's ``data/``) as characters:
the vocabulary is the corpus's sorted distinct characters, inputs are non-overlapping windows of
``seq_len`` character ids and targets the same windows shifted by one (next-character prediction).
``upload:<id>`` is a dataset uploaded to the service (``.npz`` with arrays ``x`` and ``y``, or CSV with
a header and a target column); the API passes ``resolve_upload`` (id -> path, or (path, the ``target`` and
``task`` it was uploaded with): a spec that names no target reads the upload as it was described).

Splits: ``validation_split`` of the samples go to validation, chosen by a permutation drawn from
the seed (reproducible); text is split at the end instead (the last windows), so that validation
text is not interleaved with training text.

Preprocessing is explicit: with ``standardize`` (default true for tabular and image inputs, false
for sequences; refused for text) inputs become (x - input_mean) / input_std with the statistics of
the training split (per feature; for sequences, per channel over all time steps); a feature with
zero spread gets std 1. The statistics come back with the data so they can be stored with the job
and applied to raw inputs at prediction time. ``standardize_target`` (regression only) does the
same to targets (``target_mean``/``target_std``): predictions must then be mapped back,
``y = output * target_std + target_mean``.
"""
from __future__ import annotations

import csv
import math
import os
import re
import zipfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .spec import DataSpec, SpecError

__all__ = ["DataSettings", "DatasetInfo", "LoadedDataset", "DatasetError", "describe_dataset", "load_dataset",
           "builtin_datasets", "load_npz", "load_csv", "CsvTable", "split_indices", "BUILTIN", "TEXT_PREFIX",
           "UPLOAD_PREFIX", "describe_upload", "preprocess_inputs", "corpora"]

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXT_PREFIX = "text:"
UPLOAD_PREFIX = "upload:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class DatasetError(SpecError):
    """A dataset that cannot be used (an upload that is not what it should be, a missing corpus)."""


@dataclass(frozen=True)
class DataSettings:
    """Where corpora live and how large uploaded arrays may get once decompressed."""

    corpus_dir: Path = REPO_ROOT / "data"
    max_corpus_bytes: int = 64 << 20
    max_array_bytes: int = 2 << 30

    @classmethod
    def from_env(cls, env=None) -> "DataSettings":
        """``FITA_CORPUS_DIR`` overrides the corpus directory."""
        env = os.environ if env is None else env
        d = cls()
        raw = (env.get("FITA_CORPUS_DIR") or "").strip()
        return cls(corpus_dir=Path(raw).expanduser() if raw else d.corpus_dir)


@dataclass
class DatasetInfo:
    """What a dataset gives a model: per-sample shapes and dtypes, the kind of target and sizes.

    ``task``: ``classification`` (targets are class ids, shape ()), ``regression`` (float targets of
    ``target_shape``) or ``language_model`` (targets are token ids of shape (seq_len,), one per input
    position; ``n_classes`` = ``vocab_size``)."""

    name: str
    task: str
    input_shape: tuple
    input_dtype: str
    target_shape: tuple
    target_dtype: str
    n_samples: int
    n_train: int
    n_val: int
    n_classes: int | None = None
    vocab_size: int | None = None
    classes: list | None = None
    vocab: list | None = None
    feature_names: list | None = None
    standardize: bool = False
    standardize_target: bool = False
    options: dict = field(default_factory=dict)
    description: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"], d["target_shape"] = list(self.input_shape), list(self.target_shape)
        return d


@dataclass
class LoadedDataset:
    """Training and validation data as engine TensorDatasets of (inputs, targets), ready for
    engine.utils.data.DataLoader, with the preprocessing statistics (nested lists shaped like the
    statistic; None when not standardised) to store with the job."""

    info: DatasetInfo
    train: Any
    val: Any | None
    input_mean: list | None = None
    input_std: list | None = None
    target_mean: list | None = None
    target_std: list | None = None

    def preprocess(self, x) -> np.ndarray:
        """Raw inputs (array-like, batch first) -> what the model was trained on."""
        return preprocess_inputs(x, self.info, self.input_mean, self.input_std)


def preprocess_inputs(x, info: DatasetInfo, input_mean: list | None, input_std: list | None) -> np.ndarray:
    """Applies a job's stored statistics to raw inputs (for /predict): float32 (or int64 token ids)
    of shape (N, *input_shape); a SpecError(param='inputs') when the shape does not fit."""
    dtype = np.int64 if info.input_dtype == "int64" else np.float32
    try:
        if np.asarray(x).dtype.kind in "US":   # numpy would read "1.5" as a number; JSON strings are not
            raise TypeError("got strings")
        arr = np.asarray(x, dtype=np.float64)  # token ids too, so that 1.5 is refused, not truncated
    except (TypeError, ValueError, OverflowError) as e:
        raise SpecError("invalid_value", f"inputs: expected numbers in nested lists ({e})", "inputs") from None
    if arr.ndim == len(info.input_shape) and tuple(arr.shape) == tuple(info.input_shape):
        arr = arr[None]
    if tuple(arr.shape[1:]) != tuple(info.input_shape):
        raise SpecError("invalid_value", f"inputs: each input must have shape {list(info.input_shape)}, got "
                        f"{list(arr.shape[1:])}", "inputs")
    if not np.isfinite(arr).all():
        raise SpecError("invalid_value", "inputs: NaN or infinite values", "inputs")
    if dtype == np.int64:
        top = info.vocab_size or np.inf
        if not (np.equal(np.mod(arr, 1), 0).all() and (arr >= 0).all() and (arr < top).all()):
            raise SpecError("invalid_value", f"inputs: token ids are integers from 0 to {top - 1}", "inputs")
        return np.ascontiguousarray(arr, dtype=dtype)
    if input_mean is not None:
        arr = (arr - np.asarray(input_mean)) / np.asarray(input_std)
    if (np.abs(arr) > np.finfo(np.float32).max).any():   # they would be inf to the float32 model
        raise SpecError("invalid_value", "inputs: values beyond float32's range (about 3.4e38) once standardised",
                        "inputs")
    return np.ascontiguousarray(arr, dtype=dtype)


# ---- the raw arrays of each dataset ------------------------------------------------------------

@dataclass
class _Raw:
    x: np.ndarray
    y: np.ndarray
    task: str
    n_classes: int | None = None
    classes: list | None = None
    vocab: list | None = None
    feature_names: list | None = None
    options: dict = field(default_factory=dict)
    tail_split: bool = False
    sequence: bool = False
    description: str = ""


_SKLEARN = {"iris": "load_iris", "wine": "load_wine", "breast_cancer": "load_breast_cancer",
            "digits": "load_digits", "diabetes": "load_diabetes"}

BUILTIN = {
    "digits": ("classification", "8x8 images of handwritten digits 0-9 (1,797; scikit-learn)", ("layout",)),
    "iris": ("classification", "iris flowers, 4 measurements, 3 species (150; scikit-learn)", ()),
    "wine": ("classification", "wines, 13 chemical measurements, 3 cultivars (178; scikit-learn)", ()),
    "breast_cancer": ("classification", "breast tumours, 30 features, malignant/benign (569; scikit-learn)", ()),
    "diabetes": ("regression", "diabetes progression from 10 raw clinical features (442; scikit-learn)", ()),
    "moons": ("classification", "two interleaving half circles in 2-D (synthetic)", ("n_samples", "noise")),
    "circles": ("classification", "two concentric circles in 2-D (synthetic)", ("n_samples", "noise")),
    "spirals": ("classification", "interleaved spiral arms in 2-D (synthetic)", ("n_samples", "noise", "n_classes")),
    "regression": ("regression", "a random linear regression problem (synthetic; scikit-learn's make_regression)",
                   ("n_samples", "noise", "n_features")),
    "sine_sequences": ("regression", "noisy sine waves of random amplitude, frequency and phase; predict the next "
                       "value at every step (synthetic)", ("n_samples", "noise", "seq_len")),
}
_ALL_OPTIONS = ("layout", "seq_len", "n_samples", "noise", "n_features", "n_classes", "target", "task")


@lru_cache(maxsize=8)
def _sklearn(name: str):
    import sklearn.datasets as skd
    kwargs = {"scaled": False} if name == "diabetes" else {}
    b = getattr(skd, _SKLEARN[name])(**kwargs)
    names = [str(n) for n in getattr(b, "target_names", [])] or None
    x, y = np.asarray(b.data), np.asarray(b.target)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y, names, [str(f) for f in b.feature_names] if getattr(b, "feature_names", None) is not None else None


def _opt(data: DataSpec, name: str, default):
    value = getattr(data, name)
    return default if value is None else value


def _builtin(data: DataSpec, seed: int) -> _Raw:
    name = data.dataset
    task, desc, _ = BUILTIN[name]
    if name in _SKLEARN:
        x, y, classes, features = _sklearn(name)
        opts: dict = {}
        if name == "digits":
            layout = data.layout or "flat"
            opts["layout"] = layout
            if layout == "image":
                x = x.reshape(-1, 1, 8, 8)
                features = None
            classes = [int(c) for c in classes] if classes else list(range(10))
        if task == "classification":
            return _Raw(x.astype(np.float64), y.astype(np.int64), task, int(y.max()) + 1, classes,
                        feature_names=features, options=opts, description=desc)
        return _Raw(x.astype(np.float64), y.astype(np.float64).reshape(-1, 1), task, feature_names=features,
                    options=opts, description=desc)
    import sklearn.datasets as skd
    n = _opt(data, "n_samples", 1000)
    if name == "moons":
        noise = _opt(data, "noise", 0.1)
        x, y = skd.make_moons(n_samples=n, noise=noise, random_state=seed)
        return _Raw(x, y.astype(np.int64), task, 2, [0, 1], options={"n_samples": n, "noise": noise},
                    description=desc)
    if name == "circles":
        noise = _opt(data, "noise", 0.05)
        x, y = skd.make_circles(n_samples=n, noise=noise, factor=0.5, random_state=seed)
        return _Raw(x, y.astype(np.int64), task, 2, [0, 1], options={"n_samples": n, "noise": noise},
                    description=desc)
    if name == "spirals":
        noise, k = _opt(data, "noise", 0.2), _opt(data, "n_classes", 2)
        x, y = _spirals(n, k, noise, seed)
        return _Raw(x, y, task, k, list(range(k)), options={"n_samples": n, "noise": noise, "n_classes": k},
                    description=desc)
    if name == "regression":
        noise, f = _opt(data, "noise", 5.0), _opt(data, "n_features", 8)
        x, y = skd.make_regression(n_samples=n, n_features=f, n_informative=max(1, (f + 1) // 2), noise=noise,
                                   random_state=seed)
        return _Raw(x, y.reshape(-1, 1), task, options={"n_samples": n, "noise": noise, "n_features": f},
                    description=desc)
    if name == "sine_sequences":
        noise, length = _opt(data, "noise", 0.05), _opt(data, "seq_len", 32)
        x, y = _sines(n, length, noise, seed)
        return _Raw(x, y, task, options={"n_samples": n, "noise": noise, "seq_len": length}, sequence=True,
                    description=desc)
    raise AssertionError(name)


def _spirals(n: int, k: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` arms of ~n/k points each: radius r in [0.05, 1], angle 2*pi*c/k + 3*pi*r + noise*N(0, 1)."""
    rng = np.random.default_rng(seed)
    counts = [n // k + (1 if c < n % k else 0) for c in range(k)]
    xs, ys = [], []
    for c, m in enumerate(counts):
        r = np.linspace(0.05, 1.0, m)
        t = 2 * np.pi * c / k + 3 * np.pi * r + noise * rng.standard_normal(m)
        xs.append(np.stack([r * np.cos(t), r * np.sin(t)], 1))
        ys.append(np.full(m, c, np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _sines(n: int, length: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """s_t = A sin(w t + phi), A ~ U(0.5, 1.5), w ~ U(0.1, 0.5) rad/step, phi ~ U(0, 2 pi), t = 0..L:
    inputs s_0..s_{L-1} plus noise * N(0, 1), targets the clean s_1..s_L; shapes (n, L, 1)."""
    rng = np.random.default_rng(seed)
    amp = rng.uniform(0.5, 1.5, (n, 1))
    omega = rng.uniform(0.1, 0.5, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    s = amp * np.sin(omega * np.arange(length + 1) + phase)
    x = s[:, :-1] + noise * rng.standard_normal((n, length))
    return x[..., None], s[:, 1:, None]


def _read_corpus(path: Path, settings: DataSettings) -> str:
    size = path.stat().st_size
    if size > settings.max_corpus_bytes:
        raise DatasetError("invalid_dataset", f"data.dataset: the corpus {path.name} is {size} bytes, over the "
                           f"limit of {settings.max_corpus_bytes}", "data.dataset")
    return _corpus_text(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _corpus_text(path: str, mtime_ns: int) -> str:
    return Path(path).read_text(encoding="utf-8")


def corpora(settings: DataSettings | None = None) -> list[str]:
    """Names of the text corpora available as ``text:<name>``."""
    settings = settings or DataSettings()
    d = Path(settings.corpus_dir)
    return sorted(p.stem for p in d.glob("*.txt") if _NAME.match(p.stem)) if d.is_dir() else []


def _text(data: DataSpec, settings: DataSettings) -> _Raw:
    name = data.dataset[len(TEXT_PREFIX):]
    available = corpora(settings)
    if not _NAME.match(name) or name not in available:
        raise DatasetError("unknown_dataset", f"data.dataset: no text corpus named {name!r}; available: "
                           f"{', '.join(TEXT_PREFIX + c for c in available) or 'none'}", "data.dataset")
    text = _read_corpus(Path(settings.corpus_dir) / f"{name}.txt", settings)
    length = _opt(data, "seq_len", 64)
    vocab = sorted(set(text))
    lut = {c: i for i, c in enumerate(vocab)}
    ids = np.fromiter((lut[c] for c in text), np.int64, len(text))
    n = (len(ids) - 1) // length
    if n < 2:
        raise DatasetError("invalid_value", f"data.seq_len: the corpus has {len(ids)} characters, too few for two "
                           f"windows of {length}", "data.seq_len")
    x = ids[:n * length].reshape(n, length)
    y = ids[1:n * length + 1].reshape(n, length)
    return _Raw(x, y, "language_model", len(vocab), vocab=vocab, options={"seq_len": length}, tail_split=True,
                sequence=True, description=f"characters of {name}.txt ({len(text):,} characters, "
                f"{len(vocab)} distinct), windows of {length}")


# ---- uploads -------------------------------------------------------------------------------------

def _npz_headers(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """Shapes and dtypes of the arrays in an .npz, read from their headers (nothing decompressed)."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                out[info.filename[:-4]] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DatasetError("invalid_dataset", f"file: not a readable .npz archive ({e})", "file") from None
    return out


def load_npz(path: str | Path, *, max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``x`` (N, features...) and ``y`` (N,) or (N, k) of an uploaded .npz, loaded with
    pickling disabled. Object arrays, missing arrays, mismatched lengths, non-numeric or non-finite
    data and arrays over ``max_bytes`` (decompressed) are DatasetErrors (param ``file``)."""
    path = Path(path)
    limit = max_bytes or DataSettings().max_array_bytes
    headers = _npz_headers(path)
    for key in ("x", "y"):
        if key not in headers:
            raise DatasetError("invalid_dataset", f"file: the .npz has no array {key!r} (found: "
                               f"{', '.join(sorted(headers)) or 'none'}); save it with np.savez(path, x=..., y=...)",
                               "file")
        shape, dtype = headers[key]
        if dtype.hasobject:
            raise DatasetError("invalid_dataset", f"file: array {key!r} holds Python objects (dtype {dtype}); only "
                               "numeric arrays are accepted (pickled data is never loaded)", "file")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limit:
            raise DatasetError("invalid_dataset", f"file: array {key!r} is {nbytes} bytes once decompressed, over "
                               f"the limit of {limit}", "file")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = np.asarray(f["x"]), np.asarray(f["y"])
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as e:
        raise DatasetError("invalid_dataset", f"file: cannot load the .npz ({e})", "file") from None
    for key, arr in (("x", x), ("y", y)):
        if arr.dtype.kind not in "biuf":
            raise DatasetError("invalid_dataset", f"file: array {key!r} has dtype {arr.dtype}; expected numbers",
                               "file")
        if arr.ndim == 0:
            raise DatasetError("invalid_dataset", f"file: array {key!r} is a scalar; expected one row per sample",
                               "file")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise DatasetError("invalid_dataset", f"file: array {key!r} has NaN or infinite values", "file")
    if len(x) != len(y):
        raise DatasetError("invalid_dataset", f"file: x has {len(x)} rows but y has {len(y)}", "file")
    if len(x) < 2:
        raise DatasetError("invalid_dataset", "file: need at least 2 samples", "file")
    if y.ndim > 2:
        raise DatasetError("invalid_dataset", f"file: y must be (N,) or (N, k), got shape {list(y.shape)}", "file")
    if 0 in x.shape[1:] or 0 in y.shape[1:]:
        raise DatasetError("invalid_dataset", f"file: x {list(x.shape)} and y {list(y.shape)} need at least one "
                           "value per sample", "file")
    return x, y


@dataclass
class CsvTable:
    """A CSV's features (float64, (N, F)), its target column as text, and the column names."""

    x: np.ndarray
    target: list[str]
    feature_names: list[str]
    target_name: str


def load_csv(path: str | Path, target: str | None = None) -> CsvTable:
    """Reads a CSV with a header row: ``target`` names the target column (default: the last one);
    every other column must be numeric. Errors name the row and column (param ``file``, or
    ``data.target`` for an unknown target column)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise DatasetError("invalid_dataset", f"file: not a readable CSV file ({e})", "file") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 3:
        raise DatasetError("invalid_dataset", "file: a CSV needs a header row and at least 2 data rows", "file")
    header = [h.strip() for h in rows[0]]
    if len(header) < 2:
        raise DatasetError("invalid_dataset", "file: a CSV needs at least one feature column and a target column",
                           "file")
    if target is None:
        t = len(header) - 1
    elif target in header:
        t = header.index(target)
    else:
        raise DatasetError("invalid_value", f"data.target: no column {target!r} (columns: {', '.join(header)})",
                           "data.target")
    feats = [i for i in range(len(header)) if i != t]
    x = np.empty((len(rows) - 1, len(feats)))
    ys = []
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DatasetError("invalid_dataset", f"file: row {r} has {len(row)} fields, the header has "
                               f"{len(header)}", "file")
        for j, i in enumerate(feats):
            cell = row[i].strip()
            try:
                v = float(cell)
            except ValueError:
                raise DatasetError("invalid_dataset", f"file: row {r}, column {header[i]!r}: {cell!r} is not a "
                                   "number (feature columns must be numeric)", "file") from None
            if not math.isfinite(v):
                raise DatasetError("invalid_dataset", f"file: row {r}, column {header[i]!r}: {cell!r} is not a "
                                   "finite number", "file")
            x[r - 2, j] = v
        cell = row[t].strip()
        if not cell:
            raise DatasetError("invalid_dataset", f"file: row {r}: the target column {header[t]!r} is empty", "file")
        ys.append(cell)
    return CsvTable(x, ys, [header[i] for i in feats], header[t])


def _numeric(values: list[str]) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in values])
    except ValueError:
        return None
    return arr if np.isfinite(arr).all() else None


_MAX_CLASSES = 1 << 16   # more classes than this in an upload is a mistake (an id column as the target)


def _check_classes(k: int, what: str) -> None:
    if k > _MAX_CLASSES:
        raise DatasetError("invalid_dataset", f"file: {what}; at most {_MAX_CLASSES} classes are supported (for a "
                           "numeric target, use task: regression)", "file")


def _upload(data: DataSpec, resolve_upload: Callable[[str], Any] | None, settings: DataSettings) -> _Raw:
    ident = data.dataset[len(UPLOAD_PREFIX):]
    if not _NAME.match(ident):
        raise DatasetError("unknown_dataset", f"data.dataset: {ident!r} is not a dataset id", "data.dataset")
    if resolve_upload is None:
        raise DatasetError("unknown_dataset", "data.dataset: uploaded datasets are only available through the "
                           "service", "data.dataset")
    found = resolve_upload(ident)
    path, own = found if isinstance(found, tuple) else (found, {})
    if path is None or not Path(path).is_file():
        raise DatasetError("unknown_dataset", f"data.dataset: no uploaded dataset {ident!r}", "data.dataset")
    path = Path(path)
    if data.target is None:   # the target (and task) the upload was described with, not the last column
        data = data.model_copy(update={"target": own.get("target"), "task": data.task or own.get("task")})
    if path.suffix.lower() == ".npz":
        if data.target is not None:
            raise DatasetError("invalid_value", "data.target: names a CSV column; this dataset is an .npz",
                               "data.target")
        x, y = load_npz(path, max_bytes=settings.max_array_bytes)
        task = data.task or ("classification" if y.dtype.kind in "biu" else "regression")
        feature_names = None
        if x.ndim == 1:
            x = x[:, None]
        if task == "classification":
            if y.ndim != 1 or (y.dtype.kind == "f" and not np.equal(np.mod(y, 1), 0).all()):
                raise DatasetError("invalid_dataset", "file: classification needs y of integer class ids, shape (N,)",
                                   "file")
            y = y.astype(np.int64)
            if y.min() < 0:
                raise DatasetError("invalid_dataset", "file: class ids in y must be 0 or more", "file")
            k = int(y.max()) + 1
            _check_classes(k, f"class ids in y go up to {k - 1}")
            return _Raw(x.astype(np.float64), y, task, max(k, 2), list(range(max(k, 2))),
                        options={"task": task}, description=f"uploaded .npz {ident}")
    else:
        table = load_csv(path, data.target)
        x, feature_names = table.x, table.feature_names
        num = _numeric(table.target)
        inferred = "regression"
        if num is None or (np.equal(np.mod(num, 1), 0).all() and len(set(num.tolist())) <= 32):
            inferred = "classification"
        task = data.task or inferred
        if task == "classification":
            labels = sorted(set(num.tolist())) if num is not None else sorted(set(table.target))
            lut = {v: i for i, v in enumerate(labels)}
            y = np.array([lut[v] for v in (num.tolist() if num is not None else table.target)], np.int64)
            classes = [int(v) if isinstance(v, float) and v.is_integer() else v for v in labels]
            if len(classes) < 2:
                raise DatasetError("invalid_dataset", "file: the target column has a single class", "file")
            _check_classes(len(classes), f"the target column {table.target_name!r} has {len(classes)} distinct "
                           "values")
            return _Raw(x, y, task, len(classes), classes, feature_names=feature_names,
                        options={"task": task, "target": table.target_name}, description=f"uploaded CSV {ident}")
        if num is None:
            raise DatasetError("invalid_value", f"data.task: the target column {table.target_name!r} is not numeric, "
                               "so it cannot be a regression target", "data.task")
        y = num
        data_opts = {"task": task, "target": table.target_name}
        return _Raw(x, y.reshape(-1, 1), task, feature_names=feature_names, options=data_opts,
                    description=f"uploaded CSV {ident}")
    return _Raw(x.astype(np.float64), (y if y.ndim == 2 else y[:, None]).astype(np.float64), task,
                options={"task": task}, description=f"uploaded .npz {ident}")


# ---- describe and load ---------------------------------------------------------------------------

def _as_data_spec(data) -> DataSpec:
    if isinstance(data, DataSpec):
        return data
    from pydantic import ValidationError
    from .spec import _from_validation_error
    try:
        return DataSpec.model_validate(data)
    except ValidationError as e:
        err = _from_validation_error(e)
        for item in err.errors:   # paths relative to the spec
            if item["param"]:
                item["param"] = "data." + item["param"]
                item["message"] = "data." + item["message"]
        raise SpecError(err.errors[0]["code"], err.errors[0]["message"], err.errors[0]["param"],
                        errors=err.errors) from None


def _check_options(data: DataSpec) -> None:
    name = data.dataset
    if name.startswith(TEXT_PREFIX):
        allowed = {"seq_len"}
    elif name.startswith(UPLOAD_PREFIX):
        allowed = {"target", "task"}
    else:
        allowed = set(BUILTIN[name][2])
    for opt in _ALL_OPTIONS:
        if getattr(data, opt) is not None and opt not in allowed:
            users = [n for n, (_, _, opts) in BUILTIN.items() if opt in opts]
            if opt == "seq_len":
                users = ["text:<name>"] + users
            if opt in ("target", "task"):
                users = ["upload:<id>"]
            raise SpecError("invalid_value", f"data.{opt}: does not apply to {name} (it applies to "
                            f"{', '.join(users)})", f"data.{opt}")


def _raw(data: DataSpec, seed: int, settings: DataSettings, resolve_upload) -> _Raw:
    name = data.dataset
    if not (name in BUILTIN or name.startswith(TEXT_PREFIX) or name.startswith(UPLOAD_PREFIX)):
        import difflib
        close = difflib.get_close_matches(name, list(BUILTIN), n=1)
        raise SpecError("unknown_dataset", f"data.dataset: unknown dataset {name!r}"
                        + (f"; did you mean {close[0]!r}?" if close else "") +
                        f" (built in: {', '.join(BUILTIN)}, text:<name>, upload:<id>)", "data.dataset")
    _check_options(data)
    if name.startswith(TEXT_PREFIX):
        raw = _text(data, settings)
    elif name.startswith(UPLOAD_PREFIX):
        raw = _upload(data, resolve_upload, settings)
    else:
        raw = _builtin(data, seed)
    if raw.task == "language_model" and data.standardize:
        raise SpecError("invalid_value", "data.standardize: text inputs are character ids; they cannot be "
                        "standardised", "data.standardize")
    if data.standardize_target and raw.task != "regression":
        raise SpecError("invalid_value", "data.standardize_target: applies to regression targets only",
                        "data.standardize_target")
    return raw


def split_indices(n: int, validation_split: float, seed: int, *, tail: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices: ``round(n * validation_split)`` samples (at least 1 when the split
    is positive) for validation, drawn by a permutation from ``seed`` (or the last ones with
    ``tail``). Raises SpecError when no training sample would remain."""
    n_val = 0 if validation_split <= 0 else max(1, int(round(n * validation_split)))
    if n - n_val < 1:
        raise SpecError("invalid_value", f"data.validation_split: {validation_split} leaves no training samples "
                        f"out of {n}", "data.validation_split")
    if tail:
        idx = np.arange(n)
        return idx[:n - n_val], idx[n - n_val:]
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _info(data: DataSpec, raw: _Raw, n_train: int, n_val: int) -> DatasetInfo:
    standardize = data.standardize if data.standardize is not None else raw.task != "language_model" and \
        not raw.sequence
    options = dict(raw.options)
    lm = raw.task == "language_model"
    return DatasetInfo(
        name=data.dataset, task=raw.task, input_shape=tuple(raw.x.shape[1:]),
        input_dtype="int64" if lm else "float32", target_shape=tuple(raw.y.shape[1:]),
        target_dtype="int64" if raw.task != "regression" else "float32", n_samples=len(raw.x), n_train=n_train,
        n_val=n_val, n_classes=raw.n_classes, vocab_size=len(raw.vocab) if raw.vocab else None,
        classes=raw.classes, vocab=raw.vocab, feature_names=raw.feature_names, standardize=bool(standardize),
        standardize_target=bool(data.standardize_target), options=options, description=raw.description)


def describe_dataset(data: DataSpec | dict, *, seed: int = 0, settings: DataSettings | None = None,
                     resolve_upload: Callable[[str], Any] | None = None) -> DatasetInfo:
    """Shapes, task and sizes of the dataset ``data`` names (a DataSpec or its dict), without building
    tensors. SpecError for an unknown dataset or an option that does not apply to it."""
    data = _as_data_spec(data)
    raw = _raw(data, seed, settings or DataSettings(), resolve_upload)
    n = len(raw.x)
    n_val = 0 if data.validation_split <= 0 else max(1, int(round(n * data.validation_split)))
    if n - n_val < 1:
        split_indices(n, data.validation_split, seed)   # raises
    return _info(data, raw, n - n_val, n_val)


def _stats(x: np.ndarray, axes: tuple) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=axes)
    std = x.std(axis=axes)
    std = np.where(std < 1e-8, 1.0, std)
    return mean, std


def load_dataset(data: DataSpec | dict, *, seed: int = 0, settings: DataSettings | None = None,
                 resolve_upload: Callable[[str], Any] | None = None) -> LoadedDataset:
    """The dataset as engine TensorDatasets (inputs float32, or int64 token ids; targets int64 class
    ids or float32 values), split and standardised as the module docstring says. Deterministic in
    ``seed`` (the job's training.seed)."""
    import engine
    from engine.utils.data import TensorDataset

    data = _as_data_spec(data)
    raw = _raw(data, seed, settings or DataSettings(), resolve_upload)
    train_idx, val_idx = split_indices(len(raw.x), data.validation_split, seed, tail=raw.tail_split)
    info = _info(data, raw, len(train_idx), len(val_idx))
    x, y = raw.x, raw.y
    out = LoadedDataset(info, None, None)
    if info.input_dtype == "float32":
        x = x.astype(np.float64, copy=False)
        if info.standardize:
            axes = (0, 1) if raw.sequence else (0,)
            mean, std = _stats(x[train_idx], axes)
            x = (x - mean) / std
            out.input_mean, out.input_std = mean.tolist(), std.tolist()
        x = x.astype(np.float32)
    else:
        x = x.astype(np.int64, copy=False)
    if info.task == "regression":
        y = y.astype(np.float64, copy=False)
        if info.standardize_target:
            mean, std = _stats(y[train_idx], (0, 1) if raw.sequence else (0,))
            y = (y - mean) / std
            out.target_mean, out.target_std = mean.tolist(), std.tolist()
        y = y.astype(np.float32)
    else:
        y = y.astype(np.int64, copy=False)

    def tensors(idx):
        return TensorDataset(engine.from_numpy(np.ascontiguousarray(x[idx])),
                             engine.from_numpy(np.ascontiguousarray(y[idx])))
    out.train = tensors(train_idx)
    out.val = tensors(val_idx) if len(val_idx) else None
    return out


def builtin_datasets(settings: DataSettings | None = None) -> list[dict]:
    """The datasets a spec may name without uploading anything: name, task, description, options
    (for the docs and ``GET /v1/datasets``)."""
    out = [{"name": n, "task": t, "description": d, "options": list(o)} for n, (t, d, o) in BUILTIN.items()]
    for c in corpora(settings):
        out.append({"name": TEXT_PREFIX + c, "task": "language_model",
                    "description": f"character-level corpus {c}.txt", "options": ["seq_len"]})
    return out


def describe_upload(path: str | Path, *, target: str | None = None, task: str | None = None,
                    settings: DataSettings | None = None) -> DatasetInfo:
    """What the API shows for an uploaded file at ``path`` (``.npz`` or ``.csv``), validating it."""
    path = Path(path)
    data = DataSpec(dataset=UPLOAD_PREFIX + "upload", validation_split=0.0, target=target, task=task)
    raw = _upload(data, lambda _id: path, settings or DataSettings())
    info = _info(data, raw, len(raw.x), 0)
    info.name = path.name
    return info

