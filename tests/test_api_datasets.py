"""/v1/datasets against the live service (real HTTP, real Redis, a real worker): uploads as multipart and as
a raw body, listing and paging, the built-in datasets, refused uploads (never unpickled, never over the
limit), tenant isolation, and a job trained on an upload."""
from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import pytest

from service_fixture import UPLOAD_LIMIT, check_error, service, t1, t2  # noqa: F401


def make_csv(n: int = 60, label_column: str = "label", classes=("small", "large")) -> bytes:
    """Features f1..f3 and a text label column between them; the classes are separable by f1."""
    rng = np.random.default_rng(0)
    lines = [f"f1,{label_column},f2,f3"]
    for i in range(n):
        k = i % len(classes)
        f1 = (2.0 * k - 1.0) * 3 + rng.standard_normal()
        lines.append(f"{f1:.4f},{classes[k]},{rng.standard_normal():.4f},{rng.standard_normal():.4f}")
    return ("\n".join(lines) + "\n").encode()


def make_npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


NPZ_X = np.random.default_rng(1).standard_normal((40, 5)).astype(np.float32)
NPZ_Y = (np.arange(40) % 4).astype(np.int64)


def upload_csv(client, content: bytes, filename="data.csv", **fields):
    return client.post("/v1/datasets", files={"file": (filename, content, "text/csv")}, data=fields)


def upload_raw(client, content, filename: str | None = "d.npz", **params):
    if filename is not None:
        params["filename"] = filename
    return client.post("/v1/datasets", content=content, params=params,
                       headers={"Content-Type": "application/octet-stream"})






@pytest.fixture(scope="module")
def csv_ds(t1):
    content = make_csv()
    r = upload_csv(t1, content, target="label")
    assert r.status_code == 201, r.text
    return r.json(), content


@pytest.fixture(scope="module")
def npz_ds(t1, csv_ds):   # uploaded after the CSV: newer
    content = make_npz(x=NPZ_X, y=NPZ_Y)
    r = upload_raw(t1, content)
    assert r.status_code == 201, r.text
    return r.json(), content


def dataset_files(service) -> set[str]:
    root = service.data_dir / "artifacts" / "datasets"
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


# ---- uploads that work ------------------------------------------------------------------------------------

def test_csv_upload(service, csv_ds):
    ds, content = csv_ds
    assert ds["id"].startswith("ds_") and ds["object"] == "dataset" and ds["builtin"] is False
    assert ds["filename"] == "data.csv"
    assert ds["bytes"] == len(content)
    assert ds["sha256"] == hashlib.sha256(content).hexdigest()
    assert ds["task"] == "classification"
    info = ds["info"]
    assert info["input_shape"] == [3] and info["n_samples"] == 60 and info["n_classes"] == 2
    assert info["classes"] == ["large", "small"] and info["feature_names"] == ["f1", "f2", "f3"]
    assert "tenant" not in ds
    assert ds["id"] in dataset_files(service)


def test_npz_upload(service, npz_ds):
    ds, content = npz_ds
    assert ds["id"].startswith("ds_") and ds["filename"] == "d.npz"
    assert ds["bytes"] == len(content) and ds["sha256"] == hashlib.sha256(content).hexdigest()
    assert ds["task"] == "classification"
    assert ds["info"]["input_shape"] == [5] and ds["info"]["n_samples"] == 40 and ds["info"]["n_classes"] == 4
    stored = service.data_dir / "artifacts" / "datasets" / ds["id"] / "data.npz"
    assert stored.read_bytes() == content


def test_npz_regression_upload_multipart(t1):
    y = NPZ_X.sum(1, keepdims=True).astype(np.float64)
    r = t1.post("/v1/datasets", files={"file": ("reg.npz", make_npz(x=NPZ_X, y=y), "application/octet-stream")})
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "regression" and r.json()["info"]["target_shape"] == [1]
    assert t1.delete(f"/v1/datasets/{r.json()['id']}").status_code == 200


def test_csv_task_override(t1):
    content = b"a,b,y\n" + b"".join(f"{i},{i * 2},{i % 3}\n".encode() for i in range(30))
    r = upload_csv(t1, content, task="regression")
    assert r.status_code == 201, r.text
    assert r.json()["task"] == "regression"
    assert t1.delete(f"/v1/datasets/{r.json()['id']}").status_code == 200


