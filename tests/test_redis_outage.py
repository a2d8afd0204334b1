"""A Redis outage longer than the clients' retry budget (FITA_REDIS_RETRY_S, 1 s here): the API answers
503 in the error shape meanwhile and recovers; the worker process does not die (it starts its loop again
under a new name and drops its old registration); the job that was training is re-queued and ends as
an uninterrupted run does."""
import copy
import time

import numpy as np
import pytest

from service_fixture import running_past, start_service
from workers.redis_server import RedisServer

SPEC = {"model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "Tanh"},
                             {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 250, "seed": 4, "checkpoint_every_steps": 100}, "resources": {"device": "cpu"}}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fita")
    service = start_service(data_dir, (redis := RedisServer(data_dir, write_url_file=False).start()).url,
                            FITA_REDIS_RETRY_S="1")
    service.redis = redis
    try:
        yield service
    finally:
        service.stop()
        service.redis.stop()


def weights(svc, job_id):
    import safetensors.numpy
    with svc.client() as c:
        return safetensors.numpy.load(c.get(f"/v1/jobs/{job_id}/weights").content)


def test_a_long_outage_is_a_pause(svc):
    with svc.client() as c:
        job = c.post("/v1/jobs", json=SPEC).json()["id"]
        svc.wait_for(job, running_past(250))
        worker = svc.live_worker()
        svc.redis.stop()
        time.sleep(1.0)
        down = c.get(f"/v1/jobs/{job}")
        assert down.status_code == 503 and down.json()["error"]["code"] == "service_unavailable"
        assert down.headers["retry-after"]
        time.sleep(4.0)                                  # well past every client's retries
        svc.restart_redis(down_s=0)
        done = svc.wait_for(job)
    assert done["status"] == "succeeded" and done["restarts"] >= 1
    assert worker.poll() is None, "the worker process died with the outage"
    reference = copy.deepcopy(SPEC)
    with svc.client() as c:
        again = c.post("/v1/jobs", json=reference).json()["id"]
    assert svc.wait_for(again)["status"] == "succeeded"
    a, b = weights(svc, job), weights(svc, again)
    assert all(np.array_equal(a[k], b[k]) for k in a)
