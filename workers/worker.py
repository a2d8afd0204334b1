"""The worker process (``fita worker``): an RQ worker that trains one job at a time on one device.

RQ forks a work process per RQ job; that process calls ``train_job(job_id)``, which runs one attempt of
the job (workers/train.py). The parent never touches CUDA, so CUDA is initialised only in the process
that trains, after the fork. One worker per GPU (``--device cuda:N``).

Signals, the way a deploy needs them (RQ's defaults would kill the job or wait for it to end):

- SIGTERM or Ctrl-C to the worker: a warm shutdown. The parent forwards SIGTERM to its work process,
  which finishes its current step, checkpoints, hands the job back to the queue (``run_job`` returns
  ``queued`` and it is enqueued again) and exits; then the worker exits. A second signal is RQ's cold
  shutdown (the work process is killed; the sweep re-queues the job from its last checkpoint).
- The worker itself dies (SIGKILL, OOM): its work process gets SIGKILL from the kernel at once
  (``PR_SET_PDEATHSIG``), so an orphan never goes on writing; the job is re-queued by the sweep
  (workers/queue.py) once the worker's registration is gone.
- The work process dies while its worker lives (killed by the cancel grace period, OOM): the worker
  settles the job's record itself right away (cancelled, re-queued or failed after max_restarts).
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import socket
import threading
import time

import redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.serializers import JSONSerializer

from .logs import job_context
from .queue import QUEUES, enqueue, forget_worker, rq_connection
from .records import LeaseLost, Records
from .redis_server import connect, die_with_parent, resolve_redis_url
from .settings import Settings
from .store import LocalStore
from .train import DEFERRED, run_job
from .uploads import Uploads

__all__ = ["FitaWorker", "train_job", "run_worker", "worker_name"]

log = logging.getLogger(__name__)

WORKER_TTL_S = 30               # an idle worker's registration lives this long past a heartbeat (+60 s)
MONITOR_INTERVAL_S = 5          # how often a busy worker heartbeats while its work process trains
QUOTA_RETRY_S = 1.0             # a job deferred by its tenant's running quota is re-queued after this
REDIS_RETRY_PAUSE_S = 2.0       # between a worker loop that lost Redis and the next

# Set by run_worker before RQ forks; the work process inherits them.
_device = "cpu"
_shutdown = threading.Event()


class FitaWorker(Worker):
    """RQ's forking worker, with the signal handling described in the module docstring."""

    def setup_work_horse_signals(self):
        die_with_parent(signal.SIGKILL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: _shutdown.set())

    def handle_warm_shutdown_request(self):
        if self.horse_pid:
            log.info("worker %s: shutting down; asking job %s to checkpoint and hand itself back", self.name,
                     self.get_current_job_id())
            self.kill_horse(sig=signal.SIGTERM)

    def execute_job(self, job, queue):
        super().execute_job(job, queue)
        if job.args:
            self._settle(job.args[0])

    def _settle(self, job_id: str) -> None:
        """The work process has exited: if the job's record still says this worker is running it, the
        process died without ending its attempt."""
        settings = Settings.from_env()
        with connect(resolve_redis_url(settings)) as client:
            records = Records(client)
            job = records.get_job(job_id)
            if job is None or job["status"] not in ("running", "cancelling") or job.get("worker") != self.name:
                return
            try:
                to = records.interrupt(job_id, "the work process died", attempt_id=job["lease"],
                                       max_restarts=settings.max_restarts)
            except LeaseLost:
                return
            log.warning("job %s: its work process died; the job is now %s", job_id, to)
            if to == "queued":
                enqueue(records, self.connection, job_id, settings)


def train_job(job_id: str) -> str:
    """The RQ task: one attempt of ``job_id`` on this worker's device. Returns the attempt's outcome."""
    settings = Settings.from_env()
    url = resolve_redis_url(settings)
    records = Records(connect(url))
    store = LocalStore(settings.artifacts_dir)
    job = records.get_job(job_id)
    if job is None:
        return "lost"
    uploads = Uploads(records.r, store)
    with job_context(job_id):
        status = run_job(job_id, settings=settings, records=records, store=store, device=_device,
                         worker=os.environ.get("RQ_WORKER_ID"), shutdown=_shutdown,
                         resolve_upload=uploads.resolver(job["tenant"]))
    if status == DEFERRED:        # the tenant's running quota is full: back of the queue, a little later
        time.sleep(QUOTA_RETRY_S)
    if status in ("queued", DEFERRED):   # queued: handed back on shutdown, to continue from the checkpoint
        enqueue(records, rq_connection(url), job_id, settings)
    return status


