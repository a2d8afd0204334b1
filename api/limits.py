"""Quotas and rate limits checked at the API's door, each answering with the limit it hit.

- Submissions per minute per API key (``FITA_SUBMIT_RATE``): 429 with Retry-After (a fixed one-minute
  window in Redis, shared by every API process).
- Queued jobs per tenant (``FITA_QUOTA_QUEUED``): 429. Running jobs per tenant (``FITA_QUOTA_RUNNING``)
  are not refused: the job waits in the queue (workers/train.py, ``deferred``).
- The size of one job, from its dry build: FLOPs per step (``FITA_MAX_FLOPS_PER_STEP``) and epochs x
  training samples (``FITA_MAX_SAMPLES_SEEN``): 422.
- Bytes stored per tenant, uploaded datasets plus its jobs' checkpoints and weights
  (``FITA_QUOTA_STORAGE_BYTES``): 413 for a submission or an upload once it is full (workers/uploads.py
  and the training loop keep the counts; a running job may take its tenant past the quota).
"""
from __future__ import annotations

import time

from workers.build import DryBuildResult

from .deps import Services
from .errors import ApiError


def check_submit_rate(svc: Services, key_id: str) -> None:
    window = int(time.time() // 60)
    counter = f"{svc.records.prefix}:rate:{key_id}:{window}"
    with svc.records.r.pipeline() as p:
        p.incr(counter)
        p.expire(counter, 120)
        count = p.execute()[0]
    if count > svc.settings.submit_rate:
        retry = max(1, int((window + 1) * 60 - time.time()) + 1)
        raise ApiError(429, "rate_limited", f"this API key has submitted {svc.settings.submit_rate} jobs in the "
                       f"current minute, the limit (FITA_SUBMIT_RATE); retry in {retry} s",
                       headers={"Retry-After": str(retry)})


def check_queue_quota(svc: Services, tenant: str) -> None:
    queued = svc.records.count_jobs(tenant, "queued")
    if queued >= svc.settings.quota_queued:
        raise ApiError(429, "quota_exceeded", f"you have {queued} queued jobs, the quota (FITA_QUOTA_QUEUED="
                       f"{svc.settings.quota_queued}); wait for some to start or cancel some",
                       headers={"Retry-After": "30"})


def check_storage_quota(svc: Services, tenant: str) -> None:
    quota = svc.settings.quota_storage_bytes
    stored = svc.uploads.stored_bytes(tenant) + svc.records.stored_job_bytes(tenant)
    if quota and stored >= quota:
        raise ApiError(413, "storage_quota_exceeded", f"you store {stored} bytes (datasets, checkpoints and "
                       f"weights), your quota is {quota} (FITA_QUOTA_STORAGE_BYTES); delete datasets or finished jobs "
                       "before submitting more")


def check_job_size(svc: Services, result: DryBuildResult) -> None:
    s = svc.settings
    if result.flops_per_step > s.max_flops_per_step:
        raise ApiError(422, "limit_exceeded", f"one training step needs about {result.flops_per_step:.3g} FLOPs, "
                       f"over the limit of {s.max_flops_per_step:.3g} (FITA_MAX_FLOPS_PER_STEP); use a smaller "
                       "model or batch", "model")
    epochs = result.spec["training"]["epochs"]
    seen = epochs * result.dataset["n_train"]
    if seen > s.max_samples_seen:
        raise ApiError(422, "limit_exceeded", f"training.epochs: {epochs} epochs x {result.dataset['n_train']} "
                       f"training samples = {seen:.3g} samples, over the limit of {s.max_samples_seen:.3g} "
                       "(FITA_MAX_SAMPLES_SEEN)", "training.epochs")
