"""A Python client for Fita's REST API.

    from fita import Client
    client = Client()                                   # FITA_SERVER, FITA_API_KEY or .fita/local.key
    job = client.submit("configs/digits-mlp.yaml")
    job.wait(progress=True)
    job.download("digits.safetensors")

Every error the server answers is raised as a ``FitaError`` carrying its ``status``, ``code``, ``message``
and ``param`` (``NotFound``, ``AuthError``, ``ValidationError``, ``Conflict`` by status).
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

import httpx

from .display import ProgressLine

DEFAULT_SERVER = "http://127.0.0.1:8000"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# while a live event stream waits for the end, the record is still read this often: a stream a proxy
# keeps open after the job's end must not make wait() hang
_STREAM_SAFETY_POLL_S = 30.0
_STREAM_RETRIES = 3


class FitaError(Exception):
    """An error answer from the server (``status`` is None when the server could not be reached)."""

    def __init__(self, status: int | None, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param

    def __str__(self) -> str:
        where = f", param {self.param}" if self.param else ""
        return f"{self.message} ({self.code}{where})"


class AuthError(FitaError):
    """401/403: the API key is missing, wrong or revoked."""


class NotFound(FitaError):
    """404: no such job, dataset, checkpoint or weights (for this API key's tenant)."""


class ValidationError(FitaError):
    """400/413/415/422: the request or the spec is wrong; ``param`` names the field."""


class Conflict(FitaError):
    """409: the job's state does not allow it (cancel a finished job, predict before it succeeded...)."""


_ERROR_CLASSES = {401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict,
                  400: ValidationError, 413: ValidationError, 415: ValidationError, 422: ValidationError}


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message, param = error["code"], error["message"], error.get("param")
    except (ValueError, KeyError, TypeError):   # not our error shape (a proxy's page...)
        code, message, param = f"http_{response.status_code}", response.text.strip()[:500] or \
            response.reason_phrase, None
    raise _ERROR_CLASSES.get(response.status_code, FitaError)(response.status_code, code, message, param)


def default_api_key() -> str | None:
    """FITA_API_KEY, else the key `fita up` keeps in $FITA_DATA_DIR/local.key (default ./.fita)."""
    key = os.environ.get("FITA_API_KEY")
    if key:
        return key
    try:
        return (Path(os.environ.get("FITA_DATA_DIR", ".fita")).expanduser() / "local.key").read_text().strip() or None
    except OSError:
        return None


@dataclass
class Job:
    """A training job as the server last described it (``refresh()`` reads it again)."""
    id: str
    status: str
    created_at: float
    spec: dict
    object: str = "training.job"
    name: str | None = None
    phase: str | None = None
    queue: str | None = None
    worker: str | None = None
    attempt: int = 0
    restarts: int = 0
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: dict = field(default_factory=dict)
    status_transitions: list = field(default_factory=list)
    latest_metrics: dict = field(default_factory=dict)
    latest_checkpoint: dict | None = None
    error: dict | None = None
    result: dict | None = None
    dataset: dict | None = None
    estimate: dict | None = None
    client: "Client | None" = field(default=None, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict, client: "Client | None" = None) -> "Job":
        known = {f.name for f in fields(cls)} - {"client"}
        return cls(**{k: v for k, v in data.items() if k in known}, client=client)

    def to_dict(self) -> dict:
        """The server's fields (what `fita status --json` prints)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "client"}

    def _update(self, data: dict) -> "Job":
        for name, value in Job.from_dict(data).to_dict().items():
            setattr(self, name, value)
        return self

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def _path(self) -> str:
        return f"/v1/jobs/{self.id}"

    def _api(self) -> "Client":
        if self.client is None:
            raise RuntimeError("this Job has no client; get it from Client.job() or Client.submit()")
        return self.client

    # ---- state -------------------------------------------------------------------------------

    def refresh(self) -> "Job":
        return self._update(self._api().request("GET", self._path).json())

    def wait(self, progress: bool = False, poll_s: float = 0.5, timeout: float | None = None) -> "Job":
        """Block until the job has succeeded, failed or been cancelled; returns it (check ``status``).
        Follows the job's live event stream to notice the end at once; reads the record every
        ``poll_s`` when ``progress`` (a live line on stderr) or when the stream is not available.
        Raises TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        line = ProgressLine(sys.stderr) if progress else None
        follower = None if self.refresh().done else _EventFollower(self)
        try:
            while not self.done:
                if line:
                    line.update(self)
                streaming = follower is not None and not follower.gone.is_set()
                nap = poll_s if progress or not streaming else _STREAM_SAFETY_POLL_S
                if deadline is not None:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"job {self.id} is still {self.status} after {timeout} s")
                    nap = min(nap, deadline - time.monotonic())
                if streaming:
                    follower.gone.wait(nap)   # wakes at once when the stream ends with the job
                else:
                    time.sleep(nap)
                self.refresh()
            if line:
                line.update(self)
        finally:
            if follower:
                follower.close()
            if line:
                line.close()
        return self

    def cancel(self) -> "Job":
        return self._control("cancel")

    def pause(self) -> "Job":
        return self._control("pause")

    def resume(self) -> "Job":
        return self._control("resume")

    def _control(self, action: str) -> "Job":
        return self._update(self._api().request("POST", f"{self._path}/{action}").json())

    def delete(self) -> dict:
        return self._api().request("DELETE", self._path).json()

    # ---- what the job produced -------------------------------------------------------------------

    def metrics(self) -> dict:
        """The loss curve, column-wise: {"train": {step, epoch, loss, lr}, "validation": {epoch, step,
        loss, accuracy}}, each a dict of equal-length lists."""
        body = self._api().request("GET", f"{self._path}/metrics").json()
        return {"train": body["train"], "validation": body["validation"]}

    def events(self, follow: bool = False) -> Iterator[dict]:
        """The job's event log ({id, type, time, data}), oldest first. ``follow``: then new events as
        they happen, until the job's final event."""
        if follow:
            yield from self._api().stream_events(self.id)
            return
        after = None
        while True:
            params = {"after": after} if after else {}
            page = self._api().request("GET", f"{self._path}/events", params=params).json()
            yield from page["data"]
            if not page["has_more"] or not page["data"]:
                return
            after = page["data"][-1]["id"]

    def checkpoints(self) -> list[dict]:
        """The kept checkpoints, newest first: {step, epoch, metrics, bytes, sha256, created_at}."""
        return self._api().request("GET", f"{self._path}/checkpoints").json()["data"]

    def download(self, path: str | Path | None = None, which: str = "final", checkpoint: int | None = None) -> Path:
        """Save the final or best weights, or the checkpoint at step ``checkpoint``, as .safetensors;
        ``path`` defaults to the server's file name in the current directory. Returns the path."""
        if checkpoint is not None:
            url, params = f"{self._path}/checkpoints/{checkpoint}", {}
        else:
            url, params = f"{self._path}/weights", {"which": which}
        return self._api()._save(url, path, params)

    def predict(self, inputs: list, which: str = "final") -> dict:
        """The trained model on raw inputs (the server applies the job's standardisation): outputs,
        and for classifiers probabilities, classes and the predicted class per sample."""
        return self._api().request("POST", f"{self._path}/predict", params={"which": which},
                                   json={"inputs": inputs}).json()


