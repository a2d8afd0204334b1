"""workers.datasets: built-in datasets (shapes, determinism, standardisation), text corpora, uploads."""
import numpy as np
import pytest

import engine
from engine.utils.data import DataLoader
from workers.datasets import (DataSettings, DatasetError, builtin_datasets, describe_dataset, describe_upload,
                              load_csv, load_dataset, load_npz, preprocess_inputs, split_indices)
from workers.spec import SpecError

EXPECTED = {  # name: (task, input shape, target shape, samples, classes)
    "digits": ("classification", (64,), (), 1797, 10),
    "iris": ("classification", (4,), (), 150, 3),
    "wine": ("classification", (13,), (), 178, 3),
    "breast_cancer": ("classification", (30,), (), 569, 2),
    "diabetes": ("regression", (10,), (1,), 442, None),
    "moons": ("classification", (2,), (), 1000, 2),
    "circles": ("classification", (2,), (), 1000, 2),
    "spirals": ("classification", (2,), (), 1000, 2),
    "regression": ("regression", (8,), (1,), 1000, None),
    "sine_sequences": ("regression", (32, 1), (32, 1), 1000, None),
}


def arrays(ds):
    return [t.numpy() for t in ds.tensors]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_shapes_and_sizes(name):
    task, x_shape, y_shape, n, k = EXPECTED[name]
    d = load_dataset({"dataset": name}, seed=0)
    info = d.info
    assert (info.task, info.input_shape, info.target_shape, info.n_samples, info.n_classes) == \
        (task, x_shape, y_shape, n, k)
    assert info.n_train + info.n_val == n and info.n_val == round(0.2 * n)
    x, y = arrays(d.train)
    assert x.shape == (info.n_train, *x_shape) and x.dtype == np.float32
    assert y.shape == (info.n_train, *y_shape)
    assert y.dtype == (np.int64 if task == "classification" else np.float32)
    if k:
        assert y.min() >= 0 and y.max() < k and len(info.classes) == k
    assert len(d.val) == info.n_val
    assert describe_dataset({"dataset": name}).to_dict() == info.to_dict()


@pytest.mark.parametrize("name", list(EXPECTED))
def test_builtin_is_deterministic(name):
    a, b = load_dataset({"dataset": name}, seed=3), load_dataset({"dataset": name}, seed=3)
    for ta, tb in zip(arrays(a.train) + arrays(a.val), arrays(b.train) + arrays(b.val)):
        np.testing.assert_array_equal(ta, tb)
    c = load_dataset({"dataset": name}, seed=4)
    assert not np.array_equal(arrays(a.val)[0], arrays(c.val)[0])


def test_standardisation_uses_training_statistics():
    d = load_dataset({"dataset": "wine"}, seed=0)
    x, _ = arrays(d.train)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-4)
    from sklearn.datasets import load_wine
    raw = load_wine().data
    train_idx, val_idx = split_indices(len(raw), 0.2, 0)
    np.testing.assert_allclose(d.input_mean, raw[train_idx].mean(0))
    np.testing.assert_allclose(d.input_std, raw[train_idx].std(0))
    xv, _ = arrays(d.val)
    np.testing.assert_allclose(xv, (raw[val_idx] - d.input_mean) / np.asarray(d.input_std), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.preprocess(raw[val_idx]), xv, rtol=1e-6, atol=1e-6)


def test_standardize_false_keeps_raw_values():
    d = load_dataset({"dataset": "iris", "standardize": False})
    assert d.input_mean is None and d.input_std is None and d.info.standardize is False
    x, _ = arrays(d.train)
    assert x.min() >= 0 and x.max() > 5


def test_constant_features_get_std_one():
    d = load_dataset({"dataset": "digits"})
    assert d.input_std[0] == 1.0    # the top-left pixel is always 0
    assert np.isfinite(arrays(d.train)[0]).all()


