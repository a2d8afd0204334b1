"""The RQ side of a job: routing to a queue, enqueueing, and the sweep that finds jobs nobody runs.

Our job record (workers/records.py) is the truth; an RQ job is only the message that makes some worker
call ``workers.worker.train_job(job_id)``. Every (re-)enqueue creates a new RQ job, named
``<job id>-<random>``, and its id is stored in the record as ``rq_job``. RQ jobs use JSON serialisation and a
``job_timeout`` past the server-wide training cap (``FITA_JOB_TIMEOUT_S``), so the training loop's own
timeout (which checkpoints first) always comes before RQ's hard kill.

Queues: ``gpu`` and ``cpu``. ``resources.device`` ``cpu`` goes to ``cpu``, ``cuda``/``cuda:N`` to ``gpu``;
``auto`` goes to ``gpu`` when a worker listens there, else to ``cpu``.

``sweep`` is what RQ does only in its maintenance (minutes apart), done on a short timer by the API's
lifespan and by the run command's supervisor:

- a running (or cancelling) job whose worker is gone (its RQ registration expired, or the supervisor
  saw the process die and removed it) is interrupted: re-queued from its latest checkpoint, or failed
  after ``max_restarts``, or cancelled if it was being cancelled;
- a job being cancelled that has not stopped within ``cancel_grace_s`` gets its work process killed
  (RQ's stop-job command); its worker then records it as cancelled;
- a queued job whose RQ job has vanished (the enqueue never happened, or Redis lost it) is enqueued again.

Each change is fenced by the record (``Records.interrupt`` with the attempt that held the lease), so
two sweepers running at once never re-queue a job twice.
"""
from __future__ import annotations

import logging
import secrets
import time

import redis
from rq import Queue, Worker
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from .records import LeaseLost, Records
from .redis_server import connect
from .settings import Settings

__all__ = ["QUEUES", "TASK", "rq_connection", "queue_for", "enqueue", "discard", "gpu_workers", "sweep",
           "worker_alive", "forget_worker"]

log = logging.getLogger(__name__)

QUEUES = ("gpu", "cpu")
TASK = "workers.worker.train_job"
JOB_TIMEOUT_MARGIN_S = 600      # RQ's hard kill comes this long after the training loop's own timeout
ENQUEUE_GRACE_S = 10.0          # a queued record may wait this long for its RQ job to appear
_LIVE_RQ_STATES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def rq_connection(url: str) -> redis.Redis:
    """RQ stores bytes (its job hashes are not all text), so it gets its own client without
    ``decode_responses``; the same retry policy as every other client."""
    return connect(url, decode_responses=False)


def _queue(name: str, conn: redis.Redis) -> Queue:
    return Queue(name, connection=conn, serializer=JSONSerializer)


def gpu_workers(conn: redis.Redis) -> int:
    """How many live workers listen on the ``gpu`` queue."""
    return len(Worker.all(queue=_queue("gpu", conn)))


def queue_for(device: str, conn: redis.Redis) -> str:
    """The queue a job with ``resources.device`` = ``device`` goes to."""
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        return "gpu"
    return "gpu" if gpu_workers(conn) else "cpu"


def enqueue(records: Records, conn: redis.Redis, job_id: str, settings: Settings, queue: str | None = None) -> str:
    """Put ``job_id`` (a queued record) on its queue: ``queue``, else the one its record names, else the
    one its spec's device routes to. Returns the queue's name."""
    job = records.get_job(job_id)
    if job is None:
        raise LookupError(f"no job {job_id}")
    queue = queue or job.get("queue") or queue_for(job["spec"].get("resources", {}).get("device", "auto"), conn)
    rq_id = f"{job_id}-{secrets.token_hex(4)}"
    records.update_job(job_id, queue=queue, rq_job=rq_id)
    _queue(queue, conn).enqueue(TASK, job_id, job_id=rq_id, job_timeout=settings.job_timeout_s + JOB_TIMEOUT_MARGIN_S,
                                result_ttl=86400, failure_ttl=7 * 86400, description=f"fita job {job_id}")
    return queue


def worker_alive(conn: redis.Redis, name: str | None) -> bool:
    """Whether RQ still has a registration for the worker ``name`` (it expires a minute after the
    worker's last heartbeat; the supervisor deletes it at once when it sees the process die)."""
    return bool(name) and bool(conn.exists(Worker.redis_worker_namespace_prefix + name))


