"""Training checkpoints: everything a job needs to resume exactly where it stopped, through the store.

A checkpoint holds the model's, optimizer's and scheduler's state_dicts, the RNG states (the global
generator, which dropout and loaders without their own generator draw from, plus any named
``engine.Generator``), the DataLoader's position in the current epoch (its order and how many batches
were handed out), epoch, step and metrics. Restoring all of it into freshly built objects makes the
continued run bitwise identical to an uninterrupted one on the CPU with a fixed seed.

On disk (keys in the artifact store), per job::

    jobs/<job_id>/checkpoints/step-000000000100.<token>.safetensors   the state (engine.save)
    jobs/<job_id>/checkpoints/step-000000000100.json                  the manifest: the commit record

The manifest (step, epoch, metrics, the data file's key, bytes, sha256, created_at) is written last,
atomically, so a checkpoint exists exactly when its manifest does: a crash mid-save leaves at most an
unreferenced data file, which retention removes. The random token in the data file's name means two
attempts saving the same step never write the same file; the manifest names the one it checked.
The sha256 is of the whole safetensors file, so corruption or truncation is detected before
``engine.load`` sees the bytes, and ``latest_valid_checkpoint`` falls back to the previous checkpoint.

Where to resume. ``epoch`` is the epoch in progress when the checkpoint was taken and the loader's
position says how far into it. A loader whose epoch is used up starts a *new* epoch at the next
``iter(loader)``, so a checkpoint must never fall between an epoch's last batch and its end-of-epoch
work (validation, the scheduler's epoch step): take it after that work, with ``epoch + 1``. The loop
then resumes with ``for epoch in range(state["epoch"], epochs): for batch in loader: ...`` and counts
steps from ``state["step"]``; tests/test_checkpoints.py's ``_train`` is such a loop.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable

import engine

from .store import ArtifactNotFound, Store, StoreError, validate_id

FORMAT_VERSION = 1
_MANIFEST = re.compile(r"step-(\d{12})\.json")
_DATA = re.compile(r"step-(\d{12})\.[0-9a-f]+\.safetensors")
log = logging.getLogger(__name__)


class CorruptCheckpoint(StoreError):
    """A checkpoint whose file does not match its checksum or does not load."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint as the API lists it (``to_dict``), plus the key of its data file."""
    job_id: str
    step: int
    epoch: int
    metrics: dict = field(default_factory=dict)
    bytes: int = 0
    sha256: str = ""
    created_at: float = 0.0
    key: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Checkpoint:
    info: CheckpointInfo
    state: dict


def checkpoints_prefix(job_id: str) -> str:
    return f"jobs/{validate_id(job_id, 'job id')}/checkpoints"


def manifest_key(job_id: str, step: int) -> str:
    return f"{checkpoints_prefix(job_id)}/step-{step:012d}.json"


# ---- the state: live objects <-> a dict of tensors and plain values ---------------------------------

def capture_state(*, model, epoch: int, step: int, optimizer=None, scheduler=None, loader=None,
                  generators: dict[str, engine.Generator] | None = None, metrics: dict | None = None,
                  extra: dict | None = None) -> dict:
    """Everything needed to resume, as ``engine.save`` can write it. ``generators`` names any
    ``engine.Generator`` the loop uses besides the global one (a DataLoader's own generator is already
    in the loader's state). ``metrics`` (floats by name) are listed with the checkpoint."""
    return {
        "format": FORMAT_VERSION, "epoch": int(epoch), "step": int(step),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "data": loader.state_dict() if loader is not None else None,
        "rng": {"global": engine.get_rng_state(),
                "generators": {name: g.get_state() for name, g in (generators or {}).items()}},
        "metrics": dict(metrics or {}), "extra": dict(extra or {}),
    }


def restore_state(state: dict, *, model, optimizer=None, scheduler=None, loader=None,
                  generators: dict[str, engine.Generator] | None = None) -> None:
    """Load ``capture_state``'s dict into freshly built objects (built from the same spec), and set the
    global RNG. The caller continues from ``state["epoch"]`` / ``state["step"]``."""
    model.load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("data", loader)):
        if obj is not None:
            if state.get(name) is None:
                raise ValueError(f"the checkpoint holds no {name} state to restore")
            obj.load_state_dict(state[name])
    engine.set_rng_state(state["rng"]["global"])
    for name, g in (generators or {}).items():
        g.set_state(state["rng"]["generators"][name])


# ---- saving, listing, loading ------------------------------------------------------------------------

class _HashingWriter:
    """Passes writes on to ``f`` while counting and hashing them (one pass over the bytes)."""

    def __init__(self, f):
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.sha.update(data)
        self.n += len(data)
        return self.f.write(data)