def test_digits_image_layout():
    d = load_dataset({"dataset": "digits", "layout": "image"})
    assert d.info.input_shape == (1, 8, 8) and np.asarray(d.input_mean).shape == (1, 8, 8)
    flat = load_dataset({"dataset": "digits"})
    np.testing.assert_allclose(arrays(d.train)[0].reshape(-1, 64), arrays(flat.train)[0], rtol=1e-6)
    assert d.info.options == {"layout": "image"}


def test_synthetic_options():
    d = load_dataset({"dataset": "spirals", "n_samples": 300, "n_classes": 3, "noise": 0.0, "validation_split": 0})
    assert d.info.n_samples == 300 and d.info.n_classes == 3 and d.val is None and d.info.n_val == 0
    assert np.bincount(arrays(d.train)[1]).tolist() == [100, 100, 100]
    r = load_dataset({"dataset": "regression", "n_features": 3, "n_samples": 50})
    assert r.info.input_shape == (3,)
    s = load_dataset({"dataset": "sine_sequences", "seq_len": 10, "noise": 0.0, "standardize": False})
    x, y = arrays(s.train)
    assert x.shape[1:] == (10, 1)
    np.testing.assert_allclose(x[:, 1:], y[:, :-1], atol=1e-6)   # the target is the next value
    assert s.info.options == {"n_samples": 1000, "noise": 0.0, "seq_len": 10}


def test_sequence_standardisation_is_per_channel():
    s = load_dataset({"dataset": "sine_sequences", "standardize": True})
    assert np.asarray(s.input_mean).shape == (1,)
    x, _ = arrays(s.train)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-3


def test_standardize_target():
    d = load_dataset({"dataset": "diabetes", "standardize_target": True})
    _, y = arrays(d.train)
    assert abs(y.mean()) < 1e-5 and abs(y.std() - 1) < 1e-4
    assert 100 < d.target_mean[0] < 200 and d.info.standardize_target is True
    with pytest.raises(SpecError) as e:
        load_dataset({"dataset": "iris", "standardize_target": True})
    assert e.value.param == "data.standardize_target"


@pytest.mark.parametrize("data,param", [
    ({"dataset": "iris", "layout": "image"}, "data.layout"),
    ({"dataset": "digits", "seq_len": 5}, "data.seq_len"),
    ({"dataset": "moons", "n_features": 5}, "data.n_features"),
    ({"dataset": "iris", "target": "species"}, "data.target"),
    ({"dataset": "text:tinyshakespeare", "standardize": True}, "data.standardize"),
    ({"dataset": "text:tinyshakespeare", "n_samples": 100}, "data.n_samples"),
    ({"dataset": "irs"}, "data.dataset"),
    ({"dataset": "iris", "batch_size": 0}, "data.batch_size"),
])
def test_options_that_do_not_apply(data, param):
    with pytest.raises(SpecError) as e:
        describe_dataset(data)
    assert e.value.param == param


def test_unknown_dataset_suggests():
    with pytest.raises(SpecError) as e:
        describe_dataset({"dataset": "moon"})
    assert e.value.code == "unknown_dataset" and "moons" in e.value.message


def test_split_indices():
    tr, va = split_indices(10, 0.3, 0)
    assert len(va) == 3 and sorted(np.concatenate([tr, va]).tolist()) == list(range(10))
    tr, va = split_indices(10, 0.3, 0, tail=True)
    assert va.tolist() == [7, 8, 9]
    assert len(split_indices(10, 0.01, 0)[1]) == 1     # a positive split keeps at least one sample
    with pytest.raises(SpecError) as e:
        split_indices(1, 0.5, 0)
    assert e.value.param == "data.validation_split"


# ---- text ----------------------------------------------------------------------------------------

