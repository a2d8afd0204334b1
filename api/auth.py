"""API keys: ``Authorization: Bearer <key>``; each key belongs to a tenant.

Keys are stored hashed (sha256; a key is 32 random bytes, so a slow hash adds nothing) in
``$FITA_DATA_DIR/api_keys.json`` (``fita keys create`` adds one; the file is re-read when it changes) and
may also come from ``FITA_API_KEYS="tenant1:key1,tenant2:key2"``. A request without a valid key gets a
401 that says how to get one; a tenant only ever sees its own jobs and datasets.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from pathlib import Path

from workers.settings import Settings
from workers.store import validate_id

KEY_PREFIX = "fita_sk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_env_keys(raw: str) -> dict[str, str]:
    """``"t1:key1,t2:key2"`` -> {hash: tenant}; ValueError naming the bad entry."""
    out = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        tenant, sep, key = entry.partition(":")
        if not sep or not key or not tenant:
            raise ValueError(f"FITA_API_KEYS: {entry.split(':')[0]!r}... is not tenant:key")
        out[hash_key(key)] = validate_id(tenant, "tenant")
    return out


def _read_file(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text())["keys"]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a Fita API key file ({e}); fix or remove it") from None


def create_key(settings: Settings, tenant: str, name: str = "") -> str:
    """Make a new key for ``tenant``, store its hash in the key file and return the key (shown once)."""
    validate_id(tenant, "tenant")
    path = settings.api_keys_file
    path.parent.mkdir(parents=True, exist_ok=True)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    keys = _read_file(path) + [{"tenant": tenant, "sha256": hash_key(key), "hint": key[:12] + "...",
                                "name": name, "created_at": time.time()}]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"keys": keys}, f, indent=1)
    os.replace(tmp, path)
    return key


def has_keys(settings: Settings) -> bool:
    return bool(settings.api_keys.strip()) or bool(_read_file(settings.api_keys_file))


class KeyRing:
    """Maps a presented key to its tenant; picks up changes to the key file without a restart."""

    def __init__(self, settings: Settings):
        self.path = settings.api_keys_file
        self.env = parse_env_keys(settings.api_keys)
        self.lock = threading.Lock()
        self.stamp: tuple | None = None
        self.by_hash: dict[str, str] = dict(self.env)

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self.lock:
            if stamp != self.stamp:
                self.by_hash = {**{k["sha256"]: k["tenant"] for k in _read_file(self.path)}, **self.env}
                self.stamp = stamp

    def tenant(self, key: str) -> str | None:
        self._refresh()
        return self.by_hash.get(hash_key(key))

    def empty(self) -> bool:
        self._refresh()
        return not self.by_hash
