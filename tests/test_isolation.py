"""Tenant isolation against the live service (real HTTP, real Redis, a real worker): tenant t2 tries every
endpoint of the API on t1's resources — a job that succeeded (with checkpoints and weights), a queued job,
a checkpoint, the weights, an uploaded dataset — and every answer is a 404 in the error shape, exactly the
answer for an id that does not exist (same status, code and param; the same message with the id in it):
an id of another tenant tells nothing, not even that it exists. Nothing of t1's changes, and t2's lists
never show t1's ids.

The endpoints come from ``app.openapi()``: ``test_every_endpoint_is_covered`` fails when an endpoint has
no row in the table below, so a new one cannot be forgotten.
"""
from __future__ import annotations

import hashlib
import secrets

import pytest

from api.app import create_app
from service_fixture import KEYS, service, t1, t2  # noqa: F401
from workers.settings import Settings

IRIS = {"name": "isolation", "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 8},
                                                  {"type": "ReLU"}, {"type": "Linear", "in_features": 8, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01}, "training": {"epochs": 2, "seed": 0}, "resources": {"device": "cpu"}}
CSV = b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n2,1,0\n4,3,1\n"
IDEMPOTENCY_KEY = "isolation-key-1"

# t2 calls each of these on each of t1's jobs (the one that succeeded and the queued one) and on an id
# that does not exist. {job}: the job id; {step}: a checkpoint of the job that succeeded.
JOB_PROBES = {
    ("get", "/v1/jobs/{job_id}"): [dict(url="/v1/jobs/{job}")],
    ("delete", "/v1/jobs/{job_id}"): [dict(url="/v1/jobs/{job}")],
    ("get", "/v1/jobs/{job_id}/metrics"): [dict(url="/v1/jobs/{job}/metrics"),
                                           dict(url="/v1/jobs/{job}/metrics", params={"format": "csv"})],
    ("get", "/v1/jobs/{job_id}/events"): [dict(url="/v1/jobs/{job}/events"),
                                          dict(url="/v1/jobs/{job}/events", headers={"Accept": "text/event-stream"})],
    ("get", "/v1/jobs/{job_id}/checkpoints"): [dict(url="/v1/jobs/{job}/checkpoints")],
    ("get", "/v1/jobs/{job_id}/checkpoints/{step}"): [dict(url="/v1/jobs/{job}/checkpoints/{step}")],
    ("get", "/v1/jobs/{job_id}/weights"): [dict(url="/v1/jobs/{job}/weights"),
                                           dict(url="/v1/jobs/{job}/weights", params={"which": "best"})],
    ("post", "/v1/jobs/{job_id}/cancel"): [dict(url="/v1/jobs/{job}/cancel")],
    ("post", "/v1/jobs/{job_id}/pause"): [dict(url="/v1/jobs/{job}/pause")],
    ("post", "/v1/jobs/{job_id}/resume"): [dict(url="/v1/jobs/{job}/resume")],
    ("post", "/v1/jobs/{job_id}/predict"): [dict(url="/v1/jobs/{job}/predict", json={"inputs": [[5.1, 3.5, 1.4, 0.2]]})],
    ("get", "/v1/jobs/{job_id}/metrics.svg"): [dict(url="/v1/jobs/{job}/metrics.svg")],
    ("get", "/v1/jobs/{job_id}/metrics.png"): [dict(url="/v1/jobs/{job}/metrics.png")],
}
# ... and each of these on t1's uploaded dataset ({ds})
DATASET_PROBES = {
    ("get", "/v1/datasets/{dataset_id}"): [dict(url="/v1/datasets/{ds}")],
    ("delete", "/v1/datasets/{dataset_id}"): [dict(url="/v1/datasets/{ds}")],
}
# the endpoints that take no id of a resource in their path, and the test that covers each
OTHER = {
    ("post", "/v1/jobs"): "test_submit_cannot_use_t1s_dataset_or_idempotency_key",
    ("post", "/v1/jobs/validate"): "test_validate_cannot_use_t1s_dataset",
    ("get", "/v1/jobs"): "test_t2s_lists_never_show_t1s_ids",
    ("post", "/v1/datasets"): "test_upload_does_not_touch_t1s_dataset",
    ("get", "/v1/datasets"): "test_t2s_lists_never_show_t1s_ids",
    ("get", "/v1/datasets/builtin"): "test_untenanted_endpoints_answer_alike",
    ("get", "/healthz"): "test_untenanted_endpoints_answer_alike",
    ("get", "/readyz"): "test_untenanted_endpoints_answer_alike",
    ("get", "/metrics"): "test_untenanted_endpoints_answer_alike",
}


def test_every_endpoint_is_covered():
    schema = create_app(Settings.from_env()).openapi()
    endpoints = {(method, path) for path, methods in schema["paths"].items() for method in methods}
    table = {*JOB_PROBES, *DATASET_PROBES, *OTHER}
    assert endpoints == table, f"not in the table: {endpoints - table}; gone from the API: {table - endpoints}"
    assert all(name in globals() for name in OTHER.values())


