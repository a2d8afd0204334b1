"""The whole service as real processes, for integration tests: a real Redis (the embedded server), the API
(``fita api``, uvicorn on a free loopback port, spoken to over real HTTP) and RQ workers (``fita worker``).

    from service_fixture import service  # noqa: F401   (module-scoped: one service per test module)

    def test_x(service):
        r = service.client("t1").post("/v1/jobs", json=spec)

Tenants ``t1`` and ``t2`` have keys (``FITA_API_KEYS``). Settings are tightened so the tests need not
wait: the sweep runs every 0.5 s, a cancel's grace period is 5 s, SSE keep-alives every second, uploads
are capped at 2 MiB. ``Service.start_worker()`` adds a worker; ``wait_for`` polls a job.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from workers.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"t1": "key-one-for-tests", "t2": "key-two-for-tests", "t3": "key-three-for-tests"}
UPLOAD_LIMIT = 2 << 20
FINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Service:
    url: str
    data_dir: Path
    redis_url: str
    env: dict
    api: subprocess.Popen | None = None
    workers: list = field(default_factory=list)
    redis: RedisServer | None = None     # set by the fixture, which owns the server

    def restart_redis(self, down_s: float = 2.0) -> None:
        """Stop Redis (it fsyncs its append-only file), wait, and start it again on the same port."""
        port = self.redis.port
        self.redis.stop()
        time.sleep(down_s)
        self.redis = RedisServer(self.data_dir, port=port, write_url_file=False).start()

    def client(self, tenant: str | None = "t1", **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {KEYS[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)

    def start_api(self) -> None:
        self.api = subprocess.Popen([sys.executable, "-m", "fita", "api", "--log-level", "WARNING"], env=self.env,
                                    cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.api.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the API did not start")
            time.sleep(0.1)

    def live_worker(self) -> subprocess.Popen:
        return next(w for w in self.workers if w.poll() is None)

    def start_worker(self, queues: str = "cpu", name: str | None = None, **env) -> subprocess.Popen:
        name = name or f"test-worker-{len(self.workers)}-{os.getpid()}"
        p = subprocess.Popen([sys.executable, "-m", "fita", "worker", "--queues", queues, "--name", name,
                              "--log-level", "WARNING"], env={**self.env, **env}, cwd=ROOT)
        p.worker_name = name
        self.workers.append(p)
        return p

    def wait_ready(self, queue: str = "cpu", timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url) as c:
            while time.monotonic() < deadline:
                try:
                    r = c.get("/readyz")
                    if r.status_code == 200 and r.json()["queues"][queue]["workers"] > 0:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"no worker on queue {queue} after {timeout} s")

    def wait_for(self, job_id: str, until=lambda job: job["status"] in FINAL, tenant: str = "t1",
                 timeout: float = 180.0) -> dict:
        """Poll the job until ``until(job)``; the job. (A bound on waiting, not a speed check.)"""
        deadline = time.monotonic() + timeout
        with self.client(tenant) as c:
            while True:
                job = c.get(f"/v1/jobs/{job_id}").json()
                if until(job):
                    return job
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
                time.sleep(0.1)

    def stop(self) -> None:
        for p in [*self.workers, self.api]:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in [*self.workers, self.api]:
            if p is None:
                continue
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def submit(service, spec: dict, tenant: str = "t1") -> dict:
    """POST the spec as ``tenant``; the created job (a 201 is asserted)."""
    with service.client(tenant) as c:
        r = c.post("/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return r.json()


def running_past(step):
    """For ``wait_for``: the job has got to ``step`` (or is no longer running)."""
    return lambda job: job["status"] != "queued" and (job["status"] != "running" or
                                                      (job["progress"].get("step") or 0) >= step)


def work_process_of(pid: int) -> int:
    """The worker's forked work process (its only child)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} has no work process")


def wait_gone(pid: int) -> None:
    """Wait until the process ``pid`` has exited (a zombie counts)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return
        if "State:\tZ" in status:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} is still alive")


def start_service(data_dir: Path, redis_url: str, workers: int = 1, **env) -> Service:
    port = free_port()
    full_env = {**os.environ, "FITA_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "FITA_PORT": str(port),
                "FITA_API_KEYS": ",".join(f"{t}:{k}" for t, k in KEYS.items()), "FITA_SWEEP_INTERVAL_S": "0.5",
                "FITA_CANCEL_GRACE_S": "5", "FITA_SSE_KEEPALIVE_S": "1", "FITA_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
                "FITA_METRICS_FLUSH_S": "0.2", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                "PYTHONPATH": str(ROOT), **env}
    svc = Service(f"http://127.0.0.1:{port}", data_dir, redis_url, full_env)
    svc.start_api()
    for _ in range(workers):
        svc.start_worker()
    if workers:
        svc.wait_ready()
    return svc


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fita")
    redis = RedisServer(data_dir, write_url_file=False).start()
    svc = start_service(data_dir, redis.url)
    svc.redis = redis
    try:
        yield svc
    finally:
        svc.stop()
        svc.redis.stop()


@pytest.fixture(scope="module")
def t1(service):
    """An HTTP client of tenant t1 on the module's service."""
    with service.client("t1") as c:
        yield c


@pytest.fixture(scope="module")
def t2(service):
    with service.client("t2") as c:
        yield c


def check_error(r, status: int, code: str | None = None, param=..., says: tuple = ()) -> dict:
    """``r`` is a ``status`` in the error shape (JSON) with ``code`` and ``param``; its message mentions
    each of ``says`` (case-insensitive). Returns the error."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "message", "param"}, err
    assert isinstance(err["message"], str) and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    if param is not ...:
        assert err["param"] == param, err
    for word in says:
        assert str(word).lower() in err["message"].lower(), (word, err)
    return err
