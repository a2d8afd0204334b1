"""/v1/jobs: submit (after a dry build), list, inspect, follow, stop and delete training jobs; their
metrics, events, checkpoints, weights and predictions."""
from __future__ import annotations

import csv
import io
import json
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from workers.build import dry_build
from workers.checkpoints import list_checkpoints
from workers.queue import discard, enqueue
from workers.records import (STATUSES, TERMINAL, IdempotencyMismatch, InvalidTransition, JobNotFound, decode_event,
                             decode_job)
from workers.spec import SpecError, parse_spec
from workers.store import ArtifactNotFound
from workers.train import best_weights_key, weights_key

from ..deps import Services, ServicesDep, TenantDep
from ..errors import ApiError, not_found
from ..limits import check_job_size, check_queue_quota, check_storage_quota, check_submit_rate
from ..schemas import (ERRORS, CheckpointList, Deleted, DryRun, Event, EventList, Job, JobList, Metrics, PredictRequest,
                       PredictResponse)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERRORS)

_SPEC_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "a job spec: name, model, data, loss, "
                                    "optimizer, scheduler, training, resources (see the README)"}},
    "application/yaml": {"schema": {"type": "string", "description": "the same spec as YAML"}}}}}
# dry builds seed and restore the engine's global RNG: one at a time
_dry_build_lock = threading.Lock()


async def _dry_build(request: Request, svc: Services, tenant: str):
    body = await request.body()
    content_type = request.headers.get("content-type")

    def check():
        spec = parse_spec(body, content_type, svc.limits)
        with _dry_build_lock:
            return dry_build(spec, limits=svc.limits, data_settings=svc.data_settings,
                             resolve_upload=svc.uploads.resolver(tenant))
    return await run_in_threadpool(check)


def find_job(svc: Services, tenant: str, job_id: str) -> dict:
    """The tenant's job, or the 404 an unknown id gets (another tenant's job looks just as unknown)."""
    job = svc.records.get_job(job_id, tenant)
    if job is None:
        raise not_found("job", job_id, "job_id")
    return job


@router.post("/validate", response_model=DryRun, openapi_extra=_SPEC_BODY,
             summary="Check a spec: the schema, then a dry build and one forward/backward pass on a tiny batch")
async def validate_job(request: Request, svc: ServicesDep, tenant: TenantDep):
    result = await _dry_build(request, svc, tenant)
    return DryRun(**result.to_dict())


@router.post("", status_code=201, response_model=Job, openapi_extra=_SPEC_BODY,
             summary="Submit a training job (validated as /validate does before anything is queued)")
