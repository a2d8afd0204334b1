"""`fita up` (what `make run` runs) as a person uses it: it starts the embedded Redis, the API and a worker,
prints where to look and a key; a worker killed with SIGKILL is restarted and its job continues within
seconds; Ctrl-C stops everything after the running job has gone back to the queue; the next `fita up`
on the same data directory finds the job (Redis's append-only file) and finishes it."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from rq import Worker

from workers.redis_server import connect, free_port

ROOT = Path(__file__).resolve().parents[1]
LONG = {"name": "long-iris", "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16},
                                                  {"type": "Tanh"}, {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 400, "seed": 0, "checkpoint_every_steps": 50}, "resources": {"device": "cpu"}}


class Up:
    """A `fita up` process and what it printed."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        env = {**os.environ, "FITA_DATA_DIR": str(data_dir), "FITA_PORT": str(self.port), "FITA_WORKERS": "1",
               "FITA_SWEEP_INTERVAL_S": "0.5", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)
        self.data_dir = data_dir
        self.process = subprocess.Popen([sys.executable, "-m", "fita", "up"], env=env, cwd=ROOT, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.banner = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.banner.wait(120), "no banner:\n" + "\n".join(self.lines)
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = (data_dir / "local.key").read_text().strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("Ctrl-C stops everything"):
                self.banner.set()

    def job(self, job_id):
        return self.http.get(f"/v1/jobs/{job_id}").json()

    def wait(self, job_id, until, timeout=120):
        deadline = time.monotonic() + timeout
        while not until(job := self.job(job_id)):
            assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
            time.sleep(0.1)
        return job

    def stop(self, sig=signal.SIGINT, timeout=120):
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def _alive(pid):
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@pytest.fixture
def data_dir(tmp_path):
    yield tmp_path
    # whatever a failed test left behind must not outlive it
    subprocess.run(["pkill", "-KILL", "-f", f"redis-server .*{tmp_path}"], check=False)


def test_up_supervises_its_worker_and_stops_cleanly(data_dir):
    up = Up(data_dir)
    try:
        text = "\n".join(up.lines)
        assert up.url in text and up.key in text and f"--data-binary @configs/digits-mlp.yaml {up.url}/v1/jobs" in text
        assert oct((data_dir / "local.key").stat().st_mode & 0o777) == "0o600"
        cores = len(os.sched_getaffinity(0))  # one worker keeps the defaults: every core
        assert "device cpu, all cores" in text
        redis_url = (data_dir / "redis.url").read_text().strip()
        job = up.http.post("/v1/jobs", json=LONG).json()
        up.wait(job["id"], lambda j: (j["progress"].get("step") or 0) >= 150)

        # SIGKILL the worker: `fita up` restarts it and its job goes on from the last checkpoint
        rq = connect(redis_url, decode_responses=False)
        (worker,) = Worker.all(connection=rq)
        os.kill(worker.pid, signal.SIGKILL)
        requeued = up.wait(job["id"], lambda j: j["restarts"] >= 1, timeout=30)
        assert requeued["status"] in ("queued", "running")
        done = up.wait(job["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
        assert done["status"] == "succeeded" and done["attempt"] == 2
        events = up.http.get(f"/v1/jobs/{job['id']}/events").json()["data"]
        assert [e["data"]["reason"] for e in events if e["type"] == "interrupted"] == [
            f"worker {worker.name} died"]
        assert any("exited with -9; restarting" in line for line in up.lines)
        assert any(f"training with {cores} CPU thread(s)" in line for line in up.lines)
        metrics = up.http.get(f"/v1/jobs/{job['id']}/metrics").json()["train"]
        assert metrics["step"] == list(range(1, done["progress"]["total_steps"] + 1))

        children = [int(p) for p in Path(f"/proc/{up.process.pid}/task/{up.process.pid}/children").read_text().split()]
        redis_pid = rq.info("server")["process_id"]
        rq.close()
    finally:
        code = up.stop()
    assert code == 0
    assert not [p for p in children + [redis_pid] if _alive(p)], "a child outlived fita up"
    assert not (data_dir / "redis.url").exists()
    assert any(json.loads(line).get("message") == "stopped" for line in up.lines if line.startswith("{"))


def test_ctrl_c_hands_the_running_job_back_and_the_next_up_finishes_it(data_dir):
    up = Up(data_dir)
    try:
        job = up.http.post("/v1/jobs", json=LONG).json()
        up.wait(job["id"], lambda j: (j["progress"].get("step") or 0) >= 100)
    finally:
        assert up.stop() == 0
    again = Up(data_dir)                 # the same data directory: the embedded Redis replays its AOF
    try:
        assert again.key == up.key
        state = again.job(job["id"])
        assert state["restarts"] == 1 and state["latest_checkpoint"]["step"] >= 100
        done = again.wait(job["id"], lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
        assert done["status"] == "succeeded"
        reasons = [e["data"]["reason"] for e in again.http.get(f"/v1/jobs/{job['id']}/events").json()["data"]
                   if e["type"] == "interrupted"]
        assert reasons == ["worker shutdown"]
    finally:
        assert again.stop() == 0
