"""Liveness and readiness: /healthz (the process answers) and /readyz (Redis answers; workers per queue)."""
from __future__ import annotations

from typing import Literal

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from workers.queue import QUEUES

from ..deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up")
async def healthz():
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ok", "no_workers", "unavailable"]
    redis: str
    queues: dict[str, dict[str, int]] | None = Field(None, description="per queue: workers, queued")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "Redis is "
            "unreachable, or no worker is registered"}},
            summary="Redis is reachable; how many workers and queued jobs each queue has")
def readyz(svc: ServicesDep):
    try:
        svc.rq.ping()
        queues = {}
        for name in QUEUES:
            q = Queue(name, connection=svc.rq, serializer=JSONSerializer)
            queues[name] = {"workers": len(Worker.all(queue=q)), "queued": q.count}
    except (redis.ConnectionError, redis.TimeoutError) as e:
        return JSONResponse({"status": "unavailable", "redis": f"unreachable: {e}"}, status_code=503)
    ready = any(q["workers"] for q in queues.values())
    return JSONResponse({"status": "ok" if ready else "no_workers", "redis": "ok", "queues": queues},
                        status_code=200 if ready else 503)
