"""Job records, leases, metrics and events against a real Redis (the embedded one)."""
import math
import threading
import time

import pytest

from redis_fixture import redis_url  # noqa: F401
from workers.records import (InvalidTransition, JobNotFound, Lease, LeaseLost, Records, TRANSITIONS,
                             new_job_id)
from workers.redis_server import connect

SPEC = {"name": "t", "model": {"layers": [{"type": "Linear", "in_features": 2, "out_features": 1}]}}


@pytest.fixture
def rec(redis_url):  # noqa: F811
    client = connect(redis_url)
    yield Records(client)
    client.close()


def _job(rec, tenant="t1", **kw):
    job, created = rec.create_job(tenant, SPEC, **kw)
    assert created
    return job["id"]


def test_create_and_get(rec):
    job, created = rec.create_job("t1", SPEC, meta={"queue": "cpu"})
    assert created and job["id"].startswith("job_")
    assert job["status"] == "queued" and job["attempt"] == 0 and job["spec"] == SPEC
    assert job["meta"] == {"queue": "cpu"} and job["tenant"] == "t1"
    assert [t["status"] for t in job["status_transitions"]] == ["queued"]
    assert job["latest_metrics"] == {"train": None, "validation": None}
    assert rec.get_job(job["id"], tenant="t2") is None  # another tenant's job does not exist for it
    assert rec.get_job("job_nope") is None
    assert [e["type"] for e in rec.read_events(job["id"])] == ["queued"]


def test_idempotency_key(rec):
    a, created_a = rec.create_job("t1", SPEC, idempotency_key="k1")
    b, created_b = rec.create_job("t1", SPEC, idempotency_key="k1")
    c, created_c = rec.create_job("t2", SPEC, idempotency_key="k1")  # keys are per tenant
    assert (created_a, created_b, created_c) == (True, False, True)
    assert a["id"] == b["id"] != c["id"]
    rec.transition(a["id"], "cancelled")
    rec.delete_job(a["id"])
    d, created_d = rec.create_job("t1", SPEC, idempotency_key="k1")  # the old job is gone: a new one
    assert created_d and d["id"] != a["id"]


def test_bad_ids_are_refused(rec):
    with pytest.raises(ValueError):
        rec.create_job("t1", SPEC, job_id="../x")
    with pytest.raises(ValueError):
        rec.create_job("a:b", SPEC)


def test_list_paging_tenants_and_status(rec):
    ids = [_job(rec, tenant="t1" if i % 3 else "t2") for i in range(10)]
    rec.transition(ids[4], "cancelled")
    rec.transition(ids[7], "cancelled")
    everything, more = rec.list_jobs(limit=100)
    assert [j["id"] for j in everything] == ids[::-1] and not more
    t1 = [i for n, i in enumerate(ids) if n % 3][::-1]
    pages, after = [], None
    while True:
        page, more = rec.list_jobs(tenant="t1", after=after, limit=2)
        pages += [j["id"] for j in page]
        if not more:
            break
        after = page[-1]["id"]
    assert pages == t1
    cancelled, more = rec.list_jobs(status="cancelled", limit=1)
    assert [j["id"] for j in cancelled] == [ids[7]] and more
    rest, more = rec.list_jobs(status="cancelled", after=ids[7], limit=1)
    assert [j["id"] for j in rest] == [ids[4]] and not more
    with pytest.raises(JobNotFound):
        rec.list_jobs(tenant="t2", after=ids[1])  # a t1 id is no cursor for t2
    with pytest.raises(ValueError):
        rec.list_jobs(status="done")


def test_lifecycle_with_a_lease(rec):
    job_id = _job(rec)
    attempt = rec.acquire_attempt(job_id, worker="w1")
    assert attempt == 1
    assert rec.check_lease(job_id, attempt) is Lease.OK
    rec.update_job(job_id, attempt_id=attempt, phase="training", progress={"epoch": 0, "step": 5, "eta_s": math.inf})
    job = rec.get_job(job_id)
    assert job["status"] == "running" and job["phase"] == "training" and job["worker"] == "w1"
    assert job["progress"] == {"epoch": 0, "step": 5, "eta_s": None} and job["heartbeat_at"] > 0
    rec.add_event(job_id, "epoch_end", {"epoch": 0}, attempt_id=attempt)
    rec.record_checkpoint(job_id, attempt, {"step": 5, "epoch": 0, "sha256": "ab"})
    rec.transition(job_id, "succeeded", attempt_id=attempt)
    job = rec.get_job(job_id)
    assert job["status"] == "succeeded" and job["finished_at"] >= job["started_at"] and job["lease"] is None
    assert job["latest_checkpoint"]["step"] == 5
    assert [t["status"] for t in job["status_transitions"]] == ["queued", "running", "succeeded"]
    assert [e["type"] for e in rec.read_events(job_id)] == ["queued", "started", "epoch_end", "checkpoint",
                                                           "succeeded"]
    assert rec.check_lease(job_id, attempt) is Lease.LOST
    with pytest.raises(InvalidTransition):
        rec.transition(job_id, "running")
    with pytest.raises(InvalidTransition):
        rec.acquire_attempt(job_id)


