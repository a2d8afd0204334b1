"""Job records in Redis: the truth about a job (RQ's own job keys expire; its status is a hint).

Keys (``prefix`` defaults to "fita")::

    fita:job:<id>                 hash: the record; every value is JSON (see FIELDS below)
    fita:job:<id>:metrics         stream: one entry per metrics record {kind, step, data (JSON), a (attempt)}
    fita:job:<id>:events          stream: the job's event log {type, time, data (JSON)}; ids are SSE ids
    fita:jobs                     sorted set: every job id, scored by created_at (newest first = ZREVRANGE)
    fita:active                   set: the jobs someone must run (queued, running, cancelling), for the sweep
    fita:status_counts            hash: status -> how many jobs are in it
    fita:tenant:<t>:job_bytes     hash: job id -> bytes of its artifacts (the storage quota)
    fita:tenant:<t>:queued        set: the tenant's queued jobs; :running, its running and cancelling ones (quotas)
    fita:tenant:<tenant>:jobs     sorted set: the same, per tenant
    fita:idem:<tenant>:<sha256>   string: the job id an Idempotency-Key created (24 h)

Fencing. ``acquire_attempt`` increments the job's ``attempt`` and makes it the ``lease``. Every write a
training attempt makes (progress, metrics, events, checkpoint records, its final status) names its
attempt id and is refused atomically — by a Lua script, or by WATCH/MULTI for status changes — when the
lease has moved on (``LeaseLost``). ``check_lease`` is one Redis call per step: it tells the loop whether
it still owns the job and whether a cancel or pause was requested, and records a heartbeat.

Metrics are idempotent by step: the record keeps a high-water step per kind (``hw_train``,
``hw_validation``) and a record at or below it is skipped, in the same script that appends. A resumed
attempt calls ``trim_metrics_after(step)`` with its checkpoint's step first: records past the checkpoint
(written by the attempt that died) are deleted and the high-water mark lowered, so the curve is
re-recorded by the attempt whose weights survive — never duplicated, never missing. On the CPU with a
fixed seed the re-recorded values equal the deleted ones bitwise. The trim relies on records arriving in
non-decreasing step order (a validation record right after the train step it follows), as a loop writes
them.

Stored JSON is strict: non-finite floats (a NaN loss) are stored as null.
"""
from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import secrets
import time
from typing import Any, Callable

import redis

from .store import validate_id

STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled", "paused")
ACTIVE = frozenset({"queued", "running", "cancelling"})   # a worker owes these jobs some work
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# which status may follow which; a terminal status is final (only DELETE removes the job)
TRANSITIONS = {
    "queued": {"running", "paused", "cancelled", "failed"},
    "running": {"queued", "cancelling", "paused", "succeeded", "failed", "cancelled"},
    "cancelling": {"cancelled", "succeeded", "failed"},
    "paused": {"queued", "cancelled"},
    "succeeded": set(), "failed": set(), "cancelled": set(),
}
PHASES = ("loading_data", "training", "evaluating", "saving")
EVENT_TYPES = ("queued", "started", "epoch_end", "checkpoint", "interrupted", "cancelled", "succeeded", "failed",
               "paused")
_STATUS_EVENT = {"queued": "queued", "running": "started", "succeeded": "succeeded", "failed": "failed",
                 "cancelled": "cancelled", "paused": "paused"}
METRIC_COLUMNS = {"train": ("step", "epoch", "loss", "lr"), "validation": ("epoch", "step", "loss", "accuracy")}
# fields only this module writes (update_job refuses them)
_PROTECTED = {"id", "tenant", "created_at", "status", "status_transitions", "attempt", "lease", "control",
              "restarts", "hw_train", "hw_validation", "last_train", "last_validation", "heartbeat_at"}
_STREAM_ID = re.compile(r"\d+-\d+")
_STALE = "FITA_STALE_ATTEMPT"


class RecordsError(Exception):
    """Base of this module's errors."""


class JobNotFound(RecordsError, LookupError):
    pass


class InvalidTransition(RecordsError):
    """The job's status does not allow this (the API answers 409)."""


class LeaseLost(RecordsError):
    """This attempt no longer owns the job: stop without writing anything more."""


