"""fita.Client against the live service (real Redis, the API over HTTP, a real RQ worker): submitting
dicts, YAML files and YAML text, waiting (event stream, progress line, timeout), metrics, events,
checkpoints, downloads that safetensors loads, predictions, cancel, datasets, and the server's errors
raised as exceptions that carry its code, message and param."""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import yaml

from fita import AuthError, Client, Conflict, FitaError, Job, NotFound, ValidationError
from service_fixture import KEYS, service  # noqa: F401

IRIS = {"name": "iris-client",
        "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "Tanh"},
                             {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16},
        "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 3, "seed": 1, "checkpoint_every_epochs": 1}, "resources": {"device": "cpu"}}
EPOCHS = 4


def iris(**training) -> dict:
    spec = copy.deepcopy(IRIS)
    spec["training"].update(training)
    return spec


@pytest.fixture(scope="module")
def client(service):
    with Client(service.url, KEYS["t1"]) as c:
        yield c


@pytest.fixture(scope="module")
def trained(client) -> Job:
    """One finished job that the read-only tests look at."""
    return client.submit(iris(epochs=EPOCHS)).wait(timeout=180)


def test_a_dict_spec_trains_to_success(trained):
    assert isinstance(trained, Job) and trained.status == "succeeded" and trained.done, trained.error
    assert trained.progress["step"] == trained.progress["total_steps"] == EPOCHS * 8
    assert trained.name == "iris-client" and trained.result["metrics"]["val_accuracy"] > 0
    assert trained.estimate["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert trained.to_dict()["id"] == trained.id and "client" not in trained.to_dict()


def test_yaml_files_and_text_are_sent_as_yaml(client, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(iris(epochs=2) | {"name": "from-a-file"}))
    text = yaml.safe_dump(iris(epochs=2) | {"name": "from-text"})
    jobs = [client.submit(path), client.submit(str(path)), client.submit(text)]
    assert [j.spec["name"] for j in jobs] == ["from-a-file", "from-a-file", "from-text"]
    assert all(j.wait(timeout=180).status == "succeeded" for j in jobs)


def test_a_missing_spec_file_is_not_sent_as_text(client, tmp_path):
    with pytest.raises(FileNotFoundError):
        client.submit(str(tmp_path / "nope.yaml"))


def test_idempotency_key_returns_the_same_job(client):
    first = client.submit(iris(epochs=1), idempotency_key="client-test-1")
    again = client.submit(iris(epochs=1), idempotency_key="client-test-1")
    assert again.id == first.id
    first.wait(timeout=180)


def test_wait_shows_a_progress_line(client, capsys):
    job = client.submit(iris(epochs=2)).wait(progress=True, poll_s=0.1, timeout=180)
    err = capsys.readouterr().err
    assert job.status == "succeeded"
    last = err.strip().splitlines()[-1]    # not a terminal: one line per epoch and status
    assert last.startswith("succeeded") and "epoch 2/2" in last and f"{2 * 8}/{2 * 8}" in last
    assert "loss" in last and "val_acc" in last and "samples/s" in last


def test_final_train_loss_is_the_last_epochs_mean_as_everywhere(trained):
    """result.metrics.train_loss, the best weights' train_loss and epoch_end's train_loss are one quantity:
    an epoch's mean training loss."""
    last_epoch = [e for e in trained.events() if e["type"] == "epoch_end"][-1]
    assert trained.result["metrics"]["train_loss"] == last_epoch["data"]["train_loss"]
    best = trained.result["best"]
    best_epoch = [e for e in trained.events() if e["type"] == "epoch_end" and e["data"]["epoch"] == best["epoch"]]
    assert best["metrics"]["train_loss"] == best_epoch[0]["data"]["train_loss"]


def test_metrics_are_columns(trained):
    m = trained.metrics()
    assert set(m) == {"train", "validation"}
    assert set(m["train"]) == {"step", "epoch", "loss", "lr"}
    assert m["train"]["step"] == list(range(1, EPOCHS * 8 + 1)) and len(m["train"]["loss"]) == EPOCHS * 8
    assert m["validation"]["epoch"] == list(range(EPOCHS)) and len(m["validation"]["accuracy"]) == EPOCHS


def test_events_listed_and_followed(trained):
    events = list(trained.events())
    types = [e["type"] for e in events]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded"
    assert types.count("epoch_end") == EPOCHS and types.count("checkpoint") == EPOCHS
    # following a finished job replays its log and ends
    assert [e["id"] for e in trained.events(follow=True)] == [e["id"] for e in events]


def test_checkpoints_and_downloads_load_with_safetensors(trained, tmp_path, monkeypatch):
    from safetensors.numpy import load_file
    checkpoints = trained.checkpoints()
    assert [c["step"] for c in checkpoints] == [32, 24, 16]        # newest first, the last 3 kept

    final = load_file(trained.download(tmp_path / "final.safetensors"))
    assert set(final) == {"0.weight", "0.bias", "2.weight", "2.bias"} and final["0.weight"].shape == (16, 4)
    best = load_file(trained.download(tmp_path / "best.safetensors", which="best"))
    assert set(best) == set(final)
    state = load_file(trained.download(tmp_path / "ckpt.safetensors", checkpoint=24))
    assert any(k.startswith("model.") for k in state), sorted(state)[:5]
    np.testing.assert_array_equal(state["model.0.weight"].shape, (16, 4))

    monkeypatch.chdir(tmp_path)                 # no path: the server's file name, here
    path = trained.download()
    assert path.name == f"{trained.id}-final.safetensors" and path.is_file()
    assert not list(tmp_path.glob(".*.part"))


def test_predict(trained):
    from sklearn.datasets import load_iris
    data = load_iris()
    out = trained.predict(data.data[:5].tolist())
    assert out["classes"] == ["setosa", "versicolor", "virginica"]
    assert len(out["predicted"]) == 5 and set(out["predicted"]) <= set(out["classes"])
    np.testing.assert_allclose(np.sum(out["probabilities"], axis=1), 1.0, rtol=1e-5)
    assert trained.predict(data.data[:1].tolist(), which="best")["which"] == "best"


def test_cancel_a_long_job(client):
    job = client.submit(iris(epochs=5000))
    with pytest.raises(TimeoutError, match=job.id):
        job.wait(timeout=0.5)
    deadline = time.monotonic() + 120
    while job.refresh().status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.cancel().status in ("cancelling", "cancelled")
    assert job.wait(timeout=120).status == "cancelled"
    assert job.progress["step"] < job.progress["total_steps"]
    with pytest.raises(Conflict) as e:
        job.cancel()
    assert e.value.status == 409 and e.value.code == "invalid_state" and "cancelled" in e.value.message
    with pytest.raises(Conflict):
        job.predict([[1, 2, 3, 4]])
    assert job.delete() == {"id": job.id, "object": "training.job", "deleted": True}
    with pytest.raises(NotFound):
        job.refresh()


def test_pause_and_resume(client):
    job = client.submit(iris(epochs=5000))
    deadline = time.monotonic() + 120
    while job.refresh().status == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    job.pause()
    while job.refresh().status not in ("paused", "succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status == "paused"
    assert job.resume().status == "queued"
    job.cancel()
    assert job.wait(timeout=120).status == "cancelled"


def test_validate(client):
    result = client.validate(iris())
    assert result["parameters"] == 131 and result["steps_per_epoch"] == 8 and result["total_steps"] == 24
    with pytest.raises(ValidationError) as e:
        client.validate(yaml.safe_dump(iris()).replace("in_features: 4", "in_features: 5"))
    assert e.value.param == "model.layers[0]"


def test_jobs_iterates_every_page(client, trained):
    every = [j.id for j in client.jobs(limit=100)]
    paged = [j.id for j in client.jobs(limit=1)]
    assert paged == every and len(every) >= 2 and trained.id in every
    assert all(j.status == "succeeded" for j in client.jobs(status="succeeded", limit=2))
    assert isinstance(client.job(trained.id), Job) and client.job(trained.id).client is client


# ---- errors -------------------------------------------------------------------------------------

def test_not_found_carries_the_servers_error(client):
    with pytest.raises(NotFound) as e:
        client.job("job_does_not_exist")
    err = e.value
    assert isinstance(err, FitaError) and err.status == 404
    assert (err.code, err.param) == ("job_not_found", "job_id") and "job_does_not_exist" in err.message
    assert str(err) == f"{err.message} (job_not_found, param job_id)"


def test_a_bad_spec_is_a_validation_error_naming_the_field(client):
    spec = iris()
    spec["model"]["layers"][0]["in_features"] = 5
    with pytest.raises(ValidationError) as e:
        client.submit(spec)
    assert e.value.status == 422 and e.value.code == "shape_mismatch" and e.value.param == "model.layers[0]"
    assert "in_features=5" in e.value.message


def test_a_bad_key_is_an_auth_error(service):
    with Client(service.url, "not-a-key") as c, pytest.raises(AuthError) as e:
        c.job("job_x")
    assert e.value.status == 401 and e.value.code == "invalid_api_key"


def test_another_tenants_job_is_not_found(service, trained):
    with Client(service.url, KEYS["t2"]) as c, pytest.raises(NotFound):
        c.job(trained.id)


def test_an_unreachable_server_is_an_error_too():
    from workers.redis_server import free_port
    with Client(f"http://127.0.0.1:{free_port()}", "k", timeout=5) as c, pytest.raises(FitaError) as e:
        c.job("job_x")
    assert e.value.status is None and e.value.code == "connection_error" and "fita up" in e.value.message


def test_defaults_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FITA_SERVER", "http://example.invalid:9/")
    monkeypatch.delenv("FITA_API_KEY", raising=False)
    monkeypatch.setenv("FITA_DATA_DIR", str(tmp_path))
    (tmp_path / "local.key").write_text("the-local-key\n")
    c = Client()
    assert c.base_url == "http://example.invalid:9" and c.api_key == "the-local-key"
    monkeypatch.setenv("FITA_API_KEY", "from-env")
    assert Client().api_key == "from-env" and Client(api_key="given").api_key == "given"


# ---- datasets -----------------------------------------------------------------------------------

def test_upload_a_csv_and_train_on_it(client, tmp_path):
    rng = np.random.default_rng(0)
    lines = ["a,b,label"] + [f"{(2 * (i % 2) - 1) * 3 + rng.standard_normal():.3f},{rng.standard_normal():.3f},"
                             f"{'yes' if i % 2 else 'no'}" for i in range(60)]
    path = tmp_path / "toy.csv"
    path.write_text("\n".join(lines) + "\n")
    ds = client.upload_dataset(path, target="label")
    assert ds["id"].startswith("ds_") and ds["task"] == "classification" and ds["filename"] == "toy.csv"
    assert ds["info"]["classes"] == ["no", "yes"] and ds["info"]["input_shape"] == [2]
    assert ds["id"] in [d["id"] for d in client.datasets()]
    assert client.dataset(ds["id"]) == ds
    assert "iris" in [d["id"] for d in client.datasets(builtin=True)]

    spec = iris(epochs=3)
    spec["data"] = {"dataset": f"upload:{ds['id']}", "batch_size": 8}
    spec["model"]["layers"][0]["in_features"] = 2
    spec["model"]["layers"][-1]["out_features"] = 2
    job = client.submit(spec).wait(timeout=180)
    assert job.status == "succeeded", job.error
    assert job.predict([[3.0, 0.0], [-3.0, 0.0]])["predicted"] == ["yes", "no"]

    assert client.delete_dataset(ds["id"])["deleted"] is True
    with pytest.raises(NotFound):
        client.dataset(ds["id"])
    with pytest.raises(Conflict) as e:
        client.delete_dataset("iris")
    assert e.value.code == "builtin_dataset"


def test_a_bad_upload_names_the_field(client, tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ValidationError) as e:
        client.upload_dataset(path, target="nope")
    assert e.value.param == "target"
