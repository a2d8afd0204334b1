"""Quotas and limits at the API, on a live service started with tight settings: submissions per minute
per key (429 + Retry-After), queued jobs per tenant (429), running jobs per tenant (the rest wait in the
queue even with free workers), FLOPs per step and samples seen per job (422), CORS only when configured."""
import copy
import time

import httpx
import pytest  # noqa: F401

from service_fixture import KEYS, start_service
from workers.redis_server import RedisServer

SPEC = {"model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 8}, {"type": "ReLU"},
                             {"type": "Linear", "in_features": 8, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01}, "training": {"epochs": 3}, "resources": {"device": "cpu"}}


def spec(**training):
    s = copy.deepcopy(SPEC)
    s["training"].update(training)
    return s


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fita")
    with RedisServer(data_dir, write_url_file=False) as redis:
        svc = start_service(data_dir, redis.url, workers=2, FITA_QUOTA_RUNNING="1", FITA_QUOTA_QUEUED="2",
                            FITA_SUBMIT_RATE="6", FITA_MAX_FLOPS_PER_STEP="1e6", FITA_MAX_SAMPLES_SEEN="50000",
                            FITA_CORS_ORIGINS="http://dashboard.test",
                            FITA_QUOTA_STORAGE_BYTES="60000")
        try:
            yield svc
        finally:
            svc.stop()


def test_running_and_queued_quotas(tight):
    with tight.client("t1") as c:
        long = c.post("/v1/jobs", json=spec(epochs=300)).json()
        tight.wait_for(long["id"], lambda j: j["status"] == "running")
        waiting = [c.post("/v1/jobs", json=spec()).json() for _ in range(2)]
        time.sleep(2.0)       # two workers are free, but t1 may run one job at a time
        assert [c.get(f"/v1/jobs/{j['id']}").json()["status"] for j in waiting] == ["queued", "queued"]
        r = c.post("/v1/jobs", json=spec())
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
        assert "FITA_QUOTA_QUEUED" in r.json()["error"]["message"]
        # another tenant is not held up by t1's quota
        with tight.client("t2") as other:
            assert tight.wait_for(other.post("/v1/jobs", json=spec()).json()["id"], tenant="t2")["status"] == "succeeded"
        c.post(f"/v1/jobs/{long['id']}/cancel")
        for j in waiting:
            assert tight.wait_for(j["id"])["status"] == "succeeded"


def test_submission_rate_per_key(tight):
    with tight.client("t2") as c:
        answers = [c.post("/v1/jobs/validate", json=spec()).status_code for _ in range(3)]
        assert answers == [200] * 3                  # validation is not a submission
        codes = []
        for _ in range(8):
            r = c.post("/v1/jobs", json={"bad": "spec"})
            codes.append(r.status_code)
        assert 429 in codes and codes[0] == 422      # bad submissions count too (they cost a dry build)
        limited = c.post("/v1/jobs", json=spec())
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 61


def test_job_size_limits(tight):
    with tight.client("t1") as c:
        big = spec()
        big["model"]["layers"][0]["out_features"] = 4096
        big["model"]["layers"][2]["in_features"] = 4096
        r = c.post("/v1/jobs/validate", json=big)
        assert r.status_code == 200              # the dry build itself is fine...
        key = KEYS["t1"]        # t1's 5th and 6th submissions this minute: within FITA_SUBMIT_RATE=6
        r = httpx.post(tight.url + "/v1/jobs", json=big, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 422 and "FITA_MAX_FLOPS_PER_STEP" in r.json()["error"]["message"]
        r = c.post("/v1/jobs", json=spec(epochs=1000))
        assert r.status_code == 422 and r.json()["error"]["param"] == "training.epochs"
        assert "FITA_MAX_SAMPLES_SEEN" in r.json()["error"]["message"]


def test_cors_only_for_configured_origins(tight):
    ok = httpx.options(tight.url + "/v1/jobs", headers={"Origin": "http://dashboard.test",
                                                       "Access-Control-Request-Method": "POST"})
    assert ok.headers.get("access-control-allow-origin") == "http://dashboard.test"
    other = httpx.get(tight.url + "/healthz", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers


def test_storage_quota_on_uploads(tight):
    rows = "\n".join(f"{i % 7},{i % 5},{i % 3}" for i in range(4000))
    csv = ("a,b,label\n" + rows + "\n").encode()                   # ~24 kB: two fit in 60,000 bytes, three do not
    with tight.client("t3") as c:                                  # t3 stores nothing else yet
        first, second = (c.post("/v1/datasets", files={"file": ("d.csv", csv, "text/csv")}) for _ in range(2))
        assert first.status_code == second.status_code == 201
        third = c.post("/v1/datasets", files={"file": ("d.csv", csv, "text/csv")})
        assert third.status_code == 413 and third.json()["error"]["code"] == "storage_quota_exceeded"
        assert "FITA_QUOTA_STORAGE_BYTES" in third.json()["error"]["message"]
        assert c.get("/v1/datasets").json()["data"][0]["id"] == second.json()["id"]   # nothing half-made
        assert c.delete(f"/v1/datasets/{first.json()['id']}").status_code == 200
        again = c.post("/v1/datasets", files={"file": ("d.csv", csv, "text/csv")})
        assert again.status_code == 201
        for ds in (second, again):                                 # leave t3 empty for the next test
            assert c.delete(f"/v1/datasets/{ds.json()['id']}").status_code == 200


def test_a_jobs_checkpoints_and_weights_count_towards_storage(tight):
    big = spec(epochs=2)                     # ~4k parameters: two checkpoints and the weights pass 60,000 bytes
    big["model"]["layers"][0]["out_features"] = big["model"]["layers"][2]["in_features"] = 512
    with tight.client("t3") as c:
        first = c.post("/v1/jobs", json=big)
        assert first.status_code == 201                 # nothing stored yet
        assert tight.wait_for(first.json()["id"], tenant="t3")["status"] == "succeeded"
        full = c.post("/v1/jobs", json=spec())          # its checkpoints and weights are over the quota
        assert full.status_code == 413 and full.json()["error"]["code"] == "storage_quota_exceeded"
        upload = c.post("/v1/datasets", files={"file": ("d.csv", b"a,y\n1,0\n2,1\n", "text/csv")})
        assert upload.status_code == 413 and "checkpoints" in upload.json()["error"]["message"]
        assert c.delete(f"/v1/jobs/{first.json()['id']}").status_code == 200
        assert c.post("/v1/jobs", json=spec()).status_code == 201      # deleting the job freed its bytes