class IdempotencyMismatch(RecordsError):
    """The Idempotency-Key was used for a job made from a different spec (``args[0]``: that job's id)."""


class QuotaReached(RecordsError):
    """The tenant runs as many jobs as its quota allows; the job waits in the queue."""


class Lease(str, enum.Enum):
    """What ``check_lease`` tells a training loop to do."""
    OK = "ok"          # carry on
    LOST = "lost"      # another attempt owns the job (or it was re-queued/finished): stop, write nothing
    CANCEL = "cancel"  # the user cancelled: stop, keep the checkpoints, transition to cancelled
    PAUSE = "pause"    # the user paused: checkpoint, transition to paused


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


def zpage(client: redis.Redis, key: str, after: str | None, limit: int) -> tuple[list[str], bool]:
    """One page of a sorted set's members, highest score (newest) first: ``(ids, has_more)``; ``after``
    is the last id of the previous page (JobNotFound, a LookupError, if it is not in the set)."""
    start = _rank_after(client, key, after)
    ids = client.zrevrange(key, start, start + limit)
    return ids[:limit], len(ids) > limit


def _rank_after(client: redis.Redis, key: str, after: str | None) -> int:
    """Where the page after the member ``after`` starts (newest first)."""
    if after is None:
        return 0
    rank = client.zrevrank(key, after)
    if rank is None:
        raise JobNotFound(after)
    return rank + 1


def decode_job(raw: dict, tenant: str | None = None) -> dict | None:
    """A job hash as HGETALL returns it -> the record ``Records.get_job`` returns (None if empty or another
    tenant's). Shared with readers that fetch the hash themselves (the API's async path)."""
    if not raw:
        return None
    job = {k: json.loads(v) for k, v in raw.items()}
    if tenant is not None and job["tenant"] != tenant:
        return None
    for internal in ("hw_train", "hw_validation"):
        job.pop(internal, None)
    job["latest_metrics"] = {"train": job.pop("last_train", None), "validation": job.pop("last_validation", None)}
    return job


def json_safe(obj):
    """``obj`` with non-finite floats replaced by None (and numpy/engine scalars by Python numbers), so the
    JSON is strict."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item"):  # numpy / engine scalars
        return json_safe(obj.item())
    return obj


def _enc(value) -> str:
    return json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False)


# ---- Lua: the fenced writes -------------------------------------------------------------------------
# KEYS[1] is always the job hash; ARGV[1] the attempt id, which must equal the hash's lease.
_FENCE = "if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return redis.error_reply('" + _STALE + "') end\n"

# KEYS[2] events; ARGV[2] n field pairs, the pairs, then event type ('' for none), time, data
_FENCED_WRITE = _FENCE + """
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * n)) end
local e = 3 + 2 * n
if ARGV[e] == '' then return '' end
return redis.call('XADD', KEYS[2], '*', 'type', ARGV[e], 'time', ARGV[e + 1], 'data', ARGV[e + 2])
"""

# KEYS[2] metrics; ARGV[2..] triplets kind, step, record JSON. Skips steps at or below the high-water mark.
_APPEND_METRICS = _FENCE + """
local hw, top, last, written = {}, {}, {}, 0
for i = 2, #ARGV, 3 do
  local kind, step = ARGV[i], tonumber(ARGV[i + 1])
  if hw[kind] == nil then hw[kind] = tonumber(redis.call('HGET', KEYS[1], 'hw_' .. kind) or '-1') end
  if step > hw[kind] then
    redis.call('XADD', KEYS[2], '*', 'kind', kind, 'step', ARGV[i + 1], 'data', ARGV[i + 2], 'a', ARGV[1])
    hw[kind], top[kind], last[kind], written = step, ARGV[i + 1], ARGV[i + 2], written + 1
  end
end
for kind, rec in pairs(last) do redis.call('HSET', KEYS[1], 'hw_' .. kind, top[kind], 'last_' .. kind, rec) end
return written
"""

# KEYS[2] metrics; ARGV[2] step: delete the records past it (they sit at the stream's end)
_TRIM_METRICS = _FENCE + """
local s, n = tonumber(ARGV[2]), 0
while true do
  local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 100)
  local done = #entries == 0
  for _, e in ipairs(entries) do
    local f, step = e[2], nil
    for j = 1, #f, 2 do if f[j] == 'step' then step = tonumber(f[j + 1]) end end
    if step <= s then done = true break end
    redis.call('XDEL', KEYS[2], e[1])
    n = n + 1
  end
  if done then break end
