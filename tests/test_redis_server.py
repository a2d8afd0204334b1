"""The embedded Redis: starts, answers, persists across a restart, stops cleanly, and is found by URL."""
import os
import subprocess

import pytest
import redis

from workers.redis_server import RedisServer, RedisServerError, connect, redis_server_binary, resolve_redis_url
from workers.settings import Settings


def test_binary_is_shipped():
    out = subprocess.run([str(redis_server_binary()), "--version"], capture_output=True, text=True, check=True)
    assert "Redis server" in out.stdout


def test_start_ping_write_and_stop_removes_url_file(tmp_path):
    server = RedisServer(tmp_path)
    with server:
        assert (tmp_path / "redis.url").read_text().strip() == server.url
        client = connect(server.url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == "v"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
        pid = server.process.pid
    assert server.process is None
    assert not (tmp_path / "redis.url").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_restart_keeps_data(tmp_path):
    with RedisServer(tmp_path) as server:
        with connect(server.url) as c:
            c.hset("job", mapping={"status": "running"})
            c.xadd("stream", {"step": "1"})
    assert (tmp_path / "redis" / "appendonly.aof").stat().st_size > 0
    with RedisServer(tmp_path) as server:
        with connect(server.url) as c:
            assert c.hget("job", "status") == "running"
            assert c.xlen("stream") == 1


def test_two_servers_on_different_ports(tmp_path):
    with RedisServer(tmp_path / "a") as a, RedisServer(tmp_path / "b") as b:
        assert a.port != b.port
        with connect(a.url) as ca, connect(b.url) as cb:
            ca.set("x", "a")
            cb.set("x", "b")
            assert (ca.get("x"), cb.get("x")) == ("a", "b")


def test_configured_port_and_one_server_per_data_dir(tmp_path):
    from workers.redis_server import free_port
    port = free_port()
    with RedisServer(tmp_path, port=port) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        with pytest.raises(RedisServerError, match="already uses"):
            RedisServer(tmp_path).start()
        assert (tmp_path / "redis.url").exists()  # the refused second server left the first one alone


def test_startup_failure_reports_log_tail(tmp_path):
    with RedisServer(tmp_path / "a") as a:
        with pytest.raises(RedisServerError, match="Address already in use"):
            RedisServer(tmp_path / "b", port=a.port, startup_timeout=3).start()


def test_resolve_redis_url(tmp_path):
    with pytest.raises(RedisServerError, match="REDIS_URL"):
        resolve_redis_url(Settings(data_dir=tmp_path))
    (tmp_path / "redis.url").write_text("redis://127.0.0.1:1234/0\n")
    assert resolve_redis_url(Settings(data_dir=tmp_path)) == "redis://127.0.0.1:1234/0"
    env = {"FITA_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://elsewhere:6379/2"}
    assert resolve_redis_url(Settings.from_env(env)) == "redis://elsewhere:6379/2"


def test_settings_from_env(tmp_path):
    s = Settings.from_env({"FITA_DATA_DIR": str(tmp_path), "FITA_WORKERS": "3", "FITA_METRICS_FLUSH_S": "0.5"})
    assert (s.data_dir, s.workers, s.metrics_flush_s, s.redis_url) == (tmp_path, 3, 0.5, None)
    assert s.redis_url_file == tmp_path / "redis.url"
    assert Settings.from_env({}).port == 8000
    with pytest.raises(ValueError, match="FITA_PORT"):
        Settings.from_env({"FITA_PORT": "eighty"})
    with pytest.raises(ValueError, match="FITA_CHECKPOINT_KEEP"):
        Settings.from_env({"FITA_CHECKPOINT_KEEP": "0"})


def test_client_reconnects_after_restart(tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        client = connect(server.url)
        client.set("k", "1")
        port = server.port
        server.stop()
        server = RedisServer(tmp_path, port=port).start()
        assert client.get("k") == "1"  # the same client object, after the server came back
    finally:
        server.stop()


def test_server_dies_with_its_parent(tmp_path):
    """A run command killed with SIGKILL must not leave a server holding the data directory."""
    import sys
    import time
    code = ("import os, sys; from workers.redis_server import RedisServer; "
            f"s = RedisServer({str(tmp_path)!r}).start(); print(s.process.pid, flush=True); os._exit(0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    pid = int(out.stdout)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail("redis-server outlived its parent")
    with RedisServer(tmp_path) as server:  # the directory is free again
        assert connect(server.url).ping()
