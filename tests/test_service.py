"""The service end to end, as real processes: a real Redis, the API over real HTTP (`fita api`) and real RQ
worker processes (`fita worker`). Submit -> queued -> running -> succeeded with metrics, events (also
as server-sent events), checkpoints and weights that PyTorch loads and that predict what /predict does;
cancel, pause/resume, a failing job, queue routing, a worker's warm shutdown and a killed worker."""
import copy
import hashlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

import engine
from service_fixture import ROOT, running_past, service, submit, wait_gone, work_process_of  # noqa: F401
from workers.queue import forget_worker, rq_connection

IRIS = {"name": "iris-small",
        "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "Tanh"},
                             {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16},
        "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 3, "seed": 1}, "resources": {"device": "cpu"}}


def iris(epochs=3, **training):
    spec = copy.deepcopy(IRIS)
    spec["training"].update(epochs=epochs, **training)
    return spec


def weights_of(service, job_id, which="final"):
    import safetensors.numpy
    with service.client() as c:
        r = c.get(f"/v1/jobs/{job_id}/weights", params={"which": which})
    assert r.status_code == 200, r.text
    return safetensors.numpy.load(r.content)


# ---- the whole life of a job -------------------------------------------------------------------

def test_yaml_job_trains_and_everything_about_it_is_served(service):
    body = (ROOT / "configs" / "iris.yaml").read_text()
    with service.client() as c:
        r = c.post("/v1/jobs", content=body, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["status"] in ("queued", "running") and job["object"] == "training.job"
        assert job["spec"]["training"]["epochs"] == 50 and job["estimate"]["parameters"] == 4 * 16 + 16 + 16 * 3 + 3
        done = service.wait_for(job["id"])
        assert done["status"] == "succeeded", done["error"]
        assert [t["status"] for t in done["status_transitions"]] == ["queued", "running", "succeeded"]
        total = done["progress"]["total_steps"]
        assert total == 50 * 8 and done["progress"]["step"] == total
        assert done["latest_metrics"]["validation"]["accuracy"] >= 0.85
        assert done["dataset"]["input_mean"] is not None

        # the loss curve, column-wise, in CSV and by step range
        m = c.get(f"/v1/jobs/{job['id']}/metrics").json()
        assert m["train"]["step"] == list(range(1, total + 1))
        assert len(m["train"]["loss"]) == total and all(np.isfinite(m["train"]["loss"]))
        assert m["validation"]["epoch"] == list(range(50)) and len(m["validation"]["accuracy"]) == 50
        assert m["train"]["loss"][-1] < m["train"]["loss"][0]
        part = c.get(f"/v1/jobs/{job['id']}/metrics", params={"step_from": 10, "step_to": 19}).json()
        assert part["train"]["step"] == list(range(10, 20))
        csv = c.get(f"/v1/jobs/{job['id']}/metrics", params={"format": "csv"})
        assert csv.headers["content-type"].startswith("text/csv")
        lines = csv.text.strip().splitlines()
        assert lines[0].split(",")[:3] == ["split", "step", "epoch"] and len(lines) == 1 + total + 50

        # the event log
        events = c.get(f"/v1/jobs/{job['id']}/events").json()["data"]
        types = [e["type"] for e in events]
        assert types[:2] == ["queued", "started"] and types[-1] == "succeeded"
        assert types.count("epoch_end") == 50 and types.count("checkpoint") == 5   # every 10 epochs
        assert [e["id"] for e in events] == sorted(e["id"] for e in events)
        later = c.get(f"/v1/jobs/{job['id']}/events", params={"after": events[-3]["id"]}).json()["data"]
        assert [e["id"] for e in later] == [e["id"] for e in events[-2:]]

        # checkpoints: the newest 3 are kept; each downloads with its checksum
        ckpts = c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"]
        assert [k["step"] for k in ckpts] == [400, 320, 240]
        data = c.get(f"/v1/jobs/{job['id']}/checkpoints/320")
        assert data.status_code == 200 and len(data.content) == ckpts[1]["bytes"]
        assert hashlib.sha256(data.content).hexdigest() == ckpts[1]["sha256"]
        state = engine.load(io.BytesIO(data.content))
        assert state["step"] == 320

    _weights_load_in_torch_and_match_predict(service, done)

    with service.client() as c:
        assert c.delete(f"/v1/jobs/{job['id']}").json() == {"id": job["id"], "object": "training.job",
                                                           "deleted": True}
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}/weights").status_code == 404
    assert not (service.data_dir / "artifacts" / "jobs" / job["id"]).exists()


def _weights_load_in_torch_and_match_predict(service, job):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open
    from safetensors.torch import load_file
    from sklearn.datasets import load_iris

    with service.client() as c:
        raw = c.get(f"/v1/jobs/{job['id']}/weights").content
    path = service.data_dir / f"{job['id']}.safetensors"
    path.write_bytes(raw)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    model.load_state_dict(load_file(path))              # PyTorch's own keys, strict
    with safe_open(path, "np") as f:
        meta = {k: json.loads(v) for k, v in f.metadata().items() if k in ("input_mean", "input_std", "spec",
                                                                              "classes")}
    assert meta["spec"]["name"] == "iris" and meta["classes"] is not None
    x = load_iris().data[:20]
    with torch.no_grad():
        ours = model(torch.tensor((x - np.array(meta["input_mean"])) / np.array(meta["input_std"]),
                                  dtype=torch.float32)).numpy()
    with service.client() as c:
        served = c.post(f"/v1/jobs/{job['id']}/predict", json={"inputs": x.tolist()}).json()
    np.testing.assert_allclose(np.array(served["outputs"]), ours, rtol=1e-5, atol=1e-5)
    assert np.allclose(np.array(served["probabilities"]).sum(1), 1.0)
    assert served["predicted"] == [meta["classes"][i] for i in ours.argmax(1)]
    names = load_iris().target_names[load_iris().target[:20]].tolist()
    assert meta["classes"] == ["setosa", "versicolor", "virginica"] and served["predicted"] == names


def test_idempotent_submit_and_paging(service):
    with service.client("t2") as c:
        first = c.post("/v1/jobs", json=iris(), headers={"Idempotency-Key": "abc"})
        again = c.post("/v1/jobs", json=iris(), headers={"Idempotency-Key": "abc"})
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
        other = c.post("/v1/jobs", json=iris(), headers={"Idempotency-Key": "xyz"}).json()
        ids = [other["id"], first.json()["id"]]                       # newest first
        page = c.get("/v1/jobs", params={"limit": 1}).json()
        assert [j["id"] for j in page["data"]] == ids[:1] and page["has_more"] and page["last_id"] == ids[0]
        rest = c.get("/v1/jobs", params={"limit": 1, "after": page["last_id"]}).json()
        assert [j["id"] for j in rest["data"]] == ids[1:] and not rest["has_more"]
        for job_id in ids:
            service.wait_for(job_id, tenant="t2")
        assert {j["id"] for j in c.get("/v1/jobs", params={"status": "succeeded"}).json()["data"]} == set(ids)
        assert c.get("/v1/jobs", params={"status": "running"}).json()["data"] == []


# ---- stopping jobs -------------------------------------------------------------------------------

def test_cancel_a_running_job(service):
    job = submit(service, iris(epochs=5000, checkpoint_every_steps=25))
    service.wait_for(job["id"], running_past(60))
    with service.client() as c:
        r = c.post(f"/v1/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled")
        done = service.wait_for(job["id"])
        assert done["status"] == "cancelled"
        assert done["progress"]["step"] < done["progress"]["total_steps"]
        assert "cancelled" in [e["type"] for e in c.get(f"/v1/jobs/{job['id']}/events").json()["data"]]
        assert c.get(f"/v1/jobs/{job['id']}/checkpoints").json()["data"], "checkpoints are kept"
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert submit_and_wait(service, iris())["status"] == "succeeded"     # the worker is free again


def test_cancel_stops_a_job_that_does_not_answer(service):
    """The training loop cannot see the cancel (its process is frozen with SIGSTOP): after the grace
    period (5 s here) the sweep has RQ kill the work process and the worker records the job cancelled."""
    job = submit(service, iris(epochs=5000))
    service.wait_for(job["id"], running_past(20))
    worker = next(w for w in service.workers if w.poll() is None)
    horse = work_process_of(worker.pid)
    os.kill(horse, signal.SIGSTOP)
    try:
        with service.client() as c:
            assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelling"
        done = service.wait_for(job["id"], timeout=60)
    finally:
        try:
            os.kill(horse, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert done["status"] == "cancelled"
    assert done["status_transitions"][-1]["time"] - done["status_transitions"][-2]["time"] >= 5   # the grace
    wait_gone(horse)
    assert submit_and_wait(service, iris())["status"] == "succeeded"     # the worker goes on serving


def submit_and_wait(service, spec):
    return service.wait_for(submit(service, spec)["id"])


def test_a_failing_job_reports_its_error(service):
    spec = {"model": {"layers": [{"type": "Linear", "in_features": 8, "out_features": 16}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 16, "out_features": 1}]},
            "data": {"dataset": "regression", "n_samples": 200, "batch_size": 16}, "loss": {"type": "MSELoss"},
            "optimizer": {"type": "SGD", "lr": 1e10}, "training": {"epochs": 5, "seed": 0}}   # diverges to NaN
    done = submit_and_wait(service, spec)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "nan_loss" and "step" in done["error"]["message"]
    with service.client() as c:
        failed = [e for e in c.get(f"/v1/jobs/{done['id']}/events").json()["data"] if e["type"] == "failed"]
        assert failed and failed[0]["data"]["error"]["code"] == "nan_loss"
        r = c.get(f"/v1/jobs/{done['id']}/weights")
        assert r.status_code == 404 and "failed" in r.json()["error"]["message"]


def test_pause_and_resume_continue_bitwise(service):
    """A paused job checkpoints, frees the worker and resumes where it stopped: its final weights equal an
    uninterrupted run's, bit for bit (CPU, fixed seed)."""
    spec = iris(epochs=200, checkpoint_every_epochs=50)
    spec["model"]["layers"].insert(2, {"type": "Dropout", "p": 0.1})      # the RNG state must resume too
    paused = submit(service, spec)
    service.wait_for(paused["id"], running_past(100))
    with service.client() as c:
        assert c.post(f"/v1/jobs/{paused['id']}/pause").status_code == 200
        state = service.wait_for(paused["id"], lambda j: j["status"] in ("paused", "succeeded"))
        assert state["status"] == "paused", "the job ended before the pause was seen; make it longer"
        assert c.post(f"/v1/jobs/{paused['id']}/resume").json()["status"] == "queued"
    done = service.wait_for(paused["id"])
    assert done["status"] == "succeeded"
    types = [e["type"] for e in service.client().get(f"/v1/jobs/{paused['id']}/events").json()["data"]]
    assert "paused" in types and types.count("started") == 2
    reference = submit_and_wait(service, spec)
    a, b = weights_of(service, paused["id"]), weights_of(service, reference["id"])
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    with service.client() as c:
        ma = c.get(f"/v1/jobs/{paused['id']}/metrics").json()["train"]
        mb = c.get(f"/v1/jobs/{reference['id']}/metrics").json()["train"]
    assert ma["step"] == mb["step"] and ma["loss"] == mb["loss"]


# ---- queues ----------------------------------------------------------------------------------------

def test_queue_routing_and_a_live_event_stream(service):
    with service.client() as c:
        auto = submit(service, {**iris(), "resources": {"device": "auto"}})
        assert auto["queue"] == "cpu"                       # no GPU worker registered
        gpu = submit(service, {**iris(), "resources": {"device": "cuda"}})
        assert gpu["queue"] == "gpu"
        assert service.wait_for(auto["id"])["status"] == "succeeded"
        time.sleep(1.0)
        assert c.get(f"/v1/jobs/{gpu['id']}").json()["status"] == "queued"   # waits for a GPU worker

        # server-sent events: the backlog, then keep-alives while nothing happens, then the cancel
        seen, pings = [], 0
        with c.stream("GET", f"/v1/jobs/{gpu['id']}/events", headers={"Accept": "text/event-stream"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith(": keep-alive"):
                    pings += 1
                    if pings == 2:
                        c.post(f"/v1/jobs/{gpu['id']}/cancel")
                elif line.startswith("id: "):
                    seen.append(line[4:])
                elif line.startswith("data: "):
                    if json.loads(line[6:])["type"] == "cancelled":
                        break
        assert len(seen) == 2 and pings >= 2                  # queued, cancelled
        # resuming from Last-Event-ID sends only what came after it, and ends (the job is final)
        with c.stream("GET", f"/v1/jobs/{gpu['id']}/events",
                      headers={"Accept": "text/event-stream", "Last-Event-ID": seen[0]}) as r:
            ids = [line[4:] for line in r.iter_lines() if line.startswith("id: ")]
        assert ids == seen[1:]


@pytest.mark.cuda
def test_gpu_queue_trains_on_a_gpu_worker(service):
    worker = service.start_worker(queues="gpu", name=f"test-gpu-{os.getpid()}")
    try:
        service.wait_ready("gpu")
        job = submit(service, {**iris(), "resources": {"device": "cuda"}})
        assert job["queue"] == "gpu"
        done = service.wait_for(job["id"])
        assert done["status"] == "succeeded" and done["worker"].startswith("test-gpu")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


# ---- workers that go away ----------------------------------------------------------------------------

def test_worker_shutdown_hands_the_job_back_and_a_killed_worker_is_recovered(service):
    """SIGTERM (a deploy): the job checkpoints, goes back to the queue and the worker exits; the next
    worker continues it. SIGKILL: the work process dies with its worker (no orphan writes on), the
    sweep re-queues the job once the worker is known dead, and it still ends bitwise as an
    uninterrupted run does."""
    spec = iris(epochs=300, checkpoint_every_steps=40)
    job = submit(service, spec)
    service.wait_for(job["id"], running_past(100))
    first = service.workers[0]
    first.send_signal(signal.SIGTERM)
    first.wait(60)
    state = service.wait_for(job["id"], lambda j: j["status"] != "running")
    assert state["status"] == "queued" and state["restarts"] == 1

    second = service.start_worker()
    service.wait_for(job["id"], lambda j: j["attempt"] >= 2 and running_past(state["progress"]["step"] + 300)(j))
    horse = work_process_of(second.pid)
    second.send_signal(signal.SIGKILL)
    second.wait(10)
    wait_gone(horse)                                          # PR_SET_PDEATHSIG took the work process down
    forget_worker(rq_connection(service.redis_url), second.worker_name)   # as `fita up` does when it reaps one
    state = service.wait_for(job["id"], lambda j: j["status"] != "running")
    assert state["status"] == "queued" and state["restarts"] == 2

    service.start_worker()
    done = service.wait_for(job["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 3
    with service.client() as c:
        reasons = [e["data"]["reason"] for e in c.get(f"/v1/jobs/{job['id']}/events").json()["data"]
                   if e["type"] == "interrupted"]
        assert len(reasons) == 2 and "died" in reasons[1]
        metrics = c.get(f"/v1/jobs/{job['id']}/metrics").json()["train"]
    assert metrics["step"] == list(range(1, done["progress"]["total_steps"] + 1))   # no gaps, no repeats
    reference = submit_and_wait(service, spec)
    a, b = weights_of(service, job["id"]), weights_of(service, reference["id"])
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_redis_restarted_under_a_running_job(service):
    """Redis goes away for a few seconds mid-training and comes back from its append-only file: the
    worker and the API ride it out (clients retry with backoff), the job finishes, nothing is lost."""
    if not any(w.poll() is None for w in service.workers):
        service.start_worker()
    service.wait_ready()
    job = submit(service, iris(epochs=150, checkpoint_every_steps=100))
    before = service.wait_for(job["id"], running_past(150))
    answers = []
    poll = threading.Thread(target=lambda: answers.append(service.client().get(f"/v1/jobs/{job['id']}")))
    service.redis.stop()
    poll.start()                                               # a request while Redis is down
    time.sleep(2.0)
    service.restart_redis(down_s=0)
    poll.join(60)
    assert answers and answers[0].status_code == 200           # it waited for Redis instead of failing
    done = service.wait_for(job["id"])
    assert done["status"] == "succeeded" and done["created_at"] == before["created_at"]
    with service.client() as c:
        steps = c.get(f"/v1/jobs/{job['id']}/metrics").json()["train"]["step"]
        assert steps == list(range(1, done["progress"]["total_steps"] + 1))
        assert [e["type"] for e in c.get(f"/v1/jobs/{job['id']}/events").json()["data"]][-1] == "succeeded"
    assert all(w.poll() is None for w in service.workers if w.worker_name == done["worker"])


def test_health_and_readiness(service):
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(service.url + "/readyz").json()
    assert ready["redis"] == "ok" and ready["queues"]["cpu"]["workers"] >= 1
    assert "/v1/jobs" in httpx.get(service.url + "/openapi.json").json()["paths"]


def test_example_configs_are_accepted_by_validate(service):
    with service.client() as c:
        for path in sorted((ROOT / "configs").glob("*.yaml")):
            r = c.post("/v1/jobs/validate", content=path.read_bytes(), headers={"Content-Type": "application/yaml"})
            assert r.status_code == 200, (path.name, r.text)
            assert r.json()["parameters"] > 0 and yaml.safe_load(path.read_text())["name"] == r.json()["spec"]["name"]


def test_a_job_cancelled_or_paused_while_queued_leaves_the_queue(service):
    from rq import Queue
    from rq.serializers import JSONSerializer
    gpu = Queue("gpu", connection=rq_connection(service.redis_url), serializer=JSONSerializer)
    before = gpu.count
    with service.client() as c:
        waiting = [submit(service, {**iris(), "resources": {"device": "cuda"}}) for _ in range(2)]  # no GPU worker
        assert gpu.count == before + 2
        assert c.post(f"/v1/jobs/{waiting[0]['id']}/cancel").json()["status"] == "cancelled"
        assert c.post(f"/v1/jobs/{waiting[1]['id']}/pause").json()["status"] == "paused"
        assert gpu.count == before                     # no worker will fork a process to find them stopped
        assert c.post(f"/v1/jobs/{waiting[1]['id']}/resume").json()["status"] == "queued"
        assert gpu.count == before + 1
        c.post(f"/v1/jobs/{waiting[1]['id']}/cancel")


def test_a_queued_job_whose_rq_message_vanished_is_enqueued_again(service):
    """Redis lost the RQ job (or the enqueue never happened): the sweep notices once the record has been
    queued ENQUEUE_GRACE_S and enqueues it again; the record keeps its id and status."""
    from rq import Queue
    from rq.serializers import JSONSerializer

    from workers.records import Records
    from workers.redis_server import connect
    conn, records = rq_connection(service.redis_url), Records(connect(service.redis_url))
    job = submit(service, {**iris(), "resources": {"device": "cuda"}})      # waits: no GPU worker here
    gpu = Queue("gpu", connection=conn, serializer=JSONSerializer)
    lost = records.get_job(job["id"])["rq_job"]
    gpu.remove(lost)
    conn.delete(f"rq:job:{lost}")
    deadline = time.monotonic() + 60
    while records.get_job(job["id"])["rq_job"] == lost:
        assert time.monotonic() < deadline, "the lost RQ job was not replaced"
        time.sleep(0.2)
    again = records.get_job(job["id"])
    assert again["status"] == "queued" and again["rq_job"] in gpu.job_ids
    service.client().post(f"/v1/jobs/{job['id']}/cancel")