end
for _, kind in ipairs({'train', 'validation'}) do
  if tonumber(redis.call('HGET', KEYS[1], 'hw_' .. kind) or '-1') > s then
    redis.call('HSET', KEYS[1], 'hw_' .. kind, ARGV[2], 'last_' .. kind, 'null')
  end
end
return n
"""

# ARGV[2] now: one call per training step
_CHECK_LEASE = """
local v = redis.call('HMGET', KEYS[1], 'lease', 'control')
if v[1] ~= ARGV[1] then return 'lost' end
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[2])
if v[2] == '"cancel"' then return 'cancel' elseif v[2] == '"pause"' then return 'pause' end
return 'ok'
"""

# KEYS: idempotency key ('' for none), job, events, all jobs, tenant's jobs, active jobs, tenant's queued,
# status counts. ARGV: id, ttl, score, event
# time, event data, the spec's fingerprint, then the hash's field/value pairs. Returns the id of the job (an earlier one on replay).
_CREATE = """
if KEYS[1] ~= '' then
  local old = redis.call('GET', KEYS[1])
  if old then
    local old_id, old_fp = string.match(old, '^(%S+) ?(%S*)$')
    if redis.call('EXISTS', 'JOBPREFIX' .. old_id) == 1 then
      if old_fp ~= ARGV[6] then return redis.error_reply('FITA_IDEM_MISMATCH ' .. old_id) end
      return old_id
    end
  end
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[6], 'EX', ARGV[2])
end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('HINCRBY', KEYS[8], 'queued', 1)
redis.call('XADD', KEYS[3], '*', 'type', 'queued', 'time', ARGV[4], 'data', ARGV[5])
return ARGV[1]
"""


class Records:
    """Job records, metrics and events on one Redis client (which must use ``decode_responses=True``,
    as ``redis_server.connect`` does)."""

    def __init__(self, client: redis.Redis, prefix: str = "fita"):
        if not client.get_connection_kwargs().get("decode_responses"):
            raise ValueError("Records needs a Redis client with decode_responses=True (use redis_server.connect)")
        self.r, self.prefix = client, prefix
        self._fenced_write = client.register_script(_FENCED_WRITE)
        self._append_metrics = client.register_script(_APPEND_METRICS)
        self._trim_metrics = client.register_script(_TRIM_METRICS)
        self._check_lease = client.register_script(_CHECK_LEASE)
        self._create = client.register_script(_CREATE.replace("JOBPREFIX", f"{prefix}:job:"))

    # ---- keys -----------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def metrics_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:metrics"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def jobs_key(self, tenant: str | None = None) -> str:
        return f"{self.prefix}:jobs" if tenant is None else f"{self.prefix}:tenant:{tenant}:jobs"

    @property
    def active_key(self) -> str:
        return f"{self.prefix}:active"

    @property
    def counts_key(self) -> str:
        return f"{self.prefix}:status_counts"

    def status_counts(self) -> dict[str, int]:
        """How many jobs are in each status (kept by every status change; for /metrics)."""
        counts = self.r.hgetall(self.counts_key)
        return {status: max(0, int(counts.get(status, 0))) for status in STATUSES}

    def active_jobs(self) -> list[str]:
        """Ids of the jobs that are queued, running or cancelling (what the sweep looks after)."""
        return sorted(self.r.smembers(self.active_key))

    # ---- the record -----------------------------------------------------------------------------
    def create_job(self, tenant: str, spec: dict, *, job_id: str | None = None, idempotency_key: str | None = None,
                   meta: dict | None = None) -> tuple[dict, bool]:
        """A new queued job (with its ``queued`` event); ``(job, created)``. With an ``idempotency_key``
        that this tenant used in the last 24 h for a job that still exists, that job and False — or
        ``IdempotencyMismatch`` if that job was made from another spec."""
        job_id = validate_id(job_id or new_job_id(), "job id")
        validate_id(tenant, "tenant")
        now = time.time()
        record = {"id": job_id, "tenant": tenant, "spec": spec, "status": "queued", "phase": None, "attempt": 0,
                  "lease": None, "control": None, "restarts": 0, "progress": {}, "error": None, "meta": meta or {},
                  "created_at": now, "updated_at": now, "started_at": None, "finished_at": None,
                  "status_transitions": [{"status": "queued", "time": now}], "latest_checkpoint": None}
        idem = ""
        if idempotency_key is not None:
            idem = f"{self.prefix}:idem:{tenant}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
        pairs = [x for k, v in record.items() for x in (k, _enc(v))]
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        keys = [idem, self.job_key(job_id), self.events_key(job_id), self.jobs_key(), self.jobs_key(tenant),
                self.active_key, self.tenant_key(tenant, "queued"), self.counts_key]
        try:
            got = self._create(keys=keys, args=[job_id, 86400, now, now, "{}", fingerprint, *pairs])
        except redis.ResponseError as e:
            if "FITA_IDEM_MISMATCH" in str(e):
                raise IdempotencyMismatch(str(e).split()[-1]) from None
            raise
        return self.get_job(got), got == job_id

    def get_job(self, job_id: str, tenant: str | None = None) -> dict | None:
        """The record as a dict (None if there is none, or it belongs to another tenant). Latest metrics
        are under ``latest_metrics`` {"train": {...}, "validation": {...}}."""
        return decode_job(self.r.hgetall(self.job_key(job_id)), tenant)

    def get_jobs(self, job_ids: list[str]) -> list[dict]:
        """The records of ``job_ids`` in one round trip (those that no longer exist left out)."""
        with self.r.pipeline(transaction=False) as p:
            for job_id in job_ids:
                p.hgetall(self.job_key(job_id))
            return [job for job in map(decode_job, p.execute()) if job is not None]

    def update_job(self, job_id: str, *, attempt_id: int | None = None, **fields: Any) -> None:
        """Set plain fields: ``phase``, ``progress`` (epoch, step, total_steps, samples_per_s, eta_s),
        ``meta``, ``result``, ... With ``attempt_id``, only while that attempt holds the lease."""
        bad = set(fields) & _PROTECTED
        if bad:
            raise ValueError(f"update_job cannot set {sorted(bad)}; use the status methods")
        if fields.get("phase") not in (None, *PHASES):
            raise ValueError(f"phase must be one of {PHASES}, got {fields['phase']!r}")
        fields["updated_at"] = time.time()
        if attempt_id is None:
            if not self.r.exists(self.job_key(job_id)):
                raise JobNotFound(job_id)
            self.r.hset(self.job_key(job_id), mapping={k: _enc(v) for k, v in fields.items()})
        else:
            self._fenced(job_id, attempt_id, fields)

    def list_jobs(self, tenant: str | None = None, status: str | None = None, after: str | None = None,
                  limit: int = 20) -> tuple[list[dict], bool]:
        """Jobs newest first, ``(page, has_more)``; ``after`` is the last id of the previous page."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        key = self.jobs_key(tenant)
        start = _rank_after(self.r, key, after)
        page: list[dict] = []
        batch = limit + 1 if status is None else max(4 * limit, 100)
        while len(page) <= limit:
            ids = self.r.zrevrange(key, start, start + batch - 1)
            if not ids:
                break
            start += len(ids)
            with self.r.pipeline(transaction=False) as p:
                for job_id in ids:
                    p.hget(self.job_key(job_id), "status")
                states = p.execute()
            wanted = [i for i, s in zip(ids, states) if s is not None and (status is None or json.loads(s) == status)]
            page += [j for j in map(self.get_job, wanted[:limit + 1 - len(page)]) if j is not None]
        return page[:limit], len(page) > limit

    def delete_job(self, job_id: str, *, force: bool = False) -> None:
        """Remove a finished job's record, metrics and events (its artifacts are the store's)."""
        job = self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job["status"] not in TERMINAL and not force:
            raise InvalidTransition(f"job {job_id} is {job['status']}; cancel it before deleting it")
        with self.r.pipeline() as p:
            p.delete(self.job_key(job_id), self.metrics_key(job_id), self.events_key(job_id))
            p.zrem(self.jobs_key(), job_id)
            p.zrem(self.jobs_key(job["tenant"]), job_id)
            self._index_status(p, job_id, job["tenant"], None)
            p.hincrby(self.counts_key, job["status"], -1)
            p.hdel(self.tenant_key(job["tenant"], "job_bytes"), job_id)
            p.execute()

    # ---- status ---------------------------------------------------------------------------------
    def _change(self, job_id: str, decide: Callable[[dict, float], tuple[dict, list, Any]]) -> Any:
        """Read the control fields under WATCH, let ``decide(job, now)`` return ``(updates, events, result)``,
        write them in one MULTI/EXEC (retried if the record or the tenant's running set changed meanwhile).
        ``job["tenant_running"]`` is how many of the tenant's jobs are running (for the quota)."""
        key = self.job_key(job_id)

        def txn(pipe):
            names = ("status", "lease", "attempt", "control", "restarts", "status_transitions", "started_at", "tenant")
            values = pipe.hmget(key, names)
            if values[0] is None:
                raise JobNotFound(job_id)
            job = {n: json.loads(v) if v else None for n, v in zip(names, values)}
            running = self.tenant_key(job["tenant"], "running")
            pipe.watch(key, running)
            job["tenant_running"] = pipe.scard(running)
            now = time.time()
            updates, events, result = decide(job, now)
            pipe.multi()
            if updates:
                pipe.hset(key, mapping={k: _enc(v) for k, v in {**updates, "updated_at": now}.items()})
            if "status" in updates and updates["status"] != job["status"]:
                self._index_status(pipe, job_id, job["tenant"], updates["status"])
                pipe.hincrby(self.counts_key, job["status"], -1)
                pipe.hincrby(self.counts_key, updates["status"], 1)
            for kind, data in events:
                pipe.xadd(self.events_key(job_id), {"type": kind, "time": _enc(now), "data": _enc(data or {})})
            return result
        return self.r.transaction(txn, key, value_from_callable=True)

    def _index_status(self, pipe, job_id: str, tenant: str, status: str | None) -> None:
        """Keep the sets that name jobs by status in step with the record: ``fita:active`` (for the
        sweep) and the tenant's ``queued`` / ``running`` sets (for its quotas). None: remove from all."""
        (pipe.sadd if status in ACTIVE else pipe.srem)(self.active_key, job_id)
        for name, members in (("queued", {"queued"}), ("running", {"running", "cancelling"})):
            (pipe.sadd if status in members else pipe.srem)(self.tenant_key(tenant, name), job_id)

    def tenant_key(self, tenant: str, what: str) -> str:
        return f"{self.prefix}:tenant:{tenant}:{what}"

    def set_job_bytes(self, tenant: str, job_id: str, n: int) -> None:
        """Record how many bytes of artifacts (checkpoints, weights) the job keeps (the storage quota)."""
        self.r.hset(self.tenant_key(tenant, "job_bytes"), job_id, int(n))

    def stored_job_bytes(self, tenant: str) -> int:
        return sum(int(v) for v in self.r.hvals(self.tenant_key(tenant, "job_bytes")))

    def count_jobs(self, tenant: str, status: str) -> int:
        """How many of the tenant's jobs are ``queued`` or ``running`` (running includes cancelling)."""
        return self.r.scard(self.tenant_key(tenant, status))

    @staticmethod
    def _moved(job: dict, to: str, now: float, **data) -> tuple[dict, list]:
        """The updates and event of a validated status transition."""
        if to not in TRANSITIONS[job["status"]]:
            raise InvalidTransition(f"a {job['status']} job cannot become {to}")
        updates = {"status": to, "status_transitions": job["status_transitions"] + [{"status": to, "time": now}]}
        if to == "running" and job["started_at"] is None:
            updates["started_at"] = now
        if to != "running":
            updates["lease"] = updates["control"] = None  # whoever ran it no longer owns it
        if to in TERMINAL:
            updates["finished_at"] = now
        if to not in ("running", "cancelling"):
            updates["phase"] = None         # no phase outside a run (not "saving" after it succeeded)
        return updates, [(_STATUS_EVENT[to], data)] if to in _STATUS_EVENT else []

    def transition(self, job_id: str, status: str, *, attempt_id: int | None = None, error_code: str | None = None,
                   error_message: str | None = None, data: dict | None = None) -> dict:
        """Move the job to ``status`` (validated against TRANSITIONS) and log the event. A training
        attempt passes its ``attempt_id`` (``LeaseLost`` if it no longer holds the lease). ``failed``
        takes an error code and message. Returns the updates made."""
        def decide(job, now):
            if attempt_id is not None and job["lease"] != attempt_id:
                raise LeaseLost(f"attempt {attempt_id} of job {job_id} no longer holds the lease")
            event_data = dict(data or {})
            updates = {}
            if status == "failed":
                updates["error"] = event_data["error"] = {"code": error_code or "error", "message": error_message or ""}
            moved, events = self._moved(job, status, now, **event_data)
            return {**updates, **moved}, events, {**updates, **moved}
        return self._change(job_id, decide)

    def acquire_attempt(self, job_id: str, worker: str | None = None, max_running: int = 0) -> int:
        """Start a new attempt of a queued job (or take over a running one whose attempt was lost) and
        return its id; the previous attempt is fenced off from then on. ``max_running`` > 0: the
        tenant's quota of running jobs; at it, ``QuotaReached`` and the job stays queued."""
        def decide(job, now):
            if job["status"] not in ("queued", "running"):
                raise InvalidTransition(f"job {job_id} is {job['status']}; there is nothing to run")
            if job["status"] == "queued" and 0 < max_running <= job["tenant_running"]:
                raise QuotaReached(f"tenant {job['tenant']} already runs {job['tenant_running']} jobs "
                                   f"(FITA_QUOTA_RUNNING={max_running})")
            attempt = (job["attempt"] or 0) + 1
            updates, events = {}, []
            if job["status"] == "running":  # the previous attempt's worker died without being cleaned up
                updates["restarts"] = job["restarts"] + 1
                events.append(("interrupted", {"reason": "superseded", "attempt": job["attempt"]}))
            else:
                updates, events = self._moved(job, "running", now)
                events = []
            events.append(("started", {"attempt": attempt, "worker": worker}))
            updates.update(attempt=attempt, lease=attempt, control=None, worker=worker, heartbeat_at=now)
            return updates, events, attempt
        return self._change(job_id, decide)

    def check_lease(self, job_id: str, attempt_id: int) -> Lease:
        """One Redis call per training step: whether this attempt still owns the job, and whether a cancel
        or pause is pending. Also records the attempt's heartbeat (``heartbeat_at``)."""
        return Lease(self._check_lease(keys=[self.job_key(job_id)], args=[_enc(attempt_id), _enc(time.time())]))

    def interrupt(self, job_id: str, reason: str, *, attempt_id: int | None = None, max_restarts: int = 5) -> str:
        """An attempt ended without finishing (its worker died, or was told to shut down): log an
        ``interrupted`` event and re-queue the job, or fail it after ``max_restarts``; a job being
        cancelled or paused ends up cancelled or paused. Returns the new status: the caller enqueues the
        job again when it is ``queued``. With ``attempt_id``, only if that attempt still holds the lease."""
        def decide(job, now):
            if attempt_id is not None and job["lease"] != attempt_id:
                raise LeaseLost(f"attempt {attempt_id} of job {job_id} no longer holds the lease")
            if job["status"] not in ("running", "cancelling"):
                return {}, [], job["status"]
            events = [("interrupted", {"reason": reason, "attempt": job["attempt"], "restarts": job["restarts"] + 1})]
            if job["status"] == "cancelling":
                to, extra = "cancelled", {}
            elif job["control"] == "pause":
                to, extra = "paused", {}
            elif job["restarts"] + 1 > max_restarts:
                to = "failed"
                extra = {"error": {"code": "too_many_restarts",
                                   "message": f"interrupted {job['restarts'] + 1} times (max_restarts={max_restarts}); "
                                              f"last: {reason}"}}
            else:
                to, extra = "queued", {}
            updates, more = self._moved(job, to, now, **extra)
            return {**updates, **extra, "restarts": job["restarts"] + 1}, events + more, to
        return self._change(job_id, decide)

    def request_cancel(self, job_id: str) -> str:
        """Cancel: a queued or paused job at once; a running one becomes ``cancelling`` and its loop sees
        ``Lease.CANCEL`` at its next step. Returns the new status."""
        def decide(job, now):
            if job["status"] == "cancelling":
                return {}, [], "cancelling"
            if job["status"] == "running":
                updates, _ = self._moved(job, "cancelling", now)
                return {**updates, "lease": job["lease"], "control": "cancel"}, [], "cancelling"
            updates, events = self._moved(job, "cancelled", now)
            return updates, events, "cancelled"
        return self._change(job_id, decide)

    def request_pause(self, job_id: str) -> str:
        """Pause: a queued job at once; a running one keeps running until its loop sees ``Lease.PAUSE``,
        checkpoints and moves to ``paused``. Returns the status after the call."""
        def decide(job, now):
            if job["status"] == "running":
                return {"control": "pause"}, [], "running"
            if job["status"] == "paused":
                return {}, [], "paused"
            updates, events = self._moved(job, "paused", now)
            return updates, events, "paused"
        return self._change(job_id, decide)

    def resume(self, job_id: str) -> None:
        """A paused job is queued again (the caller enqueues it; it resumes from its latest checkpoint)."""
        def decide(job, now):
            if job["status"] != "paused":
                raise InvalidTransition(f"job {job_id} is {job['status']}; only a paused job can be resumed")
            updates, events = self._moved(job, "queued", now, resumed=True)
            return updates, events, None
        self._change(job_id, decide)

    # ---- fenced writes: progress, events, checkpoints ----------------------------------------------
    def _fenced(self, job_id: str, attempt_id: int, fields: dict, event: str = "", data: dict | None = None) -> str:
        pairs = [x for k, v in fields.items() for x in (k, _enc(v))]
        try:
            return self._fenced_write(keys=[self.job_key(job_id), self.events_key(job_id)],
                                      args=[_enc(attempt_id), len(fields), *pairs, event, _enc(time.time()),
                                            _enc(data or {})])
        except redis.ResponseError as e:
            if _STALE in str(e):
                raise LeaseLost(f"attempt {attempt_id} of job {job_id} no longer holds the lease") from None
            raise

    def add_event(self, job_id: str, type: str, data: dict | None = None, *, attempt_id: int | None = None) -> str:
        """Append to the job's event log; returns the event's id. ``attempt_id`` fences the write."""
        if type not in EVENT_TYPES:
            raise ValueError(f"event type must be one of {EVENT_TYPES}, got {type!r}")
        if attempt_id is not None:
            return self._fenced(job_id, attempt_id, {"updated_at": time.time()}, type, data)
        return self.r.xadd(self.events_key(job_id), {"type": type, "time": _enc(time.time()), "data": _enc(data or {})})

    def record_checkpoint(self, job_id: str, attempt_id: int, info: dict) -> str:
        """After checkpoints.save_checkpoint: set ``latest_checkpoint`` and log a ``checkpoint`` event."""
        return self._fenced(job_id, attempt_id, {"latest_checkpoint": info, "updated_at": time.time()},
                            "checkpoint", info)

    def read_events(self, job_id: str, after: str | None = None, limit: int = 1000) -> list[dict]:
        """Events in order, ``[{"id", "type", "time", "data"}]``; ``after``: an event id (e.g. Last-Event-ID)."""
        start = "-" if after is None else "(" + check_stream_id(after)
        return [decode_event(i, f) for i, f in self.r.xrange(self.events_key(job_id), start, "+", count=limit)]

    # ---- metrics ----------------------------------------------------------------------------------
    def append_metrics(self, job_id: str, attempt_id: int, records: list[dict]) -> int:
        """Append records ``{"kind": "train" | "validation", "step": int, ...}`` in one call; records at
        or below the kind's high-water step are skipped. Returns how many were written."""
        args = [_enc(attempt_id)]
        for rec in records:
            if rec.get("kind") not in METRIC_COLUMNS:
                raise ValueError(f"a metrics record's kind must be one of {tuple(METRIC_COLUMNS)}, got {rec!r}")
            body = {k: v for k, v in rec.items() if k != "kind"}
            args += [rec["kind"], str(int(rec["step"])), _enc(body)]
        if not records:
            return 0
        try:
            return self._append_metrics(keys=[self.job_key(job_id), self.metrics_key(job_id)], args=args)
        except redis.ResponseError as e:
            if _STALE in str(e):
                raise LeaseLost(f"attempt {attempt_id} of job {job_id} no longer holds the lease") from None
            raise

    def trim_metrics_after(self, job_id: str, attempt_id: int, step: int) -> int:
        """Delete metrics records past ``step`` (call with the checkpoint's step before resuming from it);
        returns how many were deleted."""
        try:
            return self._trim_metrics(keys=[self.job_key(job_id), self.metrics_key(job_id)],
                                      args=[_enc(attempt_id), str(int(step))])
        except redis.ResponseError as e:
            if _STALE in str(e):
                raise LeaseLost(f"attempt {attempt_id} of job {job_id} no longer holds the lease") from None
            raise

    def metrics_writer(self, job_id: str, attempt_id: int, flush_every: int = 50,
                       flush_s: float = 1.0) -> "MetricsWriter":
        return MetricsWriter(self, job_id, attempt_id, flush_every, flush_s)

    def read_metrics(self, job_id: str, step_from: int | None = None, step_to: int | None = None) -> dict:
        """The curves column-wise: ``{"train": {"step": [...], "epoch", "loss", "lr"}, "validation":
        {"epoch", "step", "loss", "accuracy"}}``, plus a column for any extra key a record had (None where
        a record lacks it). ``step_from`` / ``step_to`` bound the steps, inclusive."""
        rows: dict[str, list[dict]] = {kind: [] for kind in METRIC_COLUMNS}
        for _, f in self.r.xrange(self.metrics_key(job_id)):
            step = int(f["step"])
            if (step_from is None or step >= step_from) and (step_to is None or step <= step_to):
                rows[f["kind"]].append(json.loads(f["data"]))
        out = {}
        for kind, recs in rows.items():
            names = list(METRIC_COLUMNS[kind]) + [k for r in recs for k in r if k not in METRIC_COLUMNS[kind]]
            out[kind] = {n: [r.get(n) for r in recs] for n in dict.fromkeys(names)}
        return out