def worker_name(device: str) -> str:
    return f"fita-{device.replace(':', '')}-{socket.gethostname()}-{os.getpid()}"


def check_device(device: str) -> str:
    """``cpu`` or ``cuda[:N]``; a GPU device needs CuPy installed (checked without initialising CUDA)."""
    import importlib.util
    if device == "cuda":
        device = "cuda:0"
    if device != "cpu" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"--device must be cpu or cuda:N, got {device!r}")
    if device != "cpu" and importlib.util.find_spec("cupy") is None:
        raise ValueError(f"--device {device} needs CuPy: pip install 'fita[cuda]'")
    return device


def configure_threads(threads: int) -> int:
    """Size the CPU threads of one worker's training, the engine's and BLAS's alike, to ``threads``
    (0: leave both at their defaults: every core, or what OPENBLAS_NUM_THREADS and the like say),
    before its work processes fork, which inherit them. Workers that share a host should split its
    cores (``fita up`` gives each its share): threads of several processes fighting for the same cores
    make small matrix products many times slower. Returns the engine's thread count."""
    import engine
    if threads:
        from threadpoolctl import threadpool_limits
        engine.set_num_threads(threads)
        threadpool_limits(threads)  # BLAS's (and any OpenMP) pools, for the rest of the process
    return engine.get_num_threads()


def _preload() -> None:
    """Import before forking what every work process needs, so each job does not pay for it again
    (scikit-learn's datasets alone take over a second to import), and keep freed host memory for reuse
    (engine/_memory.py: a training step frees and allocates the same big arrays every step; the work
    processes inherit it). Nothing here touches CUDA."""
    import sklearn.datasets  # noqa: F401

    import engine
    engine.keep_freed_memory()


def run_worker(queues: list[str], device: str = "cpu", *, name: str | None = None, burst: bool = False,
               settings: Settings | None = None, log_level: str = "INFO") -> None:
    """Serve ``queues`` (in priority order) until SIGTERM / Ctrl-C (or, with ``burst``, until they are
    empty), training on ``device``."""
    global _device
    settings = settings or Settings.from_env()
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        raise ValueError(f"--queues must name some of {', '.join(QUEUES)}; got {','.join(queues) or 'nothing'}")
    _device = check_device(device)
    if _device == "cpu" and "gpu" in queues:
        log.warning("a CPU worker on the gpu queue trains GPU jobs on the CPU")
    url = resolve_redis_url(settings)
    log.info("training with %d CPU thread(s)", configure_threads(settings.worker_threads))
    _preload()
    name = name or worker_name(_device)
    previous = None
    for restart in itertools.count():
        conn = rq_connection(url)
        if previous is not None:     # our old registration goes, so the sweep re-queues its job at once
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                forget_worker(conn, previous)
        worker = FitaWorker([Queue(q, connection=conn, serializer=JSONSerializer) for q in queues], connection=conn,
                            name=name if restart == 0 else f"{name}.r{restart}", serializer=JSONSerializer,
                            worker_ttl=WORKER_TTL_S, job_monitoring_interval=MONITOR_INTERVAL_S)
        try:
            worker.work(burst=burst, logging_level=log_level, with_scheduler=False)
        except (redis.ConnectionError, redis.TimeoutError) as e:       # before its loop (registering)
            log.warning("worker %s: Redis unreachable: %s", worker.name, e)
        if burst or getattr(worker, "_shutdown_requested_date", None) is not None:
            return
        previous = worker.name
        # RQ leaves its loop when Redis stays unreachable past the client's retries: start again, so that
        # a long Redis outage is a pause for a worker started by hand too (under a new name: the old
        # registration may still be there)
        log.warning("worker %s lost Redis; starting again in %.0f s", worker.name, REDIS_RETRY_PAUSE_S)
        try:
            time.sleep(REDIS_RETRY_PAUSE_S)
        except (StopRequested, KeyboardInterrupt):      # RQ's signal handlers are still installed
            return
