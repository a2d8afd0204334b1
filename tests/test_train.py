"""workers.train.run_job against a real Redis (the embedded one) and a LocalStore in tmp_path: a job
trains to succeeded with metrics, checkpoints and weights that PyTorch loads; cancel, pause, a stale
attempt, a NaN loss, a timeout, a store error, a shutdown; a crashed or paused job resumes bitwise."""
import json
import threading

import numpy as np
import pytest

import engine
from redis_fixture import redis_url  # noqa: F401
from workers.build import build_model
from workers.checkpoints import list_checkpoints
from workers.datasets import load_dataset
from workers.records import Records
from workers.redis_server import connect
from workers.settings import Settings
from workers.spec import validate_spec
from workers.store import LocalStore, StoreError
from workers.train import LOST, best_weights_key, run_job, weights_key, weights_meta_key

SETTINGS = Settings(checkpoint_keep=3, metrics_flush_every=20, metrics_flush_s=0.5)


def iris_spec(epochs=4, dropout=False, **training):
    layers = [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "Tanh"}]
    if dropout:
        layers.append({"type": "Dropout", "p": 0.2})
    layers.append({"type": "Linear", "in_features": 16, "out_features": 3})
    return {"name": "iris", "model": {"layers": layers},
            "data": {"dataset": "iris", "batch_size": 16},          # 120 training samples: 8 steps per epoch
            "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.05},
            "scheduler": {"type": "StepLR", "step_size": 2, "gamma": 0.5},
            "training": {"epochs": epochs, "seed": 3, **training}}


class Crash(BaseException):
    """A simulated crash: not an Exception, so run_job records nothing for it (as with SIGKILL)."""


@pytest.fixture
def rec(redis_url):  # noqa: F811
    client = connect(redis_url)
    yield Records(client)
    client.close()


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "artifacts")


def _submit(rec, spec):
    job, _ = rec.create_job("t1", spec)
    return job["id"]


def _run(rec, store, job_id, **kw):
    return run_job(job_id, settings=SETTINGS, records=rec, store=store, **kw)


def _weights(store, key):
    return engine.load(store.local_path(key))


def test_job_succeeds_with_metrics_checkpoints_and_weights_that_torch_loads(rec, store):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open
    from safetensors.torch import load_file

    spec = iris_spec(epochs=4, checkpoint_every_epochs=2)
    job_id = _submit(rec, spec)
    assert _run(rec, store, job_id) == "succeeded"

    job = rec.get_job(job_id)
    assert job["status"] == "succeeded" and job["error"] is None and job["attempt"] == 1
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 32 and job["progress"]["epoch"] == 3 \
        and job["progress"]["epochs"] == 4
    assert job["phase"] is None                      # it was "saving" until it succeeded
    assert job["dataset"]["input_mean"] is not None and len(job["dataset"]["input_std"]) == 4
    assert job["result"]["metrics"]["val_accuracy"] >= 0.8
    m = rec.read_metrics(job_id)
    assert m["train"]["step"] == list(range(1, 33))
    assert m["train"]["epoch"] == [s // 8 for s in range(32)]
    assert all(np.isfinite(m["train"]["loss"])) and m["train"]["lr"][:16] == [0.05] * 16
    assert m["train"]["lr"][16] == 0.025  # StepLR(step_size=2) stepped per epoch
    assert m["validation"]["epoch"] == [0, 1, 2, 3] and m["validation"]["step"] == [8, 16, 24, 32]
    assert all(0 <= a <= 1 for a in m["validation"]["accuracy"])
    types = [e["type"] for e in rec.read_events(job_id)]
    assert types[:2] == ["queued", "started"] and types[-1] == "succeeded"
    assert types.count("epoch_end") == 4 and types.count("checkpoint") == 2
    assert [c.step for c in list_checkpoints(store, job_id)] == [32, 16]
    assert job["latest_checkpoint"]["step"] == 32

    # the weights: PyTorch's keys, loadable into the same model built with torch; predictions agree
    path = store.local_path(weights_key(job_id))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["spec"])["training"]["epochs"] == 4
    assert json.loads(meta["input_mean"]) == job["dataset"]["input_mean"]
    assert json.loads(meta["classes"]) == job["dataset"]["info"]["classes"]
    assert json.loads(meta["metrics"]) == job["result"]["metrics"] and json.loads(meta["which"]) == "final"
    sidecar = json.loads(store.read(weights_meta_key(job_id)))
    assert sidecar["input_std"] == job["dataset"]["input_std"] and sidecar["files"]["best"] == best_weights_key(job_id)

    sd = load_file(str(path))
    assert sorted(sd) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    tmodel.load_state_dict(sd)
    model = build_model(validate_spec(spec))
    model.load_state_dict(_weights(store, weights_key(job_id)))
    model.eval()
    x = load_dataset(validate_spec(spec).data, seed=3).val.tensors[0]
    with engine.no_grad():
        ours = model(x).numpy()
    with torch.no_grad():
        theirs = tmodel(torch.from_numpy(x.numpy())).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    tmodel.load_state_dict(load_file(str(store.local_path(best_weights_key(job_id)))))  # best loads too