class MetricsWriter:
    """Buffers a training attempt's metrics and writes them in one fenced call every ``flush_every``
    records or ``flush_s`` seconds (checked when a record is added; ``flush()`` at epoch ends and
    ``close()`` at the end). No thread: a flush happens in the loop, so it raises ``LeaseLost`` there."""

    def __init__(self, records: Records, job_id: str, attempt_id: int, flush_every: int = 50, flush_s: float = 1.0):
        self.records, self.job_id, self.attempt_id = records, job_id, attempt_id
        self.flush_every, self.flush_s = flush_every, flush_s
        self.buffer: list[dict] = []
        self._last = time.monotonic()

    def log_train(self, step: int, epoch: int, loss: float, lr: float | None = None, **extra) -> None:
        self._add({"kind": "train", "step": step, "epoch": epoch, "loss": loss, "lr": lr, **extra})

    def log_validation(self, epoch: int, step: int, loss: float, accuracy: float | None = None, **extra) -> None:
        self._add({"kind": "validation", "epoch": epoch, "step": step, "loss": loss, "accuracy": accuracy, **extra})

    def _add(self, record: dict) -> None:
        self.buffer.append(json_safe(record))
        if len(self.buffer) >= self.flush_every or time.monotonic() - self._last >= self.flush_s:
            self.flush()

    def flush(self) -> int:
        records, self.buffer = self.buffer, []
        self._last = time.monotonic()
        return self.records.append_metrics(self.job_id, self.attempt_id, records) if records else 0

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        # a loop that failed (a NaN loss, an error) still records the curve up to the failure; one that
        # lost its lease writes nothing more
        if exc_type is None or not issubclass(exc_type, LeaseLost):
            self.close()


def check_stream_id(value: str) -> str:
    if not isinstance(value, str) or not _STREAM_ID.fullmatch(value):
        raise ValueError(f"an event id looks like '1700000000000-0', got {value!r}")
    return value


def decode_event(event_id: str, fields: dict) -> dict:
    """One entry of an events stream -> ``{"id", "type", "time", "data"}``."""
    return {"id": event_id, "type": fields["type"], "time": json.loads(fields["time"]),
            "data": json.loads(fields["data"])}