def test_text_windows_and_vocabulary():
    d = load_dataset({"dataset": "text:tinyshakespeare", "seq_len": 50, "validation_split": 0.1})
    info = d.info
    text = (DataSettings().corpus_dir / "tinyshakespeare.txt").read_text()
    assert info.task == "language_model" and info.vocab == sorted(set(text))
    assert info.vocab_size == info.n_classes == len(info.vocab) == 62
    assert info.input_shape == info.target_shape == (50,) and info.input_dtype == "int64"
    x, y = arrays(d.train)
    assert x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    assert "".join(info.vocab[i] for i in x[0]) == text[:50]
    assert "".join(info.vocab[i] for i in y[0]) == text[1:51]
    n = (len(text) - 1) // 50
    assert info.n_samples == n and info.n_val == round(0.1 * n)
    xv, _ = arrays(d.val)      # the last windows of the text
    assert "".join(info.vocab[i] for i in xv[-1]) == text[(n - 1) * 50:n * 50]
    assert d.input_mean is None and info.standardize is False


def test_text_corpus_dir_setting(tmp_path):
    (tmp_path / "tiny.txt").write_text("abcabcabcabcabcabcabc\n")
    settings = DataSettings(corpus_dir=tmp_path)
    d = load_dataset({"dataset": "text:tiny", "seq_len": 4}, settings=settings)
    assert d.info.vocab == ["\n", "a", "b", "c"] and d.info.n_samples == 5
    assert [b["name"] for b in builtin_datasets(settings)][-1] == "text:tiny"
    for bad in ("text:../secret", "text:nope", "text:"):
        with pytest.raises(SpecError) as e:
            describe_dataset({"dataset": bad}, settings=settings)
        assert (e.value.code, e.value.param) == ("unknown_dataset", "data.dataset")
    with pytest.raises(SpecError) as e:
        describe_dataset({"dataset": "text:tiny", "seq_len": 20}, settings=settings)
    assert e.value.param == "data.seq_len"


def test_dataloader_batches():
    d = load_dataset({"dataset": "iris"})
    loader = DataLoader(d.train, batch_size=32, shuffle=True, generator=engine.Generator().manual_seed(0))
    x, y = next(iter(loader))
    assert tuple(x.shape) == (32, 4) and tuple(y.shape) == (32,) and y.dtype == engine.int64


def test_builtin_listing():
    names = [b["name"] for b in builtin_datasets()]
    assert names[:10] == list(EXPECTED) and "text:tinyshakespeare" in names


# ---- uploads -------------------------------------------------------------------------------------

def test_npz_upload_classification_and_regression(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    np.savez(tmp_path / "cls.npz", x=x, y=rng.integers(0, 3, 40))
    np.savez_compressed(tmp_path / "reg.npz", x=x.astype(np.float32), y=rng.standard_normal(40))
    resolve = {"a": tmp_path / "cls.npz", "b": tmp_path / "reg.npz"}.get
    d = load_dataset({"dataset": "upload:a"}, resolve_upload=resolve)
    assert d.info.task == "classification" and d.info.n_classes == 3 and d.info.input_shape == (3,)
    r = load_dataset({"dataset": "upload:b"}, resolve_upload=resolve)
    assert r.info.task == "regression" and r.info.target_shape == (1,) and arrays(r.train)[1].dtype == np.float32
    as_cls = describe_dataset({"dataset": "upload:a", "task": "regression"}, resolve_upload=resolve)
    assert as_cls.task == "regression"
    info = describe_upload(tmp_path / "cls.npz")
    assert info.n_samples == 40 and info.name == "cls.npz"
    with pytest.raises(SpecError) as e:
        describe_dataset({"dataset": "upload:c"}, resolve_upload=resolve)
    assert e.value.code == "unknown_dataset"
    with pytest.raises(SpecError) as e:
        describe_dataset({"dataset": "upload:a"})
    assert e.value.code == "unknown_dataset" and "service" in e.value.message


def test_npz_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError) as e:
        load_npz(path)
    assert e.value.code == "invalid_dataset" and e.value.param == "file" and "objects" in e.value.message