class _EventFollower:
    """Reads a job's live event stream in a thread; ``gone`` is set when the stream ends: after the
    job's final event, or because there is no stream (then the caller polls)."""

    def __init__(self, job: Job):
        self.gone = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, args=(job,), daemon=True,
                                        name=f"fita-events-{job.id}")
        self._thread.start()

    def _follow(self, job: Job) -> None:
        try:
            for _ in job._api().stream_events(job.id, stop=self._stop):
                pass
        except Exception:   # noqa: BLE001 -- any failure only means: poll instead
            pass
        finally:
            self.gone.set()

    def close(self) -> None:
        self._stop.set()   # the stream notices at its next line (a keep-alive at the latest)


class Client:
    """Talks to one Fita server with one API key. ``base_url``: FITA_SERVER (default
    http://127.0.0.1:8000); ``api_key``: FITA_API_KEY, else $FITA_DATA_DIR/local.key (what `fita up`
    writes); ``timeout``: seconds for each request."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60):
        self.base_url = (base_url or os.environ.get("FITA_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.api_key = api_key or default_api_key()
        self.timeout = timeout
        headers = {"User-Agent": "fita-client"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    # ---- HTTP --------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        """One request; an error answer raises FitaError, an unreachable server too (status None)."""
        with self._reaching():
            response = self._http.request(method, path, **kw)
        _raise_for_error(response)
        return response

    def _reaching(self):
        return _Reaching(self.base_url)

    def _save(self, path: str, dest: str | Path | None, params: dict) -> Path:
        """GET ``path`` into the file ``dest`` (default: the name the server gives it)."""
        with self._reaching(), self._http.stream("GET", path, params=params) as response:
            if not response.is_success:
                response.read()
                _raise_for_error(response)
            dest = Path(dest) if dest is not None else Path(_attachment_name(response) or path.rsplit("/", 1)[-1])
            tmp = dest.with_name(f".{dest.name}.part")
            with open(tmp, "wb") as f:
                for chunk in response.iter_bytes():
                    f.write(chunk)
            tmp.replace(dest)   # a failed download never leaves a truncated file under the real name
        return dest

    def stream_events(self, job_id: str, stop: threading.Event | None = None) -> Iterator[dict]:
        """Server-sent events of one job, from the first, until the stream ends after the job's final
        event. A dropped connection is resumed from the last event seen (Last-Event-ID)."""
        last_id, failures = None, 0
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
            try:
                with self._reaching(), self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as r:
                    if not r.is_success:
                        r.read()
                        _raise_for_error(r)
                    for event in _parse_sse(r.iter_lines(), stop):
                        last_id, failures = event["id"], 0
                        yield event
                    return
            except FitaError as e:
                failures += 1
                if e.status is not None or failures > _STREAM_RETRIES:
                    raise
                time.sleep(min(2 ** failures * 0.25, 3))

    # ---- jobs --------------------------------------------------------------------------------------

    def submit(self, spec: dict | str | Path, idempotency_key: str | None = None) -> Job:
        """Submit a job: ``spec`` is a dict, a path to a YAML/JSON file, or YAML text. The server
        dry-builds it first: a bad spec raises ValidationError naming the field."""
        body = _spec_body(spec)
        if idempotency_key:
            body["headers"] = {**body.get("headers", {}), "Idempotency-Key": idempotency_key}
        return Job.from_dict(self.request("POST", "/v1/jobs", **body).json(), self)

    def validate(self, spec: dict | str | Path) -> dict:
        """The server's dry run: parameters, FLOPs per step, memory, steps; nothing is queued."""
        return self.request("POST", "/v1/jobs/validate", **_spec_body(spec)).json()

    def job(self, job_id: str) -> Job:
        return Job.from_dict(self.request("GET", f"/v1/jobs/{job_id}").json(), self)

    def jobs(self, status: str | None = None, limit: int = 20) -> Iterator[Job]:
        """Your jobs, newest first, all of them: pages of ``limit`` are fetched as the iteration needs."""
        params = {"status": status} if status else {}
        for item in self._pages("/v1/jobs", params, limit):
            yield Job.from_dict(item, self)

    def _pages(self, path: str, params: dict, limit: int) -> Iterator[dict]:
        after = None
        while True:
            page = self.request("GET", path, params={**params, "limit": limit, **({"after": after} if after else {})}
                                ).json()
            yield from page["data"]
            if not page["has_more"]:
                return
            after = page["last_id"]

    # ---- datasets ----------------------------------------------------------------------------------

    def upload_dataset(self, path: str | Path, target: str | None = None, task: str | None = None) -> dict:
        """Upload a .npz (arrays x, y) or a CSV (``target``: its target column, default the last);
        ``task``: classification or regression (default: guessed from the target). A spec uses it as
        ``data: {dataset: upload:<id>}``."""
        path = Path(path)
        form = {k: v for k, v in {"target": target, "task": task}.items() if v is not None}
        with open(path, "rb") as f:
            return self.request("POST", "/v1/datasets", files={"file": (path.name, f)}, data=form).json()

    def datasets(self, builtin: bool = False, limit: int = 20) -> Iterator[dict]:
        """Your uploaded datasets, newest first (or, with ``builtin``, the built-in ones)."""
        if builtin:
            yield from self.request("GET", "/v1/datasets/builtin").json()["data"]
        else:
            yield from self._pages("/v1/datasets", {}, limit)

    def dataset(self, dataset_id: str) -> dict:
        return self.request("GET", f"/v1/datasets/{dataset_id}").json()

    def delete_dataset(self, dataset_id: str) -> dict:
        return self.request("DELETE", f"/v1/datasets/{dataset_id}").json()