def fake(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def error_of(r) -> dict:
    assert r.headers["content-type"].startswith("application/json"), (r.status_code, r.headers, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "param"}, body
    return body["error"]


def same_as_missing(real, missing, real_id: str, missing_id: str, status: int = 404) -> None:
    """``real`` (t2 on t1's id) is answered exactly as ``missing`` (t2 on an id that does not exist)."""
    assert real.status_code == status, (real.status_code, real.text)
    assert missing.status_code == status, (missing.status_code, missing.text)
    got, want = error_of(real), error_of(missing)
    assert got["code"] == want["code"] and got["param"] == want["param"], (got, want)
    assert got["message"].replace(real_id, "<id>") == want["message"].replace(missing_id, "<id>"), (got, want)
    assert real_id in got["message"] or missing_id not in want["message"], got


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(client, res: dict) -> dict:
    """What t1 sees of its resources (each a 200)."""
    class c:   # noqa: N801 - the client, asserting each answer is a 200
        @staticmethod
        def get(url, **kw):
            r = client.get(url, **kw)
            assert r.status_code == 200, (url, r.status_code, r.text)
            return r
    out = {}
    for name in ("done", "queued"):
        job_id = res[name]
        out[name] = {"job": c.get(f"/v1/jobs/{job_id}").json(), "events": c.get(f"/v1/jobs/{job_id}/events").json(),
                     "metrics": c.get(f"/v1/jobs/{job_id}/metrics").json(),
                     "checkpoints": c.get(f"/v1/jobs/{job_id}/checkpoints").json()}
    done = res["done"]
    out["weights"] = {w: sha(c.get(f"/v1/jobs/{done}/weights", params={"which": w}).content) for w in ("final", "best")}
    out["checkpoint"] = sha(c.get(f"/v1/jobs/{done}/checkpoints/{res['step']}").content)
    out["dataset"] = c.get(f"/v1/datasets/{res['ds']}").json()
    out["jobs"] = c.get("/v1/jobs", params={"limit": 100}).json()
    out["datasets"] = c.get("/v1/datasets", params={"limit": 100}).json()
    return out


@pytest.fixture(scope="module")
def res(service, t1):
    """t1's resources, and t1's view of them before t2 tries anything."""
    r = t1.post("/v1/jobs", json=IRIS, headers={"Idempotency-Key": IDEMPOTENCY_KEY})
    assert r.status_code == 201, r.text
    done = r.json()["id"]
    assert service.wait_for(done)["status"] == "succeeded"
    r = t1.post("/v1/jobs", json={**IRIS, "resources": {"device": "cuda"}})   # no GPU worker: stays queued
    assert r.status_code == 201, r.text
    queued = r.json()["id"]
    assert r.json()["status"] == "queued" and r.json()["queue"] == "gpu", r.json()
    checkpoints = t1.get(f"/v1/jobs/{done}/checkpoints").json()["data"]
    assert checkpoints, "the job that succeeded has no checkpoint"
    r = t1.post("/v1/datasets", files={"file": ("mine.csv", CSV)})
    assert r.status_code == 201, r.text
    out = {"done": done, "queued": queued, "step": checkpoints[0]["step"], "ds": r.json()["id"]}
    weights = t1.get(f"/v1/jobs/{done}/weights")
    assert weights.status_code == 200 and weights.content, weights.text
    out["before"] = snapshot(t1, out)
    return out


def _probes(table):
    return [pytest.param(method, probe, id=f"{method.upper()} {path} {i}".strip())
            for (method, path), probes in table.items() for i, probe in enumerate(probes)]


def _call(client, method: str, probe: dict, **ids):
    kw = {k: v for k, v in probe.items() if k != "url"}
    return client.request(method.upper(), probe["url"].format(**ids), **kw)


@pytest.mark.parametrize("which", ["done", "queued"])
@pytest.mark.parametrize("method,probe", _probes(JOB_PROBES))
def test_t1s_job_is_a_404_for_t2(t2, res, method, probe, which):
    missing = fake("job_")
    real = _call(t2, method, probe, job=res[which], step=res["step"])
    same_as_missing(real, _call(t2, method, probe, job=missing, step=res["step"]), res[which], missing)
    assert error_of(real)["code"] == "job_not_found"


@pytest.mark.parametrize("method,probe", _probes(DATASET_PROBES))
def test_t1s_dataset_is_a_404_for_t2(t2, res, method, probe):
    missing = fake("ds_")
    real = _call(t2, method, probe, ds=res["ds"])
    same_as_missing(real, _call(t2, method, probe, ds=missing), res["ds"], missing)
    assert error_of(real)["code"] == "dataset_not_found"


def test_validate_cannot_use_t1s_dataset(t2, res):
    def validate(ds):
        return t2.post("/v1/jobs/validate", json={**IRIS, "data": {"dataset": f"upload:{ds}", "batch_size": 2}})
    missing = fake("ds_")
    same_as_missing(validate(res["ds"]), validate(missing), res["ds"], missing, status=422)


def test_submit_cannot_use_t1s_dataset_or_idempotency_key(service, t1, t2, res):
    def submit(ds):
        return t2.post("/v1/jobs", json={**IRIS, "data": {"dataset": f"upload:{ds}", "batch_size": 2}})
    missing = fake("ds_")
    same_as_missing(submit(res["ds"]), submit(missing), res["ds"], missing, status=422)
    # the dataset is t1's to use
    ok = t1.post("/v1/jobs/validate", json={**IRIS, "data": {"dataset": f"upload:{res['ds']}", "batch_size": 2},
                                            "model": {"layers": [{"type": "Linear", "in_features": 2, "out_features": 2}]}})
    assert ok.status_code == 200, ok.text
    # the same Idempotency-Key from t2 is a new job of t2's, not a replay of t1's (which has the same spec)
    r = t2.post("/v1/jobs", json={**IRIS, "resources": {"device": "cuda"}}, headers={"Idempotency-Key": IDEMPOTENCY_KEY})
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers, (r.status_code, r.headers, r.text)
    assert r.json()["id"] not in (res["done"], res["queued"])
    r2 = t2.post("/v1/jobs", json=IRIS, headers={"Idempotency-Key": IDEMPOTENCY_KEY})   # a different spec: t2's key
    assert r2.status_code == 422 and error_of(r2)["code"] == "idempotency_key_reused", r2.text
    assert res["done"] not in error_of(r2)["message"], r2.text
    res["t2_job"] = r.json()["id"]


def test_upload_does_not_touch_t1s_dataset(t1, t2, res):
    r = t2.post("/v1/datasets", files={"file": ("mine.csv", CSV)})    # the same name and the same bytes
    assert r.status_code == 201, r.text
    assert r.json()["id"] != res["ds"]
    res["t2_ds"] = r.json()["id"]
    # and the other way round: t1 cannot see t2's
    missing = fake("ds_")
    same_as_missing(t1.get(f"/v1/datasets/{res['t2_ds']}"), t1.get(f"/v1/datasets/{missing}"), res["t2_ds"], missing)


def test_t2s_lists_never_show_t1s_ids(t1, t2, res):
    assert "t2_job" in res and "t2_ds" in res, "runs after the tests that give t2 a job and a dataset"
    t1_jobs = {j["id"] for j in t1.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    assert {res["done"], res["queued"]} <= t1_jobs and res["t2_job"] not in t1_jobs
    for status in (None, "queued", "running", "succeeded", "failed", "cancelled", "paused"):
        ids, after = [], None
        while True:
            params = {"limit": 1, **({"status": status} if status else {}), **({"after": after} if after else {})}
            page = t2.get("/v1/jobs", params=params)
            assert page.status_code == 200, page.text
            ids += [j["id"] for j in page.json()["data"]]
            if not page.json()["has_more"]:
                break
            after = page.json()["last_id"]
        assert not set(ids) & t1_jobs, (status, ids)
        if status in (None, "queued"):
            assert res["t2_job"] in ids
    datasets = [d["id"] for d in t2.get("/v1/datasets", params={"limit": 100}).json()["data"]]
    assert res["t2_ds"] in datasets and res["ds"] not in datasets, datasets
    # t1's id as a cursor is as unknown as an id that does not exist
    for path, real in (("/v1/jobs", res["done"]), ("/v1/jobs", res["queued"]), ("/v1/datasets", res["ds"])):
        missing = fake(real[:real.index("_") + 1])
        same_as_missing(t2.get(path, params={"after": real}), t2.get(path, params={"after": missing}), real, missing,
                        status=400)


def test_untenanted_endpoints_answer_alike(service, t1, t2, res):
    """The endpoints of no tenant's resources: the same answer for both, and no id of t1's in it (/metrics
    counts every tenant's jobs by status, and labels requests by route template, never by raw path)."""
    assert t1.get("/v1/datasets/builtin").json() == t2.get("/v1/datasets/builtin").json()
    for path in ("/healthz", "/readyz"):
        assert t1.get(path).status_code == t2.get(path).status_code == 200
        assert t1.get(path).json().keys() == t2.get(path).json().keys()
    for path in ("/v1/datasets/builtin", "/healthz", "/readyz", "/metrics"):
        text = t2.get(path).text
        assert not [i for i in (res["done"], res["queued"], res["ds"]) if i in text], (path, text[:2000])


def test_nothing_of_t1s_changed(t1, res):
    """(Last in the module: after every attempt of t2's.)"""
    after = snapshot(t1, res)
    before = res["before"]
    assert after["done"] == before["done"]
    assert after["queued"] == before["queued"]
    assert after["weights"] == before["weights"] and after["checkpoint"] == before["checkpoint"]
    assert after["dataset"] == before["dataset"]
    assert after["datasets"] == before["datasets"]
    assert after["jobs"] == before["jobs"]