def test_cancel_ends_within_one_step(rec, store):
    job_id = _submit(rec, iris_spec(epochs=200))
    seen = []

    def on_step(s):
        seen.append(s["step"])
        if s["step"] == 3:
            t = threading.Thread(target=rec.request_cancel, args=(job_id,))
            t.start()
            t.join()
    assert _run(rec, store, job_id, on_step=on_step) == "cancelled"
    assert seen == [1, 2, 3]  # step 4's lease check saw the cancel and ended the run
    job = rec.get_job(job_id)
    assert job["status"] == "cancelled" and [t["status"] for t in job["status_transitions"]][-2:] == \
        ["cancelling", "cancelled"]
    assert rec.read_metrics(job_id)["train"]["step"] == [1, 2, 3, 4]
    assert rec.read_events(job_id)[-1]["type"] == "cancelled"
    assert not store.exists(weights_key(job_id))


def test_a_stale_attempt_stops_without_writing(rec, store):
    job_id = _submit(rec, iris_spec(epochs=200))
    before = {}

    def on_step(s):
        if s["step"] == 5:
            rec.acquire_attempt(job_id, "another-worker")  # another worker took the job over
            before["metrics"] = rec.r.xlen(rec.metrics_key(job_id))
            before["events"] = rec.r.xlen(rec.events_key(job_id))
            before["job"] = rec.r.hgetall(rec.job_key(job_id))
    assert _run(rec, store, job_id, on_step=on_step, loss_sync_every=4) == LOST
    assert rec.r.xlen(rec.metrics_key(job_id)) == before["metrics"]
    assert rec.r.xlen(rec.events_key(job_id)) == before["events"]
    assert rec.r.hgetall(rec.job_key(job_id)) == before["job"]
    job = rec.get_job(job_id)
    assert job["status"] == "running" and job["attempt"] == job["lease"] == 2
    assert list_checkpoints(store, job_id) == [] and not store.exists(weights_key(job_id))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings on the way to NaN
def test_a_nan_loss_fails_the_job_with_its_step(rec, store):
    spec = {"model": {"layers": [{"type": "Linear", "in_features": 8, "out_features": 16}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 16, "out_features": 1}]},
            "data": {"dataset": "regression", "n_samples": 200, "batch_size": 16}, "loss": {"type": "MSELoss"},
            "optimizer": {"type": "SGD", "lr": 1e10}, "training": {"epochs": 5, "seed": 0}}
    job_id = _submit(rec, spec)
    assert _run(rec, store, job_id) == "failed"
    job = rec.get_job(job_id)
    assert job["error"]["code"] == "nan_loss"
    train = rec.read_metrics(job_id)["train"]
    bad = train["step"][train["loss"].index(None)]  # non-finite losses are stored as null
    assert train["step"][-1] == bad and f"at step {bad} " in job["error"]["message"]
    event = rec.read_events(job_id)[-1]
    assert event["type"] == "failed" and event["data"]["step"] == bad
    assert "Traceback" not in job["error"]["message"]


