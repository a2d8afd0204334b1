"""The loss curve as a picture for READMEs and chats: ``GET /v1/jobs/{id}/metrics.svg`` and ``.png``
(train and validation loss against the step, drawn by the server in api/charts.py)."""
from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from .. import charts
from ..deps import Services, ServicesDep, TenantDep
from ..schemas import ERRORS
from .jobs import find_job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)

Width = Annotated[int, Query(ge=320, le=2400, description="the picture's width in CSS pixels")]
Height = Annotated[int, Query(ge=200, le=1600, description="the picture's height in CSS pixels")]
YScale = Annotated[Literal["auto", "linear", "log"], Query(description="the loss axis; auto: logarithmic when "
                                                           "the loss spans more than a factor of 30")]


def _figure(svc: Services, tenant: str, job_id: str, width: int, height: int, yscale: str) -> charts.Figure:
    job = find_job(svc, tenant, job_id)
    metrics = svc.records.read_metrics(job_id)
    progress = job.get("progress") or {}
    parts = [job["status"]]
    if progress.get("step") is not None:
        total = progress.get("total_steps")
        parts.append(f"step {progress['step']}" + (f" of {total}" if total else ""))
    last_val = (job.get("latest_metrics") or {}).get("validation") or {}
    if last_val.get("loss") is not None:
        parts.append(f"validation loss {charts.fmt(last_val['loss'])}")
    if last_val.get("accuracy") is not None:
        parts.append(f"accuracy {last_val['accuracy']:.1%}")
    parts.append(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.get("updated_at") or job["created_at"])))
    title = f"{job['spec'].get('name') or 'job'}  ·  {job_id}"
    return charts.loss_chart(metrics, title, "  ·  ".join(parts), width, height, yscale)


_HEADERS = {"Cache-Control": "no-cache"}


@router.get("/{job_id}/metrics.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}},
            summary="The loss curve as an SVG picture (train and validation loss against the step)")
def metrics_svg(job_id: str, svc: ServicesDep, tenant: TenantDep, width: Width = 800, height: Height = 450,
                yscale: YScale = "auto"):
    fig = _figure(svc, tenant, job_id, width, height, yscale)
    return Response(charts.to_svg(fig), media_type="image/svg+xml", headers=_HEADERS)


@router.get("/{job_id}/metrics.png", response_class=Response,
            responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
            summary="The loss curve as a PNG picture (scale=2 for high-density screens)")
def metrics_png(job_id: str, svc: ServicesDep, tenant: TenantDep, width: Width = 800, height: Height = 450,
                yscale: YScale = "auto", scale: Annotated[int, Query(ge=1, le=3)] = 1):
    fig = _figure(svc, tenant, job_id, width, height, yscale)
    return Response(charts.to_png(fig, scale), media_type="image/png", headers=_HEADERS)
