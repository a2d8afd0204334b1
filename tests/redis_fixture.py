"""``redis_url``: a real Redis (the embedded one, workers.redis_server) for the tests of one process.

Import it into a test module with ``from redis_fixture import redis_url  # noqa: F401``. One server per
pytest process (xdist workers each get their own, on a free port); every test starts from an empty
database.
"""
import pytest

from workers.redis_server import RedisServer


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory):
    with RedisServer(tmp_path_factory.mktemp("redis"), write_url_file=False) as server:
        yield server


@pytest.fixture
def redis_url(_redis_server):
    import redis
    with redis.Redis.from_url(_redis_server.url) as client:
        client.flushdb()
    return _redis_server.url
