"""``GET /metrics`` in Prometheus's text format (names prefixed ``fita_``): jobs by status, queue depths,
workers per queue, the training throughput of running jobs, and this API process's request latency."""
from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from starlette.concurrency import run_in_threadpool

from workers.queue import QUEUES

router = APIRouter(tags=["health"])


class _ServiceCollector:
    """Read from Redis at scrape time: the numbers every API process shares."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        svc = self.app.state.services
        jobs = GaugeMetricFamily("fita_jobs", "Jobs by status", labels=["status"])
        for status, n in svc.records.status_counts().items():
            jobs.add_metric([status], n)
        depth = GaugeMetricFamily("fita_queue_depth", "RQ jobs waiting per queue", labels=["queue"])
        workers = GaugeMetricFamily("fita_workers", "Live workers per queue", labels=["queue"])
        for name in QUEUES:
            q = Queue(name, connection=svc.rq, serializer=JSONSerializer)
            depth.add_metric([name], q.count)
            workers.add_metric([name], len(Worker.all(queue=q)))
        samples, steps = 0.0, 0.0
        for job in filter(None, map(svc.records.get_job, svc.records.active_jobs())):
            rate = (job.get("progress") or {}).get("samples_per_s") or 0.0
            if job["status"] == "running" and rate:
                samples += rate
                steps += rate / job["spec"]["data"]["batch_size"]
        yield from (jobs, depth, workers,
                    GaugeMetricFamily("fita_training_samples_per_second", "Samples/s of all running jobs", samples),
                    GaugeMetricFamily("fita_training_steps_per_second", "Optimizer steps/s of all running jobs", steps))


def install(app) -> None:
    """A registry per app (tests build several apps in one process), the collector and the timing
    middleware; labels use the route's template (``/v1/jobs/{job_id}``), never the raw path."""
    registry = CollectorRegistry()
    registry.register(_ServiceCollector(app))
    latency = Histogram("fita_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
                        registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    app.state.prometheus = registry
    app.add_middleware(_Timing, histogram=latency)


class _Timing:
    """Pure ASGI (no BaseHTTPMiddleware: it would wrap a request body's errors, such as BodyLimit's 413,
    into an exception group and a 500)."""

    def __init__(self, app, histogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(scope["method"], route, str(status[0])).observe(time.perf_counter() - t0)


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
async def metrics(request: Request):
    body = await run_in_threadpool(generate_latest, request.app.state.prometheus)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
