"""Every setting the service reads from the environment, in one place.

The API, the workers and the run command all call ``Settings.from_env()``, so a variable means the same
thing in every process. A bad value fails at start-up with the variable's name, never later in a job.

| Variable                  | Default      | Meaning                                                          |
|---------------------------|--------------|------------------------------------------------------------------|
| FITA_DATA_DIR             | ./.fita      | artifacts, the embedded Redis's files, redis.url                 |
| REDIS_URL                 | (unset)      | an external Redis; unset: the embedded one (see redis_server.py) |
| FITA_REDIS_PORT           | 0            | the embedded Redis's port; 0 picks a free one                    |
| FITA_HOST / FITA_PORT     | 127.0.0.1 / 8000 | where the API listens                                        |
| FITA_WORKERS              | 1            | worker processes the run command starts and supervises           |
| FITA_WORKER_THREADS       | 0            | CPU threads of a worker's training (engine, BLAS); 0: defaults |
| FITA_CHECKPOINT_KEEP      | 3            | checkpoints kept per job (the newest N; older ones are deleted)  |
| FITA_MAX_RESTARTS         | 5            | times an interrupted job is re-queued before it fails            |
| FITA_JOB_TIMEOUT_S        | 86400        | the server-wide cap on training.max_runtime_s (RQ's job_timeout is 10 min more) |
| FITA_REDIS_RETRY_S        | 30           | how long a process retries (with backoff) when Redis is unreachable |
| FITA_CANCEL_GRACE_S       | 30           | a cancelled job still running after this long has its work process killed |
| FITA_SWEEP_INTERVAL_S     | 2.0          | how often the API looks for jobs whose worker died (workers/queue.py) |
| FITA_SSE_KEEPALIVE_S      | 15.0         | seconds between keep-alive comments on an idle event stream      |
| FITA_API_KEYS             | (unset)      | "tenant:key,tenant2:key2": keys besides those in $FITA_DATA_DIR/api_keys.json |
| FITA_QUOTA_RUNNING        | 8            | jobs one tenant may run at once (more wait in the queue; 0: no limit) |
| FITA_QUOTA_QUEUED         | 5000         | jobs one tenant may have queued; a submit past it is a 429      |
| FITA_QUOTA_STORAGE_BYTES  | 10737418240  | bytes of uploaded datasets one tenant may keep (413 past it)     |
| FITA_SUBMIT_RATE          | 600          | submissions per minute per API key (429 with Retry-After past it) |
| FITA_MAX_FLOPS_PER_STEP   | 1e13         | estimated FLOPs of one training step (dry build)                 |
| FITA_MAX_SAMPLES_SEEN     | 1e10         | epochs x training samples of one job                             |
| FITA_CORS_ORIGINS         | (unset)      | comma-separated origins allowed by CORS; unset: CORS off         |
| FITA_METRICS_FLUSH_EVERY  | 50           | metrics records buffered before one batched Redis write          |
| FITA_METRICS_FLUSH_S      | 1.0          | ... or seconds since the last write, whichever comes first       |
| FITA_MAX_BODY_BYTES       | 1048576      | largest request body (a job spec)                                |
| FITA_MAX_UPLOAD_BYTES     | 209715200    | largest dataset upload                                           |
| FITA_MAX_LAYERS           | 256          | layers or nodes in a model                                       |
| FITA_MAX_PARAMETERS       | 100000000    | parameters in a model                                            |
| FITA_MAX_EPOCHS           | 10000        | training.epochs                                                  |
| FITA_MAX_BATCH_SIZE       | 65536        | data.batch_size                                                  |
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".fita")
    redis_url: str | None = None
    redis_port: int = 0
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    worker_threads: int = 0
    checkpoint_keep: int = 3
    max_restarts: int = 5
    job_timeout_s: int = 86400
    cancel_grace_s: float = 30.0
    redis_retry_s: float = 30.0
    sweep_interval_s: float = 2.0
    sse_keepalive_s: float = 15.0
    quota_running: int = 8
    quota_queued: int = 5000
    quota_storage_bytes: int = 10 << 30
    submit_rate: int = 600
    max_flops_per_step: float = 1e13
    max_samples_seen: float = 1e10
    cors_origins: str = ""
    api_keys: str = ""
    metrics_flush_every: int = 50
    metrics_flush_s: float = 1.0
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 200 << 20
    max_layers: int = 256
    max_parameters: int = 100_000_000
    max_epochs: int = 10_000
    max_batch_size: int = 65_536

    @property
    def artifacts_dir(self) -> Path:
        """The LocalStore's root: checkpoints, weights and datasets, by key."""
        return self.data_dir / "artifacts"

    @property
    def redis_dir(self) -> Path:
        """The embedded Redis's working directory (its append-only file and log)."""
        return self.data_dir / "redis"

    @property
    def api_keys_file(self) -> Path:
        """Hashed API keys by tenant (``fita keys create`` adds to it)."""
        return self.data_dir / "api_keys.json"

    @property
    def redis_url_file(self) -> Path:
        """Where the run command writes the embedded Redis's URL for workers started by hand."""
        return self.data_dir / "redis.url"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read the variables above (``env`` defaults to ``os.environ``); unset or empty means default."""
        env = os.environ if env is None else env

        def get(name: str, kind, default, minimum=None):
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
            if minimum is not None and value < minimum:
                raise ValueError(f"{name}={raw!r} must be at least {minimum}")
            return value

        d = cls()
        return cls(
            data_dir=Path(get("FITA_DATA_DIR", str, str(d.data_dir))).expanduser(),
            redis_url=get("REDIS_URL", str, None),
            redis_port=get("FITA_REDIS_PORT", int, d.redis_port, 0),
            host=get("FITA_HOST", str, d.host),
            port=get("FITA_PORT", int, d.port, 0),
            workers=get("FITA_WORKERS", int, d.workers, 0),
            worker_threads=get("FITA_WORKER_THREADS", int, d.worker_threads, 0),
            checkpoint_keep=get("FITA_CHECKPOINT_KEEP", int, d.checkpoint_keep, 1),
            max_restarts=get("FITA_MAX_RESTARTS", int, d.max_restarts, 0),
            job_timeout_s=get("FITA_JOB_TIMEOUT_S", int, d.job_timeout_s, 1),
            redis_retry_s=get("FITA_REDIS_RETRY_S", float, d.redis_retry_s, 0.0),
            cancel_grace_s=get("FITA_CANCEL_GRACE_S", float, d.cancel_grace_s, 0.0),
            sweep_interval_s=get("FITA_SWEEP_INTERVAL_S", float, d.sweep_interval_s, 0.1),
            sse_keepalive_s=get("FITA_SSE_KEEPALIVE_S", float, d.sse_keepalive_s, 0.1),
            quota_running=get("FITA_QUOTA_RUNNING", int, d.quota_running, 0),
            quota_queued=get("FITA_QUOTA_QUEUED", int, d.quota_queued, 1),
            quota_storage_bytes=get("FITA_QUOTA_STORAGE_BYTES", int, d.quota_storage_bytes, 0),
            submit_rate=get("FITA_SUBMIT_RATE", int, d.submit_rate, 1),
            max_flops_per_step=get("FITA_MAX_FLOPS_PER_STEP", float, d.max_flops_per_step, 1.0),
            max_samples_seen=get("FITA_MAX_SAMPLES_SEEN", float, d.max_samples_seen, 1.0),
            cors_origins=get("FITA_CORS_ORIGINS", str, d.cors_origins),
            api_keys=get("FITA_API_KEYS", str, d.api_keys),
            metrics_flush_every=get("FITA_METRICS_FLUSH_EVERY", int, d.metrics_flush_every, 1),
            metrics_flush_s=get("FITA_METRICS_FLUSH_S", float, d.metrics_flush_s, 0.0),
            max_body_bytes=get("FITA_MAX_BODY_BYTES", int, d.max_body_bytes, 1),
            max_upload_bytes=get("FITA_MAX_UPLOAD_BYTES", int, d.max_upload_bytes, 1),
            max_layers=get("FITA_MAX_LAYERS", int, d.max_layers, 1),
            max_parameters=get("FITA_MAX_PARAMETERS", int, d.max_parameters, 1),
            max_epochs=get("FITA_MAX_EPOCHS", int, d.max_epochs, 1),
            max_batch_size=get("FITA_MAX_BATCH_SIZE", int, d.max_batch_size, 1),
        )