def save_checkpoint(store: Store, job_id: str, state: dict, *, keep_last: int | None = None,
                    fence: Callable[[], None] | None = None) -> CheckpointInfo:
    """Write ``state`` (from ``capture_state``) as the checkpoint at ``state["step"]`` and return its info.

    ``fence`` is called before anything is written and again just before the manifest commits the
    checkpoint; it raises when this attempt no longer owns the job (see records.check_lease), so an
    orphaned attempt never publishes a checkpoint. ``keep_last`` then deletes all but the newest N.
    """
    step, epoch = int(state["step"]), int(state["epoch"])
    prefix = checkpoints_prefix(job_id)
    if fence:
        fence()
    data_key = f"{prefix}/step-{step:012d}.{uuid.uuid4().hex[:12]}.safetensors"
    with store.open_write(data_key) as f:
        writer = _HashingWriter(f)
        engine.save(state, writer)
    info = CheckpointInfo(job_id=job_id, step=step, epoch=epoch, metrics=_plain(state.get("metrics") or {}),
                          bytes=writer.n, sha256=writer.sha.hexdigest(), created_at=time.time(), key=data_key)
    try:
        if fence:
            fence()
        store.put_bytes(manifest_key(job_id, step), json.dumps({"format": FORMAT_VERSION, **info.to_dict()},
                                                               indent=1).encode())
    except BaseException:
        store.delete(data_key)
        raise
    if keep_last is not None:
        prune_checkpoints(store, job_id, keep_last)
    return info


def list_checkpoints(store: Store, job_id: str) -> list[CheckpointInfo]:
    """Committed checkpoints, newest (highest step) first. Manifests that do not parse are skipped;
    data files are not verified here (``load_checkpoint`` does that)."""
    infos = []
    for key in store.list(checkpoints_prefix(job_id)):
        if _MANIFEST.fullmatch(key.rsplit("/", 1)[1]):
            try:
                raw = json.loads(store.read(key))
                infos.append(CheckpointInfo(**{k: raw[k] for k in CheckpointInfo.__dataclass_fields__}))
            except (ValueError, KeyError, TypeError, ArtifactNotFound) as e:
                log.warning("skipping unreadable checkpoint manifest %s: %s", key, e)
    return sorted(infos, key=lambda i: i.step, reverse=True)


def get_checkpoint_info(store: Store, job_id: str, step: int) -> CheckpointInfo:
    for info in list_checkpoints(store, job_id):
        if info.step == step:
            return info
    raise ArtifactNotFound(f"job {job_id} has no checkpoint at step {step}")


def load_checkpoint(store: Store, job_id: str, step: int | CheckpointInfo, map_location=None) -> Checkpoint:
    """Read, verify (size and sha256) and load one checkpoint; ``CorruptCheckpoint`` if it fails."""
    info = step if isinstance(step, CheckpointInfo) else get_checkpoint_info(store, job_id, step)
    try:
        data = store.read(info.key)
    except ArtifactNotFound:
        raise CorruptCheckpoint(f"checkpoint at step {info.step} of job {job_id}: its file {info.key} "
                                "is missing") from None
    if len(data) != info.bytes or hashlib.sha256(data).hexdigest() != info.sha256:
        raise CorruptCheckpoint(f"checkpoint at step {info.step} of job {job_id}: {info.key} is corrupt or truncated "
                                f"({len(data)} bytes, expected {info.bytes} with sha256 {info.sha256[:12]}...)")
    try:
        state = engine.load(io.BytesIO(data), map_location=map_location)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CorruptCheckpoint(f"checkpoint at step {info.step} of job {job_id} does not load: {e}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CorruptCheckpoint(f"checkpoint at step {info.step} of job {job_id} is not a Fita checkpoint "
                                f"of format {FORMAT_VERSION}")
    return Checkpoint(info, state)


def latest_valid_checkpoint(store: Store, job_id: str, map_location=None) -> Checkpoint | None:
    """The newest checkpoint that verifies and loads; corrupt ones are logged and skipped. None if the
    job has no usable checkpoint (start from scratch)."""
    for info in list_checkpoints(store, job_id):
        try:
            return load_checkpoint(store, job_id, info, map_location)
        except CorruptCheckpoint as e:
            log.warning("%s; falling back to the previous checkpoint", e)
    return None


def prune_checkpoints(store: Store, job_id: str, keep_last: int) -> list[int]:
    """Delete all but the newest ``keep_last`` checkpoints, and data files no kept manifest names
    (left by interrupted saves) up to the newest step. Returns the steps removed."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    infos = list_checkpoints(store, job_id)
    kept, dropped = infos[:keep_last], infos[keep_last:]
    for info in dropped:
        store.delete(manifest_key(job_id, info.step))
        store.delete(info.key)
    if kept:
        referenced = {i.key for i in kept}
        for key in store.list(checkpoints_prefix(job_id)):
            m = _DATA.fullmatch(key.rsplit("/", 1)[1])
            if m and key not in referenced and int(m.group(1)) <= kept[0].step:
                store.delete(key)
    return [i.step for i in dropped]


def _plain(metrics: dict) -> dict:
    """Metrics as JSON-safe floats (non-finite values become None)."""
    out = {}
    for k, v in metrics.items():
        v = float(v.item() if hasattr(v, "item") else v)
        out[str(k)] = v if v == v and abs(v) != float("inf") else None
    return out
