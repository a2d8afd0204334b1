"""The service's latency and throughput, on loopback: a real Redis, the API (`fita api`, uvicorn) and one
warm CPU worker, started by this script in a temporary data directory and stopped at the end.

    .venv/bin/python benchmarks/service.py [--submits 10] [--clients 50] [--seconds 5]

1. Submit to first step, with a warm worker (idle, waiting on its queue): for each of --submits small
   iris jobs, the client-side times from sending POST /v1/jobs to (a) its 201 (parse, validate, dry
   build, record, enqueue), (b) the job's ``started`` event (dequeue, fork, attempt), (c) the first
   training step's metrics record being readable (data loading, model build, one step; metrics are
   flushed per record here, FITA_METRICS_FLUSH_S=0). Polled every 2 ms.
2. Status polls: --clients concurrent clients (one asyncio loop, one keep-alive connection each, raw
   HTTP/1.1) each GET /v1/jobs/{id} in a loop for --seconds; requests/s and latency percentiles. The
   client shares the machine's cores with the server; the script also prints the API process's CPU
   time per request, which is what bounds its throughput.
Both are bounded in count and time and only talk to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from service_fixture import start_service  # noqa: E402
from workers.redis_server import RedisServer  # noqa: E402

SPEC = {"name": "bench", "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16},
                                              {"type": "ReLU"}, {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01}, "training": {"epochs": 2, "seed": 0}, "resources": {"device": "cpu"}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def submit_latency(service, n: int) -> dict:
    rows = {"201": [], "started": [], "first step": []}
    with service.client() as c:
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.post("/v1/jobs", json=SPEC)
            rows["201"].append(time.perf_counter() - t0)
            job_id = r.json()["id"]
            started = None
            while True:
                if started is None and any(e["type"] == "started"
                                           for e in c.get(f"/v1/jobs/{job_id}/events").json()["data"]):
                    started = time.perf_counter() - t0
                    rows["started"].append(started)
                if started is not None and c.get(f"/v1/jobs/{job_id}/metrics", params={"step_to": 1}).json()["train"]["step"]:
                    rows["first step"].append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 60:
                    raise TimeoutError(f"job {job_id} took no step in 60 s")
                time.sleep(0.002)
            service.wait_for(job_id)          # the worker is warm and idle again before the next submit
    return rows


async def _poller(host: str, port: int, request: bytes, stop: float, latencies: list[float]) -> int:
    """One client on one keep-alive connection: a raw HTTP/1.1 GET in a loop (httpx's async client
    spends ~6 ms of CPU per request with 50 connections, more than the server does, on the same
    two cores). Returns how many answers were not 200."""
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < stop:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            errors += not head.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()
    return errors


async def poll_throughput(service, job_id: str, clients: int, seconds: float) -> tuple[int, list[float], int]:
    url = httpx.URL(service.url)
    key = service.client().headers["authorization"]
    request = (f"GET /v1/jobs/{job_id} HTTP/1.1\r\nHost: {url.host}\r\nAuthorization: {key}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    latencies: list[float] = []
    t0 = time.perf_counter()
    errors = await asyncio.gather(*(_poller(url.host, url.port, request, t0 + seconds, latencies)
                                    for _ in range(clients)))
    return int(len(latencies) / (time.perf_counter() - t0)), latencies, sum(errors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--submits", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    print(f"{datetime.date.today()}  {platform.processor() or platform.machine()}  {os.cpu_count()} cores  "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        with RedisServer(Path(tmp), write_url_file=False) as redis:
            service = start_service(Path(tmp), redis.url, FITA_METRICS_FLUSH_S="0")
            try:
                service.client().post("/v1/jobs", json=SPEC)          # warm-up: imports, first fork
                time.sleep(3)
                rows = submit_latency(service, args.submits)
                print(f"\nsubmit -> ..., {args.submits} jobs, warm idle worker (ms)")
                print(f"{'until':<12}{'median':>9}{'p90':>9}{'min':>9}{'max':>9}")
                for name, v in rows.items():
                    ms = [x * 1000 for x in v]
                    print(f"{name:<12}{statistics.median(ms):9.1f}{pct(ms, 90):9.1f}{min(ms):9.1f}{max(ms):9.1f}")
                job_id = service.client().get("/v1/jobs", params={"limit": 1}).json()["data"][0]["id"]
                cpu0 = cpu_seconds(service.api.pid)
                rps, lat, errors = asyncio.run(poll_throughput(service, job_id, args.clients, args.seconds))
                api_ms = (cpu_seconds(service.api.pid) - cpu0) / len(lat) * 1000
                ms = [x * 1000 for x in lat]
                print(f"\nGET /v1/jobs/{{id}}: {args.clients} concurrent clients for {args.seconds:g} s: {rps} requests/s, "
                      f"latency p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms, "
                      f"{errors} errors ({len(lat)} requests); the API process used {api_ms:.2f} ms of CPU "
                      "per request")
            finally:
                service.stop()


if __name__ == "__main__":
    main()