@pytest.mark.parametrize("how", ["crash_mid_epoch", "crash_at_epoch_end", "pause"])
def test_resume_gives_the_uninterrupted_result(rec, store, how):
    """Shuffling, dropout (the global RNG), Adam, a step-interval scheduler and step checkpoints."""
    spec = iris_spec(epochs=4, dropout=True, checkpoint_every_epochs=None, checkpoint_every_steps=4)
    spec["scheduler"] = {"type": "ExponentialLR", "gamma": 0.98, "interval": "step"}
    reference = _submit(rec, spec)
    assert _run(rec, store, reference) == "succeeded"

    job_id = _submit(rec, spec)
    if how == "pause":
        def on_step(s):
            if s["step"] == 8:  # the epoch's last batch: seen by the check after the epoch's end work
                rec.request_pause(job_id)
        assert _run(rec, store, job_id, on_step=on_step) == "paused"
        assert rec.get_job(job_id)["status"] == "paused"
        assert (list_checkpoints(store, job_id)[0].step, list_checkpoints(store, job_id)[0].epoch) == (8, 1)
        rec.resume(job_id)
    else:
        # checkpoints every 4 steps: 12 is mid-epoch; 16 ends epoch 1, so it is taken after the epoch's end
        crash_at, expected = (14, (12, 1)) if how == "crash_mid_epoch" else (18, (16, 2))

        def on_step(s):
            if s["step"] == crash_at:
                raise Crash()
        with pytest.raises(Crash):
            _run(rec, store, job_id, on_step=on_step, loss_sync_every=3)
        latest = list_checkpoints(store, job_id)[0]
        assert (latest.step, latest.epoch) == expected
        assert rec.get_job(job_id)["status"] == "running"  # as a dead worker leaves it
    engine.manual_seed(999)  # a new process: the checkpoint must restore the RNG
    assert _run(rec, store, job_id) == "succeeded"

    for key in (weights_key, best_weights_key):
        a, b = _weights(store, key(reference)), _weights(store, key(job_id))
        for name in a:
            assert np.array_equal(a[name].numpy(), b[name].numpy()), name
    m_ref, m = rec.read_metrics(reference), rec.read_metrics(job_id)
    assert m["train"]["step"] == list(range(1, 33))  # nothing duplicated, nothing missing
    assert m == m_ref
    job = rec.get_job(job_id)
    assert job["attempt"] == 2 and job["result"]["metrics"] == rec.get_job(reference)["result"]["metrics"]
    if how != "pause":
        assert "interrupted" in [e["type"] for e in rec.read_events(job_id)]


def test_max_runtime_checkpoints_then_fails_with_timeout(rec, store):
    job_id = _submit(rec, iris_spec(epochs=1000, max_runtime_s=0.3))
    assert _run(rec, store, job_id) == "failed"
    job = rec.get_job(job_id)
    assert job["error"]["code"] == "timeout"
    step = rec.read_events(job_id)[-1]["data"]["step"]
    assert list_checkpoints(store, job_id)[0].step == step == job["latest_checkpoint"]["step"]
    assert 0 < step < 8000


def test_store_errors_fail_the_job_with_storage_error(rec, tmp_path):
    class FullStore(LocalStore):
        def open_write(self, key):
            raise StoreError(f"could not write artifact {key!r}: the disk is full")
    job_id = _submit(rec, iris_spec(epochs=2))
    assert _run(rec, FullStore(tmp_path / "a"), job_id) == "failed"
    error = rec.get_job(job_id)["error"]
    assert error["code"] == "storage_error" and "the disk is full" in error["message"]


def test_shutdown_checkpoints_and_hands_the_job_back(rec, store):
    job_id = _submit(rec, iris_spec(epochs=50))
    stop = threading.Event()

    def on_step(s):
        if s["step"] == 3:
            stop.set()
    assert _run(rec, store, job_id, shutdown=stop, on_step=on_step) == "queued"
    job = rec.get_job(job_id)
    assert job["status"] == "queued" and job["restarts"] == 1
    assert list_checkpoints(store, job_id)[0].step == 4
    assert rec.read_events(job_id)[-2]["type"] == "interrupted"


def test_a_spec_that_no_longer_validates_fails_cleanly(rec, store):
    spec = iris_spec()
    spec["data"]["dataset"] = "no_such_dataset"
    job_id = _submit(rec, spec)
    assert _run(rec, store, job_id) == "failed"
    assert rec.get_job(job_id)["error"]["code"] in ("invalid_spec", "dataset_error")


def test_a_job_cancelled_before_it_starts_is_not_run(rec, store):
    job_id = _submit(rec, iris_spec())
    rec.request_cancel(job_id)
    assert _run(rec, store, job_id) == "cancelled"
    assert rec.get_job(job_id)["attempt"] == 0
    assert _run(rec, store, "job_gone") == LOST


def test_reduce_lr_on_plateau_watches_the_validation_loss(rec, store):
    spec = iris_spec(epochs=3)
    spec["scheduler"] = {"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5, "threshold": 10.0}  # an impossible threshold: every check is a plateau
    job_id = _submit(rec, spec)
    assert _run(rec, store, job_id) == "succeeded", rec.get_job(job_id)["error"]
    lr = rec.read_metrics(job_id)["train"]["lr"]
    assert lr[0] == lr[7] == 0.05 and lr[8] == 0.025 and lr[16] == 0.0125