@pytest.mark.parametrize("arrays_,needle", [
    ({"x": np.zeros((3, 2))}, "no array 'y'"),
    ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, "rows"),
    ({"x": np.array([[np.nan, 1.0], [1.0, 2.0]]), "y": np.zeros(2)}, "NaN"),
    ({"x": np.array([["a", "b"], ["c", "d"]]), "y": np.zeros(2)}, "dtype"),
    ({"x": np.zeros((1, 2)), "y": np.zeros(1)}, "at least 2"),
])
def test_npz_validation(tmp_path, arrays_, needle):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays_)
    with pytest.raises(DatasetError) as e:
        load_npz(path)
    assert needle in e.value.message


def test_npz_size_checked_from_headers_and_garbage_refused(tmp_path):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, x=np.zeros((1000, 100)), y=np.zeros(1000))
    with pytest.raises(DatasetError) as e:
        load_npz(path, max_bytes=10_000)
    assert "decompressed" in e.value.message
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DatasetError):
        load_npz(junk)


def test_csv_upload(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text("a,b,species\n1,2,setosa\n3,4.5,virginica\n5,6,setosa\n7,8,virginica\n")
    table = load_csv(path)
    assert table.feature_names == ["a", "b"] and table.target_name == "species"
    np.testing.assert_array_equal(table.x, [[1, 2], [3, 4.5], [5, 6], [7, 8]])
    info = describe_upload(path)
    assert info.task == "classification" and info.classes == ["setosa", "virginica"] and info.n_classes == 2
    d = load_dataset({"dataset": "upload:f", "validation_split": 0}, resolve_upload=lambda _id: path)
    assert arrays(d.train)[1].tolist() == [0, 1, 0, 1] and d.info.feature_names == ["a", "b"]

    reg = tmp_path / "reg.csv"
    reg.write_text("price,x1,x2\n1.5,1,2\n2.25,3,4\n3.75,5,6\n")
    info = describe_upload(reg, target="price")
    assert info.task == "regression" and info.feature_names == ["x1", "x2"] and info.input_shape == (2,)
    ints = tmp_path / "ints.csv"
    ints.write_text("x,label\n0.1,1\n0.2,2\n0.3,1\n")
    info = describe_upload(ints)
    assert info.task == "classification" and info.classes == [1, 2]
    assert describe_upload(ints, task="regression").task == "regression"


@pytest.mark.parametrize("text,needle,param", [
    ("a,b\n1,x\n2,y\n3,x\n", None, None),
    ("a,b,c\n1,oops,1\n2,3,1\n", "row 2, column 'b'", "file"),
    ("a,b\n1,2\n3\n", "row 3", "file"),
    ("a,b\n1,\n2,3\n", "empty", "file"),
    ("a,b\n1,2\n", "at least 2 data rows", "file"),
    ("a,b\nnan,2\n1,3\n", "finite", "file"),
])
def test_csv_errors(tmp_path, text, needle, param):
    path = tmp_path / "d.csv"
    path.write_text(text)
    if needle is None:
        assert load_csv(path).target == ["x", "y", "x"]
        return
    with pytest.raises(DatasetError) as e:
        load_csv(path)
    assert needle in e.value.message and e.value.param == param


def test_csv_unknown_target_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SpecError) as e:
        load_csv(path, target="c")
    assert e.value.param == "data.target" and "a, b" in e.value.message


def test_preprocess_inputs_for_predict():
    d = load_dataset({"dataset": "iris"})
    raw = [[5.1, 3.5, 1.4, 0.2]]
    out = preprocess_inputs(raw, d.info, d.input_mean, d.input_std)
    np.testing.assert_allclose(out, (np.asarray(raw) - d.input_mean) / np.asarray(d.input_std), rtol=1e-6)
    assert out.dtype == np.float32
    assert preprocess_inputs(raw[0], d.info, d.input_mean, d.input_std).shape == (1, 4)   # one sample
    with pytest.raises(SpecError) as e:
        preprocess_inputs([[1.0, 2.0]], d.info, d.input_mean, d.input_std)
    assert e.value.param == "inputs"