def test_transitions_are_validated(rec):
    for status, allowed in TRANSITIONS.items():
        if not allowed:  # a terminal status is final
            job_id = _job(rec)
            rec.transition(job_id, "running")
            rec.transition(job_id, status)
            for target in ("queued", "running", "succeeded", "failed", "cancelled", "paused"):
                with pytest.raises(InvalidTransition):
                    rec.transition(job_id, target)
    job_id = _job(rec)
    with pytest.raises(InvalidTransition):
        rec.transition(job_id, "succeeded")  # queued cannot succeed without running
    with pytest.raises(JobNotFound):
        rec.transition("job_missing", "running")
    rec.acquire_attempt(job_id)
    rec.transition(job_id, "failed", error_code="nan_loss", error_message="loss is nan at step 7")
    job = rec.get_job(job_id)
    assert job["error"] == {"code": "nan_loss", "message": "loss is nan at step 7"}
    assert rec.read_events(job_id)[-1]["data"]["error"]["code"] == "nan_loss"


def test_stale_attempt_is_fenced_off(rec):
    job_id = _job(rec)
    old = rec.acquire_attempt(job_id)
    new = rec.acquire_attempt(job_id)  # e.g. RQ started a second copy
    assert new == old + 1
    assert rec.check_lease(job_id, old) is Lease.LOST
    assert rec.check_lease(job_id, new) is Lease.OK
    n_events = len(rec.read_events(job_id))
    with pytest.raises(LeaseLost):
        rec.append_metrics(job_id, old, [{"kind": "train", "step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1}])
    with pytest.raises(LeaseLost):
        rec.update_job(job_id, attempt_id=old, progress={"step": 99})
    with pytest.raises(LeaseLost):
        rec.add_event(job_id, "epoch_end", attempt_id=old)
    with pytest.raises(LeaseLost):
        rec.record_checkpoint(job_id, old, {"step": 1})
    with pytest.raises(LeaseLost):
        rec.transition(job_id, "succeeded", attempt_id=old)
    with pytest.raises(LeaseLost):
        rec.trim_metrics_after(job_id, old, 0)
    assert rec.read_metrics(job_id)["train"]["step"] == []
    assert len(rec.read_events(job_id)) == n_events and rec.get_job(job_id)["progress"] == {}
    assert rec.append_metrics(job_id, new, [{"kind": "train", "step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1}]) == 1
    types = [e["type"] for e in rec.read_events(job_id)]
    assert types == ["queued", "started", "interrupted", "started"]


def test_concurrent_acquires_get_distinct_attempts(rec):
    job_id = _job(rec)
    got = []
    threads = [threading.Thread(target=lambda: got.append(rec.acquire_attempt(job_id))) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(got) == list(range(1, 9))
    assert rec.check_lease(job_id, 8) is Lease.OK and rec.get_job(job_id)["attempt"] == 8


def test_cancel_and_pause(rec):
    queued = _job(rec)
    assert rec.request_cancel(queued) == "cancelled"
    with pytest.raises(InvalidTransition):
        rec.request_cancel(queued)

    running = _job(rec)
    a = rec.acquire_attempt(running)
    assert rec.request_cancel(running) == "cancelling"
    assert rec.request_cancel(running) == "cancelling"
    assert rec.check_lease(running, a) is Lease.CANCEL
    rec.transition(running, "cancelled", attempt_id=a)
    assert rec.get_job(running)["status"] == "cancelled"

    job_id = _job(rec)
    a = rec.acquire_attempt(job_id)
    assert rec.request_pause(job_id) == "running"
    assert rec.check_lease(job_id, a) is Lease.PAUSE
    rec.transition(job_id, "paused", attempt_id=a)
    assert rec.check_lease(job_id, a) is Lease.LOST
    rec.resume(job_id)
    assert rec.get_job(job_id)["status"] == "queued"
    assert rec.acquire_attempt(job_id) == a + 1
    assert rec.check_lease(job_id, a + 1) is Lease.OK  # the pause request was consumed
    with pytest.raises(InvalidTransition):
        rec.resume(job_id)
    assert [e["type"] for e in rec.read_events(job_id)] == ["queued", "started", "paused", "queued", "started"]


def test_interrupt_requeues_then_fails_after_max_restarts(rec):
    job_id = _job(rec)
    for n in range(1, 3):
        a = rec.acquire_attempt(job_id)
        assert rec.interrupt(job_id, "worker died", max_restarts=2) == "queued"
        assert rec.check_lease(job_id, a) is Lease.LOST
        assert rec.get_job(job_id)["restarts"] == n
    a = rec.acquire_attempt(job_id)
    with pytest.raises(LeaseLost):
        rec.interrupt(job_id, "sigterm", attempt_id=a - 1)  # a stale cleanup leaves the new attempt alone
    assert rec.interrupt(job_id, "worker died", attempt_id=a, max_restarts=2) == "failed"
    job = rec.get_job(job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "too_many_restarts"
    assert sum(e["type"] == "interrupted" for e in rec.read_events(job_id)) == 3
    assert rec.interrupt(job_id, "again") == "failed"  # nothing to do for a finished job

    cancelling = _job(rec)
    rec.acquire_attempt(cancelling)
    rec.request_cancel(cancelling)
    assert rec.interrupt(cancelling, "worker died") == "cancelled"
    pausing = _job(rec)
    rec.acquire_attempt(pausing)
    rec.request_pause(pausing)
    assert rec.interrupt(pausing, "worker died") == "paused"


def test_metrics_columns_filters_and_idempotence(rec):
    job_id = _job(rec)
    a = rec.acquire_attempt(job_id)
    with rec.metrics_writer(job_id, a, flush_every=4, flush_s=60) as w:
        for step in range(1, 11):
            w.log_train(step, epoch=(step - 1) // 5, loss=1.0 / step, lr=0.1)
            if step % 5 == 0:
                w.log_validation(epoch=step // 5 - 1, step=step, loss=0.5, accuracy=0.9, top5=1.0)
        assert len(w.buffer) == 0 or rec.read_metrics(job_id)["train"]["step"]  # flushed on the way
    m = rec.read_metrics(job_id)
    assert m["train"]["step"] == list(range(1, 11)) and m["train"]["loss"] == [1.0 / s for s in range(1, 11)]
    assert list(m["train"]) == ["step", "epoch", "loss", "lr"]
    assert m["validation"] == {"epoch": [0, 1], "step": [5, 10], "loss": [0.5, 0.5], "accuracy": [0.9, 0.9],
                               "top5": [1.0, 1.0]}
    assert rec.read_metrics(job_id, step_from=3, step_to=5)["train"]["step"] == [3, 4, 5]
    assert rec.read_metrics(job_id, step_from=6)["validation"]["step"] == [10]
    # a record written again (a retried flush, a replayed step) is not duplicated
    assert rec.append_metrics(job_id, a, [{"kind": "train", "step": 10, "epoch": 1, "loss": 9.0, "lr": 0.1}]) == 0
    assert rec.read_metrics(job_id)["train"]["loss"][-1] == 0.1
    assert rec.get_job(job_id)["latest_metrics"]["train"]["step"] == 10
    assert rec.get_job(job_id)["latest_metrics"]["validation"]["accuracy"] == 0.9


def test_resume_from_a_checkpoint_rerecords_without_duplicates(rec):
    """Attempt 1 writes steps 1..7 and dies; its checkpoint is at step 4. Attempt 2 trims past 4 and
    re-records 5..10: the curve has each step once, as an uninterrupted run would."""
    job_id = _job(rec)
    a1 = rec.acquire_attempt(job_id)
    train = [{"kind": "train", "step": s, "epoch": 0, "loss": float(s), "lr": 0.1} for s in range(1, 8)]
    val = {"kind": "validation", "step": 4, "epoch": 0, "loss": 0.4, "accuracy": None}
    rec.append_metrics(job_id, a1, train[:4] + [val] + train[4:])
    rec.interrupt(job_id, "worker died")
    a2 = rec.acquire_attempt(job_id)
    assert rec.trim_metrics_after(job_id, a2, 4) == 3
    assert rec.get_job(job_id)["latest_metrics"]["train"] is None
    rec.append_metrics(job_id, a2, [{"kind": "train", "step": s, "epoch": 0, "loss": float(s), "lr": 0.1}
                                    for s in range(3, 11)])  # 3 and 4 replayed: skipped
    m = rec.read_metrics(job_id)
    assert m["train"]["step"] == list(range(1, 11)) and m["train"]["loss"] == [float(s) for s in range(1, 11)]
    assert m["validation"]["step"] == [4]
    assert rec.trim_metrics_after(job_id, a2, 100) == 0


def test_metrics_writer_flushes_by_time_and_drops_on_lost_lease(rec):
    job_id = _job(rec)
    a = rec.acquire_attempt(job_id)
    w = rec.metrics_writer(job_id, a, flush_every=1000, flush_s=0.05)
    w.log_train(1, 0, float("nan"), 0.1)
    assert rec.read_metrics(job_id)["train"]["step"] == []  # buffered
    time.sleep(0.06)
    w.log_train(2, 0, 0.5, 0.1)
    assert rec.read_metrics(job_id)["train"] == {"step": [1, 2], "epoch": [0, 0], "loss": [None, 0.5],
                                                 "lr": [0.1, 0.1]}
    rec.acquire_attempt(job_id)
    with pytest.raises(LeaseLost):
        with w:
            w.log_train(3, 0, 0.4, 0.1)
            w.flush()
    assert rec.read_metrics(job_id)["train"]["step"] == [1, 2]
    with pytest.raises(ValueError):
        rec.append_metrics(job_id, a, [{"kind": "test", "step": 1}])


def test_events_after_id(rec):
    """(Following events live is the API's SSE stream, tested in test_service.py.)"""
    job_id = _job(rec)
    first = rec.read_events(job_id)
    assert first[0]["type"] == "queued" and isinstance(first[0]["time"], float)
    rec.add_event(job_id, "epoch_end", {"epoch": 0})
    after = rec.read_events(job_id, after=first[0]["id"])
    assert [e["type"] for e in after] == ["epoch_end"] and after[0]["data"] == {"epoch": 0}
    assert rec.read_events(job_id, after=after[0]["id"]) == []
    assert len(rec.read_events(job_id, after="0-0")) == 2
    with pytest.raises(ValueError):
        rec.read_events(job_id, after="abc")
    with pytest.raises(ValueError):
        rec.add_event(job_id, "exploded")


def test_update_job_guards(rec):
    job_id = _job(rec)
    with pytest.raises(ValueError):
        rec.update_job(job_id, status="succeeded")
    with pytest.raises(ValueError):
        rec.update_job(job_id, phase="dreaming")
    with pytest.raises(JobNotFound):
        rec.update_job("job_missing", meta={})
    rec.update_job(job_id, meta={"rq_job_id": "r1"}, result={"input_mean": [0.5]})
    assert rec.get_job(job_id)["meta"] == {"rq_job_id": "r1"}


def test_delete(rec):
    job_id = _job(rec)
    with pytest.raises(InvalidTransition):
        rec.delete_job(job_id)
    a = rec.acquire_attempt(job_id)
    rec.append_metrics(job_id, a, [{"kind": "train", "step": 1, "epoch": 0, "loss": 1.0}])
    rec.transition(job_id, "succeeded", attempt_id=a)
    rec.delete_job(job_id)
    assert rec.get_job(job_id) is None and rec.list_jobs() == ([], False)
    assert rec.r.exists(rec.metrics_key(job_id), rec.events_key(job_id)) == 0
    with pytest.raises(JobNotFound):
        rec.delete_job(job_id)


def test_needs_decoded_responses(redis_url):  # noqa: F811
    import redis
    with pytest.raises(ValueError, match="decode_responses"):
        Records(redis.Redis.from_url(redis_url))
    assert new_job_id() != new_job_id()


def test_records_survive_a_redis_restart(tmp_path):
    """Jobs, leases and metrics persist (append-only file); the same client reconnects and its Lua
    scripts are loaded again transparently."""
    from workers.redis_server import RedisServer
    server = RedisServer(tmp_path).start()
    try:
        rec = Records(connect(server.url))
        job_id = _job(rec)
        a = rec.acquire_attempt(job_id)
        rec.append_metrics(job_id, a, [{"kind": "train", "step": 1, "epoch": 0, "loss": 1.0, "lr": 0.1}])
        port = server.port
        server.stop()
        server = RedisServer(tmp_path, port=port).start()
        assert rec.check_lease(job_id, a) is Lease.OK
        rec.append_metrics(job_id, a, [{"kind": "train", "step": 2, "epoch": 0, "loss": 0.5, "lr": 0.1}])
        assert rec.read_metrics(job_id)["train"]["step"] == [1, 2]
        assert rec.get_job(job_id)["status"] == "running"
    finally:
        server.stop()
