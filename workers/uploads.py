"""Uploaded datasets: the file in the artifact store, its description in Redis.

    datasets/<id>/data.npz | data.csv      the file as uploaded (store key)
    fita:dataset:<id>                      string: the record as JSON (id, tenant, filename, bytes, sha256,
                                           created_at, info: workers.datasets.DatasetInfo.to_dict())
    fita:tenant:<tenant>:datasets          sorted set: the tenant's dataset ids by created_at
    fita:tenant:<tenant>:dataset_bytes     the bytes of the tenant's uploads (its storage quota)

A spec names an upload as ``data.dataset: upload:<id>``; ``resolver(tenant)`` gives the function that
workers.datasets calls to find the file (and the target and task it was uploaded with, which a spec that
names no target reads it with), and it only finds the tenant's own datasets.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Callable

import redis

from .datasets import DataSettings, DatasetError, describe_upload
from .records import zpage
from .store import InvalidKeyError, LocalStore, validate_id

__all__ = ["Uploads", "SUFFIXES", "StorageQuotaExceeded"]

SUFFIXES = (".npz", ".csv")


class StorageQuotaExceeded(Exception):
    """The tenant's uploads would pass its storage quota."""


class Uploads:
    def __init__(self, client: redis.Redis, store: LocalStore, prefix: str = "fita", quota_bytes: int = 0,
                 other_bytes: Callable[[str], int] | None = None):
        """``quota_bytes`` (0: none) bounds a tenant's uploads plus ``other_bytes(tenant)`` (its jobs'
        artifacts)."""
        self.r, self.store, self.prefix, self.quota_bytes = client, store, prefix, quota_bytes
        self.other_bytes = other_bytes or (lambda tenant: 0)

    def _bytes_key(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{validate_id(tenant, 'tenant')}:dataset_bytes"

    def stored_bytes(self, tenant: str) -> int:
        return int(self.r.get(self._bytes_key(tenant)) or 0)

    def _reserve(self, tenant: str, size: int) -> None:
        """Count ``size`` against the tenant's quota (``quota_bytes``; 0: none), or refuse it. Counting
        first and checking after makes two concurrent uploads unable to slip past the quota together."""
        total = self.r.incrby(self._bytes_key(tenant), size) + (self.other_bytes(tenant) if self.quota_bytes else 0)
        if self.quota_bytes and total > self.quota_bytes:
            self.r.decrby(self._bytes_key(tenant), size)
            raise StorageQuotaExceeded(f"this upload ({size} bytes) would bring what you store (datasets, checkpoints "
                                       f"and weights) to {total} bytes, over your quota of {self.quota_bytes} bytes "
                                       "(FITA_QUOTA_STORAGE_BYTES); delete datasets or finished jobs first")

    def _key(self, dataset_id: str) -> str:
        return f"{self.prefix}:dataset:{validate_id(dataset_id, 'dataset id')}"

    def _index(self, tenant: str) -> str:
        return f"{self.prefix}:tenant:{validate_id(tenant, 'tenant')}:datasets"

    @staticmethod
    def file_key(dataset_id: str, suffix: str) -> str:
        return f"datasets/{validate_id(dataset_id, 'dataset id')}/data{suffix}"

    def create(self, tenant: str, src: Path, filename: str, *, target: str | None = None, task: str | None = None,
               data_settings: DataSettings | None = None) -> dict:
        """Validate the file at ``src`` (DatasetError if it is not a usable .npz or CSV), store it and
        return its record."""
        suffix = Path(filename).suffix.lower()
        if suffix not in SUFFIXES:
            raise DatasetError("invalid_dataset", f"file: {filename!r} must end in .npz (arrays x and y) or .csv (a "
                               "header row and a target column)", "file")
        named = src.with_suffix(suffix)          # describe_upload reads the format from the suffix
        src.rename(named)
        info = describe_upload(named, target=target, task=task, settings=data_settings)
        dataset_id = "ds_" + secrets.token_hex(12)
        digest = hashlib.sha256()
        with open(named, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        size = named.stat().st_size
        self._reserve(tenant, size)
        try:
            self.store.put_file(self.file_key(dataset_id, suffix), named)
        except BaseException:
            self.r.decrby(self._bytes_key(tenant), size)
            raise
        info.name = filename
        record = {"id": dataset_id, "object": "dataset", "tenant": tenant, "filename": filename, "bytes": size,
                  "sha256": digest.hexdigest(), "created_at": time.time(), "suffix": suffix,
                  "target": target, "task": info.task, "info": info.to_dict()}
        with self.r.pipeline() as p:
            p.set(self._key(dataset_id), json.dumps(record))
            p.zadd(self._index(tenant), {dataset_id: record["created_at"]})
            p.execute()
        return record

    def get(self, dataset_id: str, tenant: str | None = None) -> dict | None:
        """The record (None if there is none, it is another tenant's, or ``dataset_id`` is no valid id)."""
        try:
            raw = self.r.get(self._key(dataset_id))
        except InvalidKeyError:
            return None
        record = json.loads(raw) if raw else None
        if record is None or (tenant is not None and record["tenant"] != tenant):
            return None
        return record

    def list(self, tenant: str, after: str | None = None, limit: int = 20) -> tuple[list[dict], bool]:
        ids, has_more = zpage(self.r, self._index(tenant), after, limit)
        return [d for d in map(self.get, ids) if d is not None], has_more

    def delete(self, dataset_id: str) -> None:
        record = self.get(dataset_id)
        if record is None:
            return
        # the record first: a spec naming it meanwhile gets unknown_dataset, never a record without its file
        with self.r.pipeline() as p:
            p.delete(self._key(dataset_id))
            p.zrem(self._index(record["tenant"]), dataset_id)
            p.decrby(self._bytes_key(record["tenant"]), record["bytes"])
            p.execute()
        self.store.delete_prefix(f"datasets/{dataset_id}")

    def resolve(self, dataset_id: str, tenant: str) -> tuple[Path, dict] | None:
        """The local file of the tenant's dataset ``dataset_id`` and the ``target`` and ``task`` it was
        uploaded with, or None."""
        record = self.get(dataset_id, tenant)
        if record is None:
            return None
        path = self.store.local_path(self.file_key(dataset_id, record["suffix"]))
        if not path.is_file():
            raise DatasetError("invalid_dataset", f"data.dataset: the file of uploaded dataset {dataset_id} is "
                               "missing from the artifact store; upload it again", "data.dataset")
        return path, {"target": record.get("target"), "task": record.get("task")}

    def resolver(self, tenant: str) -> Callable[[str], tuple[Path, dict] | None]:
        """What workers.datasets calls with the id of ``upload:<id>``."""
        return lambda dataset_id: self.resolve(dataset_id, tenant)