def forget_worker(conn: redis.Redis, name: str) -> None:
    """Remove a dead worker's registration (the supervisor calls this when the process has exited), so
    the next sweep re-queues its job at once instead of when the registration would expire."""
    key = Worker.redis_worker_namespace_prefix + name
    with conn.pipeline() as p:
        p.delete(key)
        p.srem(Worker.redis_workers_keys, key)
        for q in QUEUES:
            p.srem(f"rq:workers:{q}", key)
        p.execute()


def _rq_jobs_live(conn: redis.Redis, rq_ids: list[str | None]) -> list[bool]:
    """Whether each RQ job still exists in a state a worker will act on, in one round trip."""
    with conn.pipeline(transaction=False) as p:
        for rq_id in rq_ids:
            p.hget(Job.key_for(rq_id or "-"), "status")
        states = p.execute()
    return [bool(rq_id) and state is not None and state.decode() in _LIVE_RQ_STATES
            for rq_id, state in zip(rq_ids, states)]


def discard(conn: redis.Redis, rq_id: str | None) -> None:
    """Take a job's RQ message off its queue (it was cancelled or paused while queued), so no worker
    forks a process just to find that out. Gone already, or being run: nothing to do."""
    if not rq_id:
        return
    try:
        job = Job.fetch(rq_id, connection=conn, serializer=JSONSerializer)
        if job.get_status() == JobStatus.QUEUED:
            job.cancel()
    except (NoSuchJobError, InvalidJobOperation, ValueError):
        pass


def _hard_stop(conn: redis.Redis, rq_id: str | None) -> None:
    try:
        send_stop_job_command(conn, rq_id, serializer=JSONSerializer)
    except (NoSuchJobError, InvalidJobOperation, TypeError, ValueError):   # no such job, or it already ended
        pass


def sweep(records: Records, conn: redis.Redis, settings: Settings, now: float | None = None) -> dict:
    """One pass over the active jobs (see the module docstring). Returns what it did:
    ``{"requeued": [...], "failed": [...], "cancelled": [...], "stopped": [...], "enqueued": [...]}``.
    The records, and the RQ jobs of those queued a while, are read in one round trip each, so a long
    queue costs the timer two calls, not two per job. One job's trouble is logged and does not keep the
    sweep from the others."""
    now = time.time() if now is None else now
    done: dict[str, list[str]] = {"requeued": [], "failed": [], "cancelled": [], "stopped": [], "enqueued": []}
    jobs = records.get_jobs(records.active_jobs())
    waiting = [j for j in jobs if j["status"] == "queued" and now - j["updated_at"] > ENQUEUE_GRACE_S]
    lost = {j["id"] for j, live in zip(waiting, _rq_jobs_live(conn, [j.get("rq_job") for j in waiting])) if not live}
    for job in jobs:
        try:
            what = _sweep_one(records, conn, settings, job, now, job["id"] in lost)
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except Exception:  # noqa: BLE001
            log.exception("sweep: job %s", job["id"])
            continue
        if what:
            done.setdefault(what, []).append(job["id"])
    return done


def _sweep_one(records: Records, conn: redis.Redis, settings: Settings, job: dict, now: float,
               rq_job_lost: bool) -> str | None:
    job_id, status, since = job["id"], job["status"], now - job["status_transitions"][-1]["time"]
    if status in ("running", "cancelling") and not worker_alive(conn, job.get("worker")):
        try:
            to = records.interrupt(job_id, f"worker {job.get('worker')} died", attempt_id=job["lease"],
                                   max_restarts=settings.max_restarts)
        except LeaseLost:
            return None     # another sweeper (or a new attempt) got there first
        log.warning("job %s: worker %s is gone; job is now %s", job_id, job.get("worker"), to)
        if to == "queued":
            enqueue(records, conn, job_id, settings)
            return "requeued"
        return to
    if status == "cancelling" and since > settings.cancel_grace_s:
        log.warning("job %s: still running %.0f s after cancel; stopping its work process", job_id, since)
        _hard_stop(conn, job.get("rq_job"))
        return "stopped"
    if rq_job_lost:
        log.warning("job %s: queued but its RQ job %s is gone; enqueueing it again", job_id, job.get("rq_job"))
        enqueue(records, conn, job_id, settings)
        return "enqueued"
    return None