class _Reaching:
    """Turns "cannot reach the server" into a FitaError people can act on."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, httpx.TransportError):
            raise FitaError(None, "connection_error", f"cannot reach the Fita server at {self.base_url}: "
                            f"{error or type(error).__name__} (is `fita up` running? set FITA_SERVER or "
                            "--server)") from error
        return False


def _spec_body(spec: dict | str | Path) -> dict:
    """httpx arguments for a spec: a dict as JSON; a file's text or YAML text as application/yaml."""
    if isinstance(spec, dict):
        return {"json": spec}
    if _names_a_file(spec):
        path = Path(spec)
        media_type = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
        return {"content": path.read_bytes(), "headers": {"Content-Type": media_type}}
    return {"content": spec.encode(), "headers": {"Content-Type": "application/yaml"}}


def _names_a_file(spec: str | Path) -> bool:
    """A Path, an existing file, or one line ending in .yaml/.yml/.json (a missing file is an error to
    report as such, not YAML text to send)."""
    if isinstance(spec, Path):
        return True
    if "\n" in spec:
        return False
    try:
        return Path(spec).is_file() or Path(spec).suffix.lower() in (".yaml", ".yml", ".json")
    except OSError:   # a name too long to be a path
        return False


def _attachment_name(response: httpx.Response) -> str | None:
    match = re.search(r'filename="?([^";]+)"?', response.headers.get("content-disposition", ""))
    return Path(match.group(1)).name if match else None


def _parse_sse(lines: Iterator[str], stop: threading.Event | None) -> Iterator[dict]:
    """Events from server-sent-event lines: each is one ``data:`` line of JSON ending at a blank line;
    comments (keep-alives) and ``retry:`` are skipped."""
    data: list[str] = []
    for line in lines:
        if stop is not None and stop.is_set():
            return
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