async def create_job(request: Request, svc: ServicesDep, tenant: TenantDep,
                     idempotency_key: Annotated[str | None, Header(max_length=255)] = None):
    await run_in_threadpool(check_submit_rate, svc, request.state.key_id)
    result = await _dry_build(request, svc, tenant)
    check_job_size(svc, result)
    estimate = {k: v for k, v in result.to_dict().items() if k in ("parameters", "trainable_parameters",
                "flops_per_step", "memory", "steps_per_epoch", "total_steps", "warnings")}

    def submit():
        check_queue_quota(svc, tenant)
        check_storage_quota(svc, tenant)
        job, created = svc.records.create_job(tenant, result.spec, idempotency_key=idempotency_key,
                                              meta={"estimate": estimate})
        if created:
            enqueue(svc.records, svc.rq, job["id"], svc.settings)
            job = svc.records.get_job(job["id"])
        return job, created
    try:
        job, created = await run_in_threadpool(submit)
    except IdempotencyMismatch as e:
        raise ApiError(422, "idempotency_key_reused", f"this Idempotency-Key was already used for job {e.args[0]}, "
                       "submitted with a different spec; use a new key for a new job", "idempotency-key") from None
    headers = {"Location": f"/v1/jobs/{job['id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(Job.of(job).model_dump(mode="json"), status_code=201 if created else 200, headers=headers)


@router.get("", response_model=JobList, summary="Your jobs, newest first")
def list_jobs(svc: ServicesDep, tenant: TenantDep, status: Literal[STATUSES] | None = None,  # type: ignore[valid-type]
              after: str | None = None, limit: Annotated[int, Query(ge=1, le=100)] = 20):
    try:
        jobs, has_more = svc.records.list_jobs(tenant, status, after, limit)
    except JobNotFound:
        raise ApiError(400, "invalid_cursor", f"after: {after!r} is not one of your jobs; pass the last_id of the "
                       "previous page", "after") from None
    return JobList(data=[Job.of(j) for j in jobs], has_more=has_more, first_id=jobs[0]["id"] if jobs else None,
                   last_id=jobs[-1]["id"] if jobs else None)


@router.get("/{job_id}", response_model=Job, summary="One job: status, phase, progress, latest metrics, error")
async def get_job(job_id: str, svc: ServicesDep, tenant: TenantDep):
    # the most polled route: one HGETALL on the event loop, no thread hop
    job = decode_job(await svc.aredis.hgetall(svc.records.job_key(job_id)), tenant)
    if job is None:
        raise not_found("job", job_id, "job_id")
    return Job.of(job)


@router.get("/{job_id}/metrics", response_model=Metrics, responses={200: {"content": {"text/csv": {}}}},
            summary="The loss curve, column-wise (or ?format=csv)")
def get_metrics(job_id: str, svc: ServicesDep, tenant: TenantDep, format: Literal["json", "csv"] = "json",
                step_from: Annotated[int | None, Query(ge=0)] = None,
                step_to: Annotated[int | None, Query(ge=0)] = None):
    find_job(svc, tenant, job_id)
    curves = svc.records.read_metrics(job_id, step_from, step_to)
    if format == "json":
        return Metrics(job_id=job_id, **curves)
    columns = list(dict.fromkeys(c for kind in curves.values() for c in kind))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", *columns])
    for split, cols in curves.items():
        n = len(next(iter(cols.values()), []))
        for i in range(n):
            writer.writerow([split, *("" if cols.get(c) is None or cols[c][i] is None else cols[c][i]
                                      for c in columns)])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{job_id}-metrics.csv"'})


@router.get("/{job_id}/events", response_model=EventList, responses={200: {"content": {"text/event-stream": {}}}},
            summary="The job's event log; with Accept: text/event-stream, live server-sent events")
async def get_events(job_id: str, request: Request, svc: ServicesDep, tenant: TenantDep,
                     after: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
                     last_event_id: Annotated[str | None, Header()] = None):
    job = await run_in_threadpool(find_job, svc, tenant, job_id)
    cursor = last_event_id or after
    try:
        events = await run_in_threadpool(svc.records.read_events, job_id, cursor, limit + 1)
    except ValueError:
        raise ApiError(400, "invalid_cursor", f"{cursor!r} is not an event id (they look like 1732800000000-0)",
                       "Last-Event-ID" if last_event_id else "after") from None
    if "text/event-stream" not in request.headers.get("accept", ""):
        return EventList(data=[Event(**e) for e in events[:limit]], has_more=len(events) > limit)
    return StreamingResponse(_stream(request, svc, job_id, job["status"], events, cursor),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(event: dict) -> str:
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"


async def _stream(request: Request, svc: Services, job_id: str, status: str, backlog: list, cursor: str | None):
    """Backlog first, then new events as they come (a blocking XREAD on the asyncio client, so a
    follower holds no thread), a comment line as keep-alive every ``sse_keepalive_s``; ends after the
    job's final event (a job already finished: after the backlog)."""
    yield "retry: 3000\n\n"
    for event in backlog:
        cursor = event["id"]
        yield _sse(event)
    final = status in TERMINAL
    key = svc.records.events_key(job_id)
    while not final and not await request.is_disconnected():
        got = await svc.aredis.xread({key: cursor or "0-0"}, block=int(svc.settings.sse_keepalive_s * 1000),
                                     count=1000)
        events = [decode_event(i, f) for _, entries in got for i, f in entries]
        if not events:
            yield ": keep-alive\n\n"
            final = not await svc.aredis.exists(svc.records.job_key(job_id))    # deleted meanwhile
            continue
        for event in events:
            cursor = event["id"]
            yield _sse(event)
            final = final or event["type"] in TERMINAL


@router.get("/{job_id}/checkpoints", response_model=CheckpointList, summary="The job's checkpoints, newest first")
def get_checkpoints(job_id: str, svc: ServicesDep, tenant: TenantDep):
    find_job(svc, tenant, job_id)
    return CheckpointList(data=[i.to_dict() for i in list_checkpoints(svc.store, job_id)])


@router.get("/{job_id}/checkpoints/{step}", response_class=FileResponse,
            summary="Download one checkpoint (.safetensors: model, optimizer, scheduler and RNG state)")
def download_checkpoint(job_id: str, step: int, svc: ServicesDep, tenant: TenantDep):
    find_job(svc, tenant, job_id)
    info = next((i for i in list_checkpoints(svc.store, job_id) if i.step == step), None)
    if info is None:
        raise ApiError(404, "checkpoint_not_found", f"job {job_id} has no checkpoint at step {step}; "
                       f"GET /v1/jobs/{job_id}/checkpoints lists them", "step")
    return FileResponse(svc.store.local_path(info.key), media_type="application/octet-stream",
                        filename=f"{job_id}-step-{step}.safetensors")


@router.get("/{job_id}/weights", response_class=FileResponse,
            summary="Download the trained weights (.safetensors, PyTorch's state_dict keys; spec and "
                    "preprocessing in the metadata)")
def download_weights(job_id: str, svc: ServicesDep, tenant: TenantDep, which: Literal["final", "best"] = "final"):
    job = find_job(svc, tenant, job_id)
    key = weights_key(job_id) if which == "final" else best_weights_key(job_id)
    path = svc.store.local_path(key)
    if not path.is_file():
        hint = (f"it is {job['status']}; weights are written when it succeeds"
                if job["status"] != "succeeded" else "its weights are missing from the artifact store")
        ckpt = " (its checkpoints are at GET /v1/jobs/{id}/checkpoints)" if job.get("latest_checkpoint") else ""
        raise ApiError(404, "weights_not_found", f"job {job_id} has no {which} weights: {hint}{ckpt}", "job_id")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{job_id}-{which}.safetensors")


def _control(svc: Services, tenant: str, job_id: str, action) -> Job:
    find_job(svc, tenant, job_id)
    try:
        action()
    except InvalidTransition as e:
        raise ApiError(409, "invalid_state", str(e), "job_id") from None
    return Job.of(svc.records.get_job(job_id))


@router.post("/{job_id}/cancel", response_model=Job,
             summary="Cancel: a queued job at once, a running one at its next step (checkpoints are kept)")
def cancel_job(job_id: str, svc: ServicesDep, tenant: TenantDep):
    def cancel():
        job = svc.records.get_job(job_id)
        if job["status"] in TERMINAL:
            raise InvalidTransition(f"job {job_id} already {job['status']}; there is nothing to cancel")
        if svc.records.request_cancel(job_id) == "cancelled":
            discard(svc.rq, job.get("rq_job"))
    return _control(svc, tenant, job_id, cancel)


@router.post("/{job_id}/pause", response_model=Job,
             summary="Pause: checkpoint at the next step and free the worker (status paused)")
def pause_job(job_id: str, svc: ServicesDep, tenant: TenantDep):
    def pause():
        job = svc.records.get_job(job_id)
        if svc.records.request_pause(job_id) == "paused" and job["status"] == "queued":
            discard(svc.rq, job.get("rq_job"))     # resume enqueues it again
    return _control(svc, tenant, job_id, pause)


@router.post("/{job_id}/resume", response_model=Job, summary="Resume a paused job from its checkpoint")
def resume_job(job_id: str, svc: ServicesDep, tenant: TenantDep):
    def resume():
        svc.records.resume(job_id)
        enqueue(svc.records, svc.rq, job_id, svc.settings)
    return _control(svc, tenant, job_id, resume)


@router.delete("/{job_id}", response_model=Deleted, summary="Delete a finished job and all its artifacts")
def delete_job(job_id: str, svc: ServicesDep, tenant: TenantDep):
    job = find_job(svc, tenant, job_id)
    if job["status"] not in (*TERMINAL, "paused"):
        raise ApiError(409, "invalid_state", f"job {job_id} is {job['status']}; cancel it before deleting it", "job_id")
    svc.records.delete_job(job_id, force=True)
    svc.store.delete_prefix(f"jobs/{job_id}")
    svc.predictors.forget(job_id)
    return Deleted(id=job_id, object="training.job")


@router.post("/{job_id}/predict", response_model=PredictResponse,
             summary="Run the trained model on raw inputs (the job's preprocessing is applied)")
def predict(job_id: str, body: PredictRequest, svc: ServicesDep, tenant: TenantDep,
            which: Literal["final", "best"] = "final"):
    job = find_job(svc, tenant, job_id)
    try:
        predictor = svc.predictors.get(job_id, which)
    except ArtifactNotFound:
        raise ApiError(409, "not_ready", f"job {job_id} is {job['status']}; predictions need a job that succeeded",
                       "job_id") from None
    try:
        out = predictor.predict(body.inputs)
    except SpecError as e:
        raise ApiError(422, e.code, e.message, e.param) from None
    return PredictResponse(job_id=job_id, which=which, **out)
