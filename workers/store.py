"""The artifact store: checkpoints, final weights and uploaded datasets, by key.

One small interface (``Store``) so that an object store can replace the local directory later; keys
look like object-store keys (``jobs/<job_id>/checkpoints/step-000000000100.json``). ``LocalStore`` keeps
them as files under a root directory shared by the API and the workers.

Keys are validated before they touch the file system: segments of ``[A-Za-z0-9._-]`` joined by ``/``, no
segment starting with ``.`` (which rules out ``.`` and ``..`` and keeps temp files out of the key
space), no absolute paths, backslashes or NUL. A job or dataset id that came from a URL therefore can
never name a path outside the root.

Writes are atomic: data goes to a temp file in the target's directory, is fsynced, and is renamed over
the target (then the directory is fsynced). A crash or an error mid-write leaves the previous file
intact and no partial file under the key. Every OS error (disk full, permissions) surfaces as a
``StoreError`` that names the key and the reason, so a job can fail with a clear message.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Iterator

_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
MAX_KEY_LENGTH = 1024
_CHUNK = 1 << 20


class StoreError(Exception):
    """An artifact could not be stored or read (the message says which and why)."""


class InvalidKeyError(StoreError, ValueError):
    """A key that is not a safe relative name."""


class ArtifactNotFound(StoreError, LookupError):
    """No artifact under this key."""


def validate_key(key: str, *, allow_empty: bool = False) -> str:
    """``key`` itself if it is a safe key, else ``InvalidKeyError`` saying why."""
    if not isinstance(key, str):
        raise InvalidKeyError(f"an artifact key must be a str, got {type(key).__name__}")
    if key == "" and allow_empty:
        return key
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"an artifact key must have 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not all(_SEGMENT.fullmatch(seg) for seg in key.split("/")):
        raise InvalidKeyError(f"invalid artifact key {key!r}: use segments of letters, digits, '.', '_' and '-' "
                              "joined by '/', none empty or starting with '.'")
    return key


def validate_id(value: str, what: str = "id") -> str:
    """A job, dataset or tenant id that is used as one key segment."""
    if not isinstance(value, str) or len(value) > 128 or not _SEGMENT.fullmatch(value):
        raise InvalidKeyError(f"invalid {what} {value!r}: use up to 128 letters, digits, '.', '_' and '-', "
                              "not starting with '.'")
    return value


def _os_error(action: str, key: str, e: OSError) -> StoreError:
    why = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
    return StoreError(f"could not {action} artifact {key!r}: {why}")


class Store:
    """What the service needs from artifact storage. Implementations: ``LocalStore``."""

    def open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """A binary file to write ``key``'s new content into; committed atomically when the block exits
        normally, discarded (the old content kept) when it raises."""
        raise NotImplementedError

    def open(self, key: str) -> BinaryIO:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (a key 'directory'; "" for all), sorted."""
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        """Remove one artifact; False if there was none."""
        raise NotImplementedError

    def delete_prefix(self, prefix: str) -> int:
        """Remove everything under ``prefix`` (e.g. ``jobs/<id>``); the number of artifacts removed."""
        raise NotImplementedError

    def size(self, key: str) -> int:
        raise NotImplementedError

    def prefix_bytes(self, prefix: str) -> int:
        """The bytes of every artifact under ``prefix`` (a job's directory, for the storage quota)."""
        return sum(self.size(k) for k in self.list(prefix))

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ArtifactNotFound:
            return False

    def put_bytes(self, key: str, data: bytes) -> int:
        with self.open_write(key) as f:
            f.write(data)
        return len(data)

    def put_file(self, key: str, src: str | os.PathLike | BinaryIO) -> int:
        """Copy a local file or a readable binary stream in; returns the bytes written."""
        n = 0
        with contextlib.ExitStack() as stack:
            if isinstance(src, (str, os.PathLike)):
                src = stack.enter_context(open(src, "rb"))
            with self.open_write(key) as f:
                while chunk := src.read(_CHUNK):
                    f.write(chunk)
                    n += len(chunk)
        return n

    def read(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()


class LocalStore(Store):
    """Artifacts as files under ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"could not create the artifact directory {self.root}: {e.strerror}") from None

    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (for serving it directly); guaranteed to lie under the root."""
        path = self.root.joinpath(*validate_key(key).split("/"))
        if not path.resolve().is_relative_to(self.root):  # a symlink inside the root pointing out
            raise InvalidKeyError(f"artifact key {key!r} resolves outside the store")
        return path

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self.local_path(key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "xb")
        except OSError as e:
            raise _os_error("write", key, e) from e
        try:
            with f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise _os_error("write", key, e) from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.local_path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ArtifactNotFound(f"no artifact {key!r}") from None
        except OSError as e:
            raise _os_error("read", key, e) from e

    def size(self, key: str) -> int:
        path = self.local_path(key)
        try:
            if path.is_file():
                return path.stat().st_size
        except OSError as e:
            raise _os_error("stat", key, e) from e
        raise ArtifactNotFound(f"no artifact {key!r}")

    def list(self, prefix: str = "") -> list[str]:
        base = self.local_path(prefix) if prefix else self.root
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys += [n if rel == "." else f"{rel}/{n}" for n in filenames if not n.startswith(".")]
        return sorted(keys)

    def delete(self, key: str) -> bool:
        try:
            self.local_path(key).unlink()
            return True
        except (FileNotFoundError, IsADirectoryError):
            return False
        except OSError as e:
            raise _os_error("delete", key, e) from e

    def delete_prefix(self, prefix: str) -> int:
        path = self.local_path(prefix)
        if path.is_file():
            return int(self.delete(prefix))
        n = len(self.list(prefix))
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            return 0
        except OSError as e:
            raise _os_error("delete", prefix, e) from e
        return n


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds it (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