def test_upload_chunked_under_the_limit(t1):
    content = make_npz(x=NPZ_X, y=NPZ_Y)
    r = upload_raw(t1, (content[i:i + 1000] for i in range(0, len(content), 1000)))
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(content).hexdigest()
    assert t1.delete(f"/v1/datasets/{r.json()['id']}").status_code == 200


# ---- reading them back -----------------------------------------------------------------------------------

def test_get_dataset(t1, csv_ds):
    ds, _ = csv_ds
    r = t1.get(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 200 and r.json() == ds


def test_list_newest_first_and_paging(t1, csv_ds, npz_ds):
    csv_id, npz_id = csv_ds[0]["id"], npz_ds[0]["id"]
    listed = t1.get("/v1/datasets").json()
    assert listed["object"] == "list"
    ids = [d["id"] for d in listed["data"]]
    assert ids.index(npz_id) < ids.index(csv_id)
    first = t1.get("/v1/datasets", params={"limit": 1}).json()
    assert [d["id"] for d in first["data"]] == [ids[0]] and first["has_more"] is True
    assert first["first_id"] == first["last_id"] == ids[0]
    second = t1.get("/v1/datasets", params={"limit": 1, "after": first["last_id"]}).json()
    assert [d["id"] for d in second["data"]] == [ids[1]]
    last = t1.get("/v1/datasets", params={"limit": 100, "after": ids[-1]}).json()
    assert last == {"object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}


@pytest.mark.parametrize("params,param", [({"limit": 0}, "limit"), ({"limit": 101}, "limit")])
def test_list_bad_query(t1, params, param):
    check_error(t1.get("/v1/datasets", params=params), 422, "invalid_value", param)


def test_list_bad_cursor(t1, t2, csv_ds):
    check_error(t1.get("/v1/datasets", params={"after": "ds_nope"}), 400, "invalid_cursor", "after", ("ds_nope",))
    check_error(t2.get("/v1/datasets", params={"after": csv_ds[0]["id"]}), 400, "invalid_cursor", "after")
    check_error(t1.get("/v1/datasets", params={"after": "../x"}), 400, "invalid_cursor", "after")


def test_builtin_list(t1):
    r = t1.get("/v1/datasets/builtin")
    assert r.status_code == 200, r.text
    by_id = {d["id"]: d for d in r.json()["data"]}
    for name in ("digits", "iris", "wine", "breast_cancer", "diabetes", "moons", "circles", "spirals",
                 "regression", "sine_sequences", "text:tinyshakespeare"):
        assert by_id[name]["builtin"] is True, name
    assert by_id["iris"]["task"] == "classification" and by_id["iris"]["info"]["input_shape"] == [4]
    assert by_id["digits"]["info"]["input_shape"] == [64]
    assert by_id["diabetes"]["task"] == "regression"
    lm = by_id["text:tinyshakespeare"]
    assert lm["task"] == "language_model" and lm["info"]["input_shape"] == [64]
    assert lm["info"]["vocab_size"] > 30 and lm["info"]["vocab"] is None


def test_builtin_one(t1):
    r = t1.get("/v1/datasets/iris")
    assert r.status_code == 200, r.text
    iris = r.json()
    assert iris["id"] == "iris" and iris["builtin"] is True and iris["task"] == "classification"
    assert iris["info"]["input_shape"] == [4] and iris["info"]["n_classes"] == 3 and iris["info"]["n_samples"] == 150
    assert t1.get("/v1/datasets/text:tinyshakespeare").json()["task"] == "language_model"


@pytest.mark.parametrize("dataset_id", ["ds_doesnotexist", "iris2", "a" * 300, "bad id!"])
def test_unknown_dataset(t1, dataset_id):
    check_error(t1.get(f"/v1/datasets/{dataset_id}"), 404, "dataset_not_found", "dataset_id", ("no dataset",))
    check_error(t1.delete(f"/v1/datasets/{dataset_id}"), 404, "dataset_not_found", "dataset_id")


@pytest.mark.parametrize("name", ["iris", "text:tinyshakespeare"])
def test_builtin_cannot_be_deleted(t1, name):
    check_error(t1.delete(f"/v1/datasets/{name}"), 409, "builtin_dataset", "dataset_id", (name, "built-in"))
    assert t1.get(f"/v1/datasets/{name}").status_code == 200


# ---- uploads that are refused -----------------------------------------------------------------------------

@pytest.fixture
def no_new_datasets(service, t1):
    """The test adds no dataset: neither a record nor a file."""
    before_ids = {d["id"] for d in t1.get("/v1/datasets", params={"limit": 100}).json()["data"]}
    before_files = dataset_files(service)
    yield
    assert {d["id"] for d in t1.get("/v1/datasets", params={"limit": 100}).json()["data"]} == before_ids
    assert dataset_files(service) == before_files


@pytest.mark.parametrize("filename", ["data.txt", "data", "data.npy", "data.csv.exe", "data.pkl"])
def test_wrong_extension(t1, no_new_datasets, filename):
    check_error(upload_csv(t1, make_csv(), filename=filename), 422, "invalid_dataset", "file",
                (".npz", ".csv"))


def test_raw_upload_without_a_filename(t1, no_new_datasets):
    check_error(upload_raw(t1, make_npz(x=NPZ_X, y=NPZ_Y), filename=None), 422, "missing_field", "filename",
                ("?filename=",))


def test_csv_one_class(t1, no_new_datasets):
    check_error(upload_csv(t1, make_csv(classes=("only",)), target="label"), 422, "invalid_dataset", "file",
                ("single class",))


def test_csv_non_numeric_feature(t1, no_new_datasets):
    content = b"f1,f2,y\n1,2,0\n3,abc,1\n5,6,0\n"
    check_error(upload_csv(t1, content), 422, "invalid_dataset", "file", ("row 3", "'f2'", "'abc'", "number"))


@pytest.mark.parametrize("content,says", [
    (b"", ("header",)), (b"a,b\n", ("header",)), (b"a,b\n1,0\n2\n3,1\n", ("row 3",)),
    (b"a,b\n1,0\nnan,1\n3,1\n", ("finite",)), (b"a,b\n1,\n2,1\n3,0\n", ("empty",)), (b"\xff\xfe\x00a", ("csv",)),
    (b"a\n1\n2\n3\n", ("feature column",)),
])
def test_bad_csv(t1, no_new_datasets, content, says):
    check_error(upload_csv(t1, content), 422, "invalid_dataset", "file", says)


def test_csv_unknown_target_column(t1, no_new_datasets):
    check_error(upload_csv(t1, make_csv(), target="nope"), 422, "invalid_value", "target", ("'nope'", "f1, label"))


def test_csv_text_target_as_regression(t1, no_new_datasets):
    check_error(upload_csv(t1, make_csv(), target="label", task="regression"), 422, "invalid_value", "task",
                ("not numeric",))


def test_bad_task_field(t1, no_new_datasets):
    check_error(upload_csv(t1, make_csv(), task="clustering"), 422, "invalid_value", "task",
                ("classification", "regression"))


class _Evil:
    """Unpickling this creates a directory: proof that the server unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_npz_with_pickled_objects(t1, tmp_path, no_new_datasets):
    marker = tmp_path / "unpickled"
    x = np.empty(4, dtype=object)
    x[:] = [_Evil(str(marker)), 1, 2, 3]
    content = make_npz(x=x, y=np.arange(4))
    check_error(upload_raw(t1, content), 422, "invalid_dataset", "file", ("'x'", "objects", "never loaded"))
    assert not marker.exists()


def test_npz_pickled_object_behind_a_numeric_header(t1, tmp_path, no_new_datasets):
    """An archive whose member is a bare pickle (no .npy header) is refused without being unpickled."""
    import pickle
    import zipfile
    marker = tmp_path / "unpickled"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", pickle.dumps(_Evil(str(marker))))
        z.writestr("y.npy", pickle.dumps(_Evil(str(marker))))
    r = upload_raw(t1, buf.getvalue())
    check_error(r, 422, "invalid_dataset", "file")
    assert not marker.exists()


@pytest.mark.parametrize("arrays,says", [
    ({"x": NPZ_X}, ("no array 'y'", "x")),
    ({"y": NPZ_Y}, ("no array 'x'",)),
    ({"x": NPZ_X, "y": NPZ_Y[:10]}, ("40", "10")),
    ({"x": NPZ_X, "y": np.array(["a"] * 40)}, ("dtype",)),
    ({"x": np.full((40, 2), np.nan), "y": NPZ_Y}, ("nan",)),
    ({"x": np.float32(1.0), "y": np.int64(1)}, ("scalar",)),
    ({"x": NPZ_X, "y": -NPZ_Y - 1}, ("0 or more",)),
    ({"x": NPZ_X, "y": NPZ_Y * 10**9}, ("3000000000", "65536 classes", "regression")),
    ({"x": np.zeros((40, 0)), "y": NPZ_Y}, ("[40, 0]",)),
    ({"x": NPZ_X.astype(complex), "y": NPZ_Y}, ("complex",)),
])
def test_bad_npz(t1, no_new_datasets, arrays, says):
    check_error(upload_raw(t1, make_npz(**arrays)), 422, "invalid_dataset", "file", says)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 100])
def test_npz_not_an_archive(t1, no_new_datasets, content):
    check_error(upload_raw(t1, content), 422, "invalid_dataset", "file", (".npz",))


def test_upload_over_the_limit_with_content_length(t1, no_new_datasets):
    content = b"0" * (UPLOAD_LIMIT + 1)
    err = check_error(upload_raw(t1, content, filename="big.csv"), 413, None, ..., (str(UPLOAD_LIMIT),))
    assert err["code"] in ("upload_too_large", "request_too_large"), err


def test_upload_over_the_limit_chunked(t1, no_new_datasets):
    def chunks():
        for _ in range(UPLOAD_LIMIT // (64 << 10) + 2):
            yield b"1," * (32 << 10)
    err = check_error(upload_raw(t1, chunks(), filename="big.csv"), 413, None, ..., (str(UPLOAD_LIMIT),))
    assert err["code"] in ("upload_too_large", "request_too_large"), err


def test_multipart_upload_over_the_limit(t1, no_new_datasets):
    r = upload_csv(t1, b"1," * (UPLOAD_LIMIT // 2 + 10))
    err = check_error(r, 413, None, ..., (str(UPLOAD_LIMIT),))
    assert err["code"] in ("upload_too_large", "request_too_large"), err


def test_upload_just_under_the_limit_is_read(t1):
    """A CSV near the limit: the whole body is read (then judged on its content, not its size)."""
    row = b"1.0,2.0,0\n"
    content = b"a,b,y\n" + row * ((UPLOAD_LIMIT - 1000) // len(row))
    r = upload_csv(t1, content)
    check_error(r, 422, "invalid_dataset", "file", ("single class",))


def test_multipart_without_a_file(t1, no_new_datasets):
    r = t1.post("/v1/datasets", data={"target": "label"}, files={"other": ("x.csv", make_csv(), "text/csv")})
    check_error(r, 422, "missing_field", "file", ("'file'",))
    r = t1.post("/v1/datasets", data={"target": "label", "task": "classification"})
    check_error(r, 422, None, ..., ("file",))


def test_multipart_file_without_a_filename(t1):
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n").encode() + \
        make_csv() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    check_error(t1.post("/v1/datasets", content=body, headers=headers), 422, "missing_field", "filename",
                ("?filename=",))
    r = t1.post("/v1/datasets", content=body, headers=headers, params={"filename": "named.csv", "target": "label"})
    assert r.status_code == 201, r.text
    assert r.json()["filename"] == "named.csv" and r.json()["info"]["n_samples"] == 60
    assert t1.delete(f"/v1/datasets/{r.json()['id']}").status_code == 200


def test_multipart_with_two_files(t1, no_new_datasets):
    files = [("file", ("a.csv", make_csv(), "text/csv")), ("file", ("b.csv", make_csv(), "text/csv"))]
    check_error(t1.post("/v1/datasets", files=files), 422, "invalid_value", "file", ("one file",))


def test_multipart_broken(t1, no_new_datasets):
    r = t1.post("/v1/datasets", content=b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n",
                headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert 400 <= r.status_code < 500, r.text
    check_error(r, r.status_code)


def test_upload_needs_a_key(service, no_new_datasets):
    with service.client(None) as anon:
        check_error(upload_csv(anon, make_csv()), 401, "missing_api_key")


# ---- tenants -------------------------------------------------------------------------------------------------

def test_other_tenant_cannot_see_or_delete(t1, t2, csv_ds):
    ds = csv_ds[0]
    check_error(t2.get(f"/v1/datasets/{ds['id']}"), 404, "dataset_not_found", "dataset_id")
    check_error(t2.delete(f"/v1/datasets/{ds['id']}"), 404, "dataset_not_found", "dataset_id")
    assert ds["id"] not in {d["id"] for d in t2.get("/v1/datasets").json()["data"]}
    assert t1.get(f"/v1/datasets/{ds['id']}").status_code == 200


def job_spec(dataset_id: str, **data) -> dict:
    return {"name": "on-upload",
            "model": {"layers": [{"type": "Linear", "in_features": 3, "out_features": 8}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 8, "out_features": 2}]},
            "data": {"dataset": f"upload:{dataset_id}", "batch_size": 8, **data},
            "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.05},
            "training": {"epochs": 3, "seed": 0}, "resources": {"device": "cpu"}}


def test_other_tenant_cannot_train_on_it(t1, t2, csv_ds):
    ds = csv_ds[0]
    before = t2.get("/v1/jobs").json()["data"]
    for path in ("/v1/jobs", "/v1/jobs/validate"):
        check_error(t2.post(path, json=job_spec(ds["id"], target="label")), 422, "unknown_dataset", "data.dataset",
                    (ds["id"],))
    assert t2.get("/v1/jobs").json()["data"] == before
    assert t1.post("/v1/jobs/validate", json=job_spec(ds["id"], target="label")).status_code == 200


def test_spec_reads_the_upload_as_it_was_described(t1, csv_ds):
    """A spec that names no target trains on the target (and task) the upload was described with."""
    ds = csv_ds[0]
    r = t1.post("/v1/jobs/validate", json=job_spec(ds["id"]))
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["dataset"]["input_shape"] == ds["info"]["input_shape"] == [3]
    assert dry["dataset"]["classes"] == ds["info"]["classes"]
    assert dry["spec"]["data"]["target"] == "label" and dry["spec"]["data"]["task"] == "classification"
    # naming another target reads the file afresh: then the text column label is a feature, and refused
    body = job_spec(ds["id"], target="f3")
    check_error(t1.post("/v1/jobs/validate", json=body), 422, None, ..., ("'small'", "not a number"))


def test_spec_options_for_an_upload(t1, csv_ds):
    ds = csv_ds[0]
    check_error(t1.post("/v1/jobs/validate", json=job_spec(ds["id"], target="nope")), 422, "invalid_value",
                "data.target", ("'nope'",))
    check_error(t1.post("/v1/jobs/validate", json=job_spec(ds["id"], seq_len=4)), 422, "invalid_value",
                "data.seq_len")
    check_error(t1.post("/v1/jobs/validate", json=job_spec("ds_bad/../x")), 422, "unknown_dataset", "data.dataset")


# ---- training on an upload, then deleting it ------------------------------------------------------------------

def test_train_on_upload_predict_and_delete(service, t1, csv_ds):
    ds = csv_ds[0]
    r = t1.post("/v1/jobs", json=job_spec(ds["id"], target="label"))
    assert r.status_code == 201, r.text
    job = service.wait_for(r.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["dataset"]["info"]["input_shape"] == [3] and job["dataset"]["info"]["classes"] == ["large", "small"]
    pred = t1.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]})
    assert pred.status_code == 200, pred.text
    assert pred.json()["predicted"] == ["large", "small"]
    check_error(t1.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[1.0, 2.0]]}), 422, "invalid_value",
                "inputs", ("[3]",))

    assert ds["id"] in dataset_files(service)
    r = t1.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 200 and r.json() == {"id": ds["id"], "object": "dataset", "deleted": True}
    check_error(t1.get(f"/v1/datasets/{ds['id']}"), 404, "dataset_not_found")
    check_error(t1.delete(f"/v1/datasets/{ds['id']}"), 404, "dataset_not_found")
    assert ds["id"] not in dataset_files(service)
    assert ds["id"] not in {d["id"] for d in t1.get("/v1/datasets", params={"limit": 100}).json()["data"]}
    # a new job cannot name it; the trained one still predicts (its weights carry the preprocessing)
    check_error(t1.post("/v1/jobs", json=job_spec(ds["id"], target="label")), 422, "unknown_dataset",
                "data.dataset")
    assert t1.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": [[3.0, 0.0, 0.0]]}).status_code == 200
