"""``redis_url``: a real Redis (the embedded one, workers.redis_server) for the tests of one process.

Import it into a test module with ``from redis_fixture import redis_url  # noqa: F401``. One server per
pytest process (xdist workers each get their own, on a free port), started at first use and stopped at
exit; every test starts from an empty database.
"""
import atexit

import pytest
import redis

from workers.redis_server import RedisServer

_server: RedisServer | None = None


@pytest.fixture
def redis_url(tmp_path_factory) -> str:
    global _server
    if _server is None:
        _server = RedisServer(tmp_path_factory.mktemp("redis"), write_url_file=False).start()
        atexit.register(_server.stop)
    with redis.Redis.from_url(_server.url) as client:
        client.flushdb()
    return _server.url
