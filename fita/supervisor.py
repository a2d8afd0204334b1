"""``fita up`` (what ``make run`` runs): the whole service in the foreground.

Starts, in order: the embedded Redis (unless ``REDIS_URL`` is set), the API (``fita api``) and
``FITA_WORKERS`` workers (``fita worker``), each its own process in its own process group, so that the
terminal's Ctrl-C reaches only this supervisor, which then stops things in the order that loses
nothing: workers first (each checkpoints its job and hands it back to the queue), then the API, then
Redis (which fsyncs its append-only file).

A worker that dies is restarted with backoff (1 s, doubling to 30 s; reset after a minute of life). Its
RQ registration is removed and the sweep runs at once, so its job is re-queued within seconds
rather than when the registration would have expired. The API is restarted the same way.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from rq import Worker

from api.auth import create_key, has_keys
from workers.queue import forget_worker, rq_connection, sweep
from workers.records import Records
from workers.redis_server import RedisServer, connect
from workers.settings import Settings
from workers.worker import check_device

log = logging.getLogger("fita.up")

MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0


@dataclass
class Child:
    role: str                  # "api" or "worker"
    args: list[str]
    name: str | None = None    # the RQ worker name
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 1.0
    due: float = 0.0           # when a dead child is started again
    extra: dict = field(default_factory=dict)


def local_key_file(settings: Settings):
    return settings.data_dir / "local.key"


def ensure_local_key(settings: Settings) -> str | None:
    """On a data directory without keys, create one for tenant ``local`` and keep a copy of it in
    ``$FITA_DATA_DIR/local.key`` (mode 600) for the person running the service. Returns that key."""
    path = local_key_file(settings)
    if not has_keys(settings):
        key = create_key(settings, "local", name="created by fita up")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def cpu_cores() -> int:
    """The cores this process may run on (what the engine's thread pool defaults to)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Supervisor:
    def __init__(self, settings: Settings, workers: int | None = None, device: str = "cpu",
                 queues: str | None = None):
        self.settings = settings
        self.n_workers = settings.workers if workers is None else workers
        self.device = check_device(device)
        self.queues = queues or ("cpu" if self.device == "cpu" else "gpu,cpu")
        # several workers share this host's cores, unless FITA_WORKER_THREADS says otherwise (0: one
        # worker keeps the defaults)
        self.worker_threads = settings.worker_threads or (
            max(1, cpu_cores() // self.n_workers) if self.n_workers > 1 else 0)
        self.stop = threading.Event()
        self.redis: RedisServer | None = None
        self.children: list[Child] = []

    # ---- start ----------------------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        args = list(child.args)
        if child.role == "worker":
            child.name = f"fita-{self.device.replace(':', '')}-{os.uname().nodename}-{os.getpid()}-" \
                         f"{child.extra['index']}.{child.restarts}"
            args += ["--name", child.name]
        env = {**self.env, "FITA_WORKER_THREADS": str(self.worker_threads)} if child.role == "worker" else self.env
        child.process = subprocess.Popen([sys.executable, "-m", "fita", *args], env=env, start_new_session=True)
        child.started = time.monotonic()
        log.info("started %s (pid %d)%s", child.role, child.process.pid, f" {child.name}" if child.name else "")

    def _wait_for_api(self, timeout: float = 60.0) -> bool:
        url = f"http://{self.settings.host}:{self.settings.port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                time.sleep(0.2)
        return False

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = self.settings.redis_url
        if not url:
            self.redis = RedisServer(self.settings.data_dir, port=self.settings.redis_port).start()
            url = self.redis.url
            log.info("embedded Redis at %s (append-only file in %s)", url, self.redis.dir)
        self.url = url
        self.env = {**os.environ, "REDIS_URL": url, "FITA_DATA_DIR": str(self.settings.data_dir)}
        self.records = Records(connect(url))
        self.rq = rq_connection(url)
        key = ensure_local_key(self.settings)
        self.children = [Child("api", ["api", "--host", self.settings.host, "--port", str(self.settings.port)])]
        self.children += [Child("worker", ["worker", "--queues", self.queues, "--device", self.device],
                                extra={"index": i}) for i in range(self.n_workers)]
        try:
            for child in self.children:
                self._spawn(child)
            if self._wait_for_api():
                self._banner(key)
            while not self.stop.is_set():
                self._check_children()
                self.stop.wait(0.5)
        finally:
            self._shutdown()
        return 0

    def _banner(self, key: str | None) -> None:
        base = f"http://{self.settings.host}:{self.settings.port}"
        lines = ["", "Fita is running.", f"  API        {base}   (OpenAPI docs: {base}/docs)",
                 f"  dashboard  {base}/" + (f"?api_key={key}" if key else ""),
                 f"  API key    {key}" if key else
                 f"  API keys   hashed in {self.settings.api_keys_file}; `fita keys create` makes another",
                 f"  workers    {self.n_workers} on queue(s) {self.queues}, device {self.device}, "
                 + (f"{self.worker_threads} CPU thread(s) each" if self.worker_threads else "all cores"),
                 f"  Redis      {self.url}", f"  data       {self.settings.data_dir.resolve()}",
                 "Submit a job:",
                 f"  curl -H 'Authorization: Bearer {key or '$KEY'}' -H 'Content-Type: application/yaml' "
                 f"--data-binary @configs/digits-mlp.yaml {base}/v1/jobs",
                 "Ctrl-C stops everything (running jobs checkpoint and go back to the queue).", ""]
        print("\n".join(lines), flush=True)

    # ---- supervise ------------------------------------------------------------------------------
    def _check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                if now >= child.due:
                    self._spawn(child)
                continue
            code = child.process.poll()
            if code is None:
                if now - child.started > STABLE_AFTER_S:
                    child.backoff = 1.0
                continue
            log.warning("%s %s exited with %s; restarting in %.0f s", child.role, child.name or "", code,
                        child.backoff)
            if child.role == "worker":
                self._recover(child.name)
            child.process, child.due = None, now + child.backoff
            child.backoff = min(child.backoff * 2, MAX_BACKOFF_S)
            child.restarts += 1

    def _recover(self, name: str) -> None:
        """The worker is gone: its job goes back to the queue now (from its latest checkpoint)."""
        try:
            # the process may have registered again under `<name>.rN` after a Redis outage (workers/worker.py)
            for worker in Worker.all(connection=self.rq):
                if worker.name == name or worker.name.startswith(name + ".r"):
                    forget_worker(self.rq, worker.name)
            forget_worker(self.rq, name)
            done = sweep(self.records, self.rq, self.settings)
            if any(done.values()):
                log.info("after worker %s died: %s", name, {k: v for k, v in done.items() if v})
        except Exception:  # noqa: BLE001 - the API's own sweep catches up if this one fails
            log.warning("could not recover the jobs of worker %s now", name, exc_info=True)

    # ---- stop -----------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        log.info("stopping: workers first (running jobs checkpoint and go back to the queue)")
        for role, grace in (("worker", 120.0), ("api", 15.0)):
            procs = [c.process for c in self.children if c.role == role and c.process is not None]
            for p in procs:
                _signal(p, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for p in procs:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s pid %d did not stop in %.0f s; killing it", role, p.pid, grace)
                    _signal(p, signal.SIGKILL)
                    p.wait()
        if self.redis is not None:
            self.redis.stop()
        log.info("stopped")


def _signal(process: subprocess.Popen, sig: int) -> None:
    try:
        process.send_signal(sig)
    except ProcessLookupError:
        pass
