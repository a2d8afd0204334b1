"""The FastAPI application: ``create_app(settings)``.

The lifespan connects to Redis (``REDIS_URL``, else the embedded server's URL in
``$FITA_DATA_DIR/redis.url``), opens the artifact store and starts the sweep timer (workers/queue.py:
jobs whose worker died are re-queued within seconds, cancels past their grace period are enforced).
Every state lives in Redis and the store, so the API can restart at any time without losing anything.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from workers.datasets import DataSettings
from workers.predict import PredictorCache
from workers.queue import rq_connection, sweep
from workers.records import Records
from workers.redis_server import connect, connect_async, resolve_redis_url
from workers.settings import Settings
from workers.store import LocalStore
from workers.uploads import Uploads

from . import errors
from .auth import KeyRing
from .deps import Services
from .routes import charts, dashboard, datasets, health, jobs, observability

log = logging.getLogger(__name__)


async def _sweep_forever(svc: Services) -> None:
    while True:
        await asyncio.sleep(svc.settings.sweep_interval_s)
        try:
            await run_in_threadpool(sweep, svc.records, svc.rq, svc.settings)
        except Exception:  # noqa: BLE001 - a failed sweep (Redis restarting) is retried at the next tick
            log.warning("sweep failed; retrying in %.1f s", svc.settings.sweep_interval_s, exc_info=True)


class BodyLimit:
    """413 for a request body over the limit, checked from Content-Length and again while it streams
    (a chunked body has no Content-Length). Dataset uploads have their own, larger limit."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        upload = scope["path"].rstrip("/") == "/v1/datasets" and scope["method"] == "POST"
        limit = self.settings.max_upload_bytes if upload else self.settings.max_body_bytes
        setting = "FITA_MAX_UPLOAD_BYTES" if upload else "FITA_MAX_BODY_BYTES"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = errors.respond(413, "request_too_large", f"the request body is {int(declared)} bytes, over "
                                      f"the limit of {limit} bytes ({setting})")
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise errors.ApiError(413, "request_too_large", f"the request body is over the limit of {limit} "
                                      f"bytes ({setting})")
            return message
        await self.app(scope, counted, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        url = resolve_redis_url(settings)
        records = Records(connect(url))
        store = LocalStore(settings.artifacts_dir)
        svc = Services(settings=settings, records=records, rq=rq_connection(url), aredis=connect_async(url),
                       store=store, uploads=Uploads(records.r, store, quota_bytes=settings.quota_storage_bytes,
                                                   other_bytes=records.stored_job_bytes),
                       keys=KeyRing(settings), predictors=PredictorCache(store), data_settings=DataSettings.from_env())
        if svc.keys.empty():
            log.warning("no API keys are configured: every request will get a 401; create one with `fita keys "
                        "create` or set FITA_API_KEYS")
        app.state.services = svc
        sweeper = asyncio.create_task(_sweep_forever(svc))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            records.r.close()
            svc.rq.close()
            await svc.aredis.aclose()

    app = FastAPI(title="Fita", version="0.1.0", lifespan=lifespan,
                  description="Training as a service: submit a model and a training job as JSON or YAML, watch "
                              "the loss curve, download weights that load straight into PyTorch.")
    errors.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(charts.router)
    dashboard.install(app)             # GET /: the web dashboard (api/static)
    app.include_router(observability.router)
    observability.install(app)
    app.add_middleware(BodyLimit, settings=settings)
    if settings.cors_origins.strip():         # off unless configured: browsers on other origins get nothing
        app.add_middleware(CORSMiddleware, allow_origins=[o.strip() for o in settings.cors_origins.split(",")],
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type",
                                                                                  "Idempotency-Key", "Last-Event-ID"])
    return app
