"""A load run on loopback: many job submissions queued at once while many clients poll their status,
then every job cancelled with a worker running. It starts its own service (a real Redis, the API,
`fita api`) in a temporary data directory and stops it at the end; it only talks to 127.0.0.1.

    .venv/bin/python benchmarks/load.py [--jobs 1000] [--concurrency 50] [--pollers 50]

1. No worker runs, so submissions stay queued (FITA_QUOTA_QUEUED and FITA_SUBMIT_RATE are raised past
   --jobs). --jobs small iris jobs are submitted --concurrency at a time (one asyncio loop, one
   keep-alive connection per client, raw HTTP/1.1: httpx's async client costs more CPU per request
   than the server on the same cores) while --pollers clients GET /v1/jobs/{id} of jobs already
   submitted, in a loop, until the last submission is answered.
2. Checks: every submit was a 201 and every poll a 200; none lost: GET /v1/jobs lists exactly the
   submitted ids, all queued, and the RQ queue ``cpu`` holds that many jobs. Prints the submit
   throughput, submit p50/p99 latency and poll p50/p99 latency.
3. One worker starts; every job is cancelled (POST /v1/jobs/{id}/cancel, --concurrency at a time;
   every answer a 200), then each must end ``cancelled`` and the RQ queue must drain, within --timeout.
Exits 1 when a check fails. Bounded in count and time.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis
from rq import Queue
from rq.serializers import JSONSerializer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from service_fixture import start_service  # noqa: E402
from workers.redis_server import RedisServer  # noqa: E402

# long enough (epochs) that a job the worker has started is still running when its cancel arrives
SPEC = {"name": "load", "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16},
                                             {"type": "ReLU"}, {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01}, "training": {"epochs": 200, "seed": 0},
        "resources": {"device": "cpu"}}


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


class Conn:
    """One keep-alive HTTP/1.1 connection, raw: a request, its status and body."""

    def __init__(self, host: str, port: int, auth: str):
        self.host, self.port, self.auth = host, port, auth
        self.reader = self.writer = None

    async def open(self) -> "Conn":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, float]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: {self.auth}\r\n"
                "Accept: application/json\r\n")
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        t = time.perf_counter()
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in raw.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        payload = await self.reader.readexactly(length)
        return int(raw.split(b" ", 2)[1]), payload, time.perf_counter() - t

    def close(self) -> None:
        self.writer.close()


async def queue_and_poll(url: httpx.URL, auth: str, jobs: int, concurrency: int, pollers: int) -> dict:
    body = json.dumps(SPEC).encode()
    todo = iter(range(jobs))
    ids: list[str] = []
    out = {"submit": [], "poll": [], "submit_errors": [], "poll_errors": [], "ids": ids}
    done = asyncio.Event()

    async def submitter():
        c = await Conn(url.host, url.port, auth).open()
        try:
            for _ in todo:
                status, payload, dt = await c.request("POST", "/v1/jobs", body)
                out["submit"].append(dt)
                if status != 201:
                    out["submit_errors"].append((status, payload[:300]))
                else:
                    ids.append(json.loads(payload)["id"])
        finally:
            c.close()

    async def poller(rng: random.Random):
        c = await Conn(url.host, url.port, auth).open()
        try:
            while not done.is_set():
                if not ids:
                    await asyncio.sleep(0.005)
                    continue
                status, payload, dt = await c.request("GET", f"/v1/jobs/{rng.choice(ids)}")
                out["poll"].append(dt)
                if status != 200:
                    out["poll_errors"].append((status, payload[:300]))
        finally:
            c.close()

    polling = [asyncio.create_task(poller(random.Random(i))) for i in range(pollers)]
    t0 = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    out["submit_s"] = time.perf_counter() - t0
    done.set()
    await asyncio.gather(*polling)
    return out


async def cancel_all(url: httpx.URL, auth: str, ids: list[str], concurrency: int) -> dict:
    todo = iter(ids)
    out = {"cancel": [], "errors": [], "statuses": {}}

    async def canceller():
        c = await Conn(url.host, url.port, auth).open()
        try:
            for job_id in todo:
                status, payload, dt = await c.request("POST", f"/v1/jobs/{job_id}/cancel")
                out["cancel"].append(dt)
                if status != 200:
                    out["errors"].append((job_id, status, payload[:300]))
                else:
                    s = json.loads(payload)["status"]
                    out["statuses"][s] = out["statuses"].get(s, 0) + 1
        finally:
            c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(canceller() for _ in range(concurrency)))
    out["seconds"] = time.perf_counter() - t0
    return out


def list_all(client: httpx.Client) -> list[dict]:
    jobs, after = [], None
    while True:
        page = client.get("/v1/jobs", params={"limit": 100, **({"after": after} if after else {})})
        page.raise_for_status()
        jobs += page.json()["data"]
        if not page.json()["has_more"]:
            return jobs
        after = page.json()["last_id"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--pollers", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=600.0, help="bound on waiting for the cancels to settle (s)")
    args = ap.parse_args()
    print(f"{datetime.date.today()}  {platform.processor() or platform.machine()}  {os.cpu_count()} cores  "
          f"Python {platform.python_version()}")
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as tmp:
        with RedisServer(Path(tmp), write_url_file=False) as redis_server:
            limit = str(args.jobs * 10)
            service = start_service(Path(tmp), redis_server.url, workers=0, FITA_QUOTA_QUEUED=limit,
                                    FITA_SUBMIT_RATE=limit)
            try:
                url = httpx.URL(service.url)
                client = service.client()
                auth = client.headers["authorization"]
                client.post("/v1/jobs/validate", json=SPEC).raise_for_status()   # warm-up: imports, first dry build

                # 1. queue them all while others poll
                r = asyncio.run(queue_and_poll(url, auth, args.jobs, args.concurrency, args.pollers))
                sub = [x * 1000 for x in r["submit"]]
                poll = [x * 1000 for x in r["poll"]]
                print(f"\n{args.jobs} submissions, {args.concurrency} at a time, no worker, while {args.pollers} clients "
                      f"poll GET /v1/jobs/{{id}}:")
                print(f"  submit: {len(sub) / r['submit_s']:.0f} jobs/s ({r['submit_s']:.1f} s), latency p50 "
                      f"{pct(sub, 50):.1f} ms, p99 {pct(sub, 99):.1f} ms, max {max(sub):.1f} ms")
                print(f"  poll:   {len(poll)} requests ({len(poll) / r['submit_s']:.0f}/s), latency p50 "
                      f"{pct(poll, 50):.1f} ms, p99 {pct(poll, 99):.1f} ms, max {max(poll):.1f} ms\n")
                check(not r["submit_errors"], f"every submit a 201 ({len(r['submit_errors'])} not: "
                      f"{r['submit_errors'][:3]})")
                check(not r["poll_errors"], f"every poll a 200 ({len(r['poll_errors'])} not: {r['poll_errors'][:3]})")

                # 2. none lost
                ids = r["ids"]
                listed = list_all(client)
                check(len(ids) == len(set(ids)) == args.jobs, f"{len(set(ids))} distinct ids answered")
                check(sorted(j["id"] for j in listed) == sorted(ids),
                      f"GET /v1/jobs lists exactly the {len(ids)} ids ({len(listed)} listed)")
                check(all(j["status"] == "queued" for j in listed), "all queued")
                conn = redis.Redis.from_url(redis_server.url)
                queued = Queue("cpu", connection=conn, serializer=JSONSerializer).count
                check(queued == args.jobs, f"the RQ queue cpu holds {queued} jobs")

                # 3. a worker starts; cancel them all
                service.start_worker()
                service.wait_ready()
                c = asyncio.run(cancel_all(url, auth, ids, args.concurrency))
                ms = [x * 1000 for x in c["cancel"]]
                print(f"\ncancel, {args.concurrency} at a time, one worker running: {len(ms) / c['seconds']:.0f}/s, "
                      f"latency p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms; answered {c['statuses']}")
                check(not c["errors"], f"every cancel a 200 ({len(c['errors'])} not: {c['errors'][:3]})")
                t0 = time.perf_counter()
                all_cancelled = None
                while True:
                    statuses = {}
                    for j in list_all(client):
                        statuses[j["status"]] = statuses.get(j["status"], 0) + 1
                    if all_cancelled is None and statuses == {"cancelled": args.jobs}:
                        all_cancelled = time.perf_counter() - t0
                    left = Queue("cpu", connection=conn, serializer=JSONSerializer).count
                    if (statuses == {"cancelled": args.jobs} and left == 0) or time.perf_counter() - t0 > args.timeout:
                        break
                    time.sleep(0.5)
                # the worker still dequeues each cancelled job's RQ job (and skips it)
                print(f"after the cancels: every record cancelled after "
                      f"{'-' if all_cancelled is None else f'{all_cancelled:.1f} s'}, the RQ queue drained after "
                      f"{time.perf_counter() - t0:.1f} s: {statuses}, RQ queue cpu holds {left}")
                check(statuses == {"cancelled": args.jobs}, f"each of the {args.jobs} ends cancelled")
                check(left == 0, "the RQ queue cpu drained")
                conn.close()
                client.close()
            finally:
                service.stop()
    print("\nall checks passed" if not failures else f"\n{len(failures)} checks FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
