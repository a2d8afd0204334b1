"""A service job of W1's shape against the benchmark's W1 step: does a worker train at the engine's speed?

    .venv/bin/python benchmarks/service_w1.py [--epochs 4] [--samples 16384]

Starts a real Redis, the API and one CPU worker (tests/service_fixture.py) in a temporary data directory,
uploads an .npz of --samples random 784-feature inputs with 10 classes, and submits W1's model
(784-1024-1024-10, ReLU), batch 512, Adam (lr 1e-3), cross-entropy, no validation split, no
checkpoints, drop_last. The job's step time is read from its ``epoch_end`` events (the steady epochs
after the first: each epoch's wall time / its steps, so data loading per batch, the per-step lease
check and the batched metric writes are in it). W1's training step alone (benchmarks/workloads.py's
Runner, the same engine, the same thread count) is timed in this process before the service starts and
after it stops: the machine's speed drifts between minutes, and the two show by how much.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import engine  # noqa: E402
from service_fixture import start_service  # noqa: E402
from workers.redis_server import RedisServer  # noqa: E402
from workloads import WORKLOADS, Runner  # noqa: E402

BATCH = 512


def w1_spec(dataset_id: str, epochs: int) -> dict:
    return {"name": "w1-shape",
            "model": {"layers": [{"type": "Linear", "in_features": 784, "out_features": 1024}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 1024, "out_features": 1024}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 1024, "out_features": 10}]},
            "data": {"dataset": f"upload:{dataset_id}", "batch_size": BATCH, "validation_split": 0.0,
                     "standardize": False, "drop_last": True},
            "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 1e-3},
            "training": {"epochs": epochs, "seed": 0, "checkpoint_every_epochs": None},
            "resources": {"device": "cpu"}}


def service_step_ms(service, samples: int, epochs: int) -> tuple[list[float], dict]:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, x=rng.standard_normal((samples, 784), dtype=np.float32), y=rng.integers(0, 10, samples))
    with service.client() as c:
        ds = c.post("/v1/datasets", params={"filename": "w1.npz"}, content=buf.getvalue(),
                    headers={"Content-Type": "application/octet-stream"}, timeout=300)
        assert ds.status_code == 201, ds.text
        job = c.post("/v1/jobs", json=w1_spec(ds.json()["id"], epochs)).json()
        done = service.wait_for(job["id"], timeout=1800)
        assert done["status"] == "succeeded", done["error"]
        ends = [e for e in c.get(f"/v1/jobs/{job['id']}/events").json()["data"] if e["type"] == "epoch_end"]
    steps = samples // BATCH
    per_epoch = [(b["time"] - a["time"]) / steps * 1000 for a, b in zip(ends, ends[1:])]
    return per_epoch, done


def engine_step_ms(steps: int = 20) -> list[float]:
    rng = np.random.default_rng(0)
    wl = WORKLOADS["W1"]
    runner = Runner("engine", engine, wl, "cpu", wl.data(rng))
    for _ in range(3):
        runner.step()
    return [runner.timed_step()[0] * 1000 for _ in range(steps)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--samples", type=int, default=16384)
    args = ap.parse_args()
    before = engine_step_ms()  # the step alone before and after the job: this machine's speed drifts
    with tempfile.TemporaryDirectory() as tmp, RedisServer(Path(tmp), write_url_file=False) as redis:
        cores = str(len(os.sched_getaffinity(0)))          # the worker's BLAS on all cores, as the engine's
        service = start_service(Path(tmp), redis.url, FITA_MAX_UPLOAD_BYTES=str(1 << 30),
                                OPENBLAS_NUM_THREADS=cores, OMP_NUM_THREADS=cores)
        try:
            job_ms, done = service_step_ms(service, args.samples, args.epochs)
        finally:
            service.stop()
    time.sleep(1.0)
    after = engine_step_ms()
    job, ref = statistics.median(job_ms), statistics.median(before + after)
    print(f"engine threads: {engine.get_num_threads()}; {args.samples // BATCH} steps per epoch, {args.epochs} epochs")
    print(f"service job, W1 shape: {job:.1f} ms/step (epochs after the first: {', '.join(f'{x:.1f}' for x in job_ms)})")
    print(f"W1 step alone:         {ref:.1f} ms/step (median of {len(before + after)}: before the job "
          f"{statistics.median(before):.1f}, after {statistics.median(after):.1f}; min {min(before + after):.1f})")
    print(f"job / alone:           {job / ref:.2f}")


if __name__ == "__main__":
    main()
