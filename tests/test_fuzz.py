"""A fuzz run of the OpenAPI schema against the live service (real HTTP, real Redis, a real worker), with
schemathesis: every operation of /openapi.json, called as tenant t1, with generated parameters and bodies
(valid and invalid ones). Whatever it sends, the service answers without a 5xx, with a status code the
schema declares for the operation, and with a body that conforms to the schema of that status.

Bounded: at most ``MAX_EXAMPLES`` generated cases per operation (plus schemathesis's explicit examples and
coverage cases), derandomized (the same cases every run), no deadline. Before the fuzz, t1 has a job that
succeeded (so the lists, metrics, events and checkpoints have real rows to conform) and an uploaded
dataset. ``pytest -s`` prints how many cases were sent.
"""
from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from api.app import create_app
from service_fixture import KEYS, service  # noqa: F401
from workers.settings import Settings

MAX_EXAMPLES = 25
AUTH = {"Authorization": f"Bearer {KEYS['t1']}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

IRIS = {"name": "fuzz-seed", "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 8},
                                                  {"type": "ReLU"}, {"type": "Linear", "in_features": 8, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "Adam", "lr": 0.01}, "training": {"epochs": 2, "seed": 0}, "resources": {"device": "cpu"}}

SENT: Counter = Counter()      # cases sent, per operation
STATUSES: Counter = Counter()  # answers, per status code
REAL: Counter = Counter()      # of which on the real job or dataset, per operation


@pytest.fixture(scope="module")
def seeded(service):
    """State for the fuzz to find: a job that succeeded (metrics, events, checkpoints, weights) and an
    upload; ``.ids`` has their ids."""
    with service.client("t1") as c:
        job = c.post("/v1/jobs", json=IRIS)
        assert job.status_code == 201, job.text
        job_id = job.json()["id"]
        assert service.wait_for(job_id)["status"] == "succeeded"
        up = c.post("/v1/datasets", files={"file": ("fuzz.csv", b"a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n")})
        assert up.status_code == 201, up.text
        step = c.get(f"/v1/jobs/{job_id}/checkpoints").json()["data"][0]["step"]
        # the schema fuzzed below is the app's, built at collection; the live service serves the same
        assert c.get("/openapi.json").json() == OPENAPI
    service.ids = {"job_id": job_id, "dataset_id": up.json()["id"], "step": step}
    yield service
    total = sum(SENT.values())
    print(f"\nfuzz: {total} cases over {len(SENT)} operations ({sum(REAL.values())} of them on the real job "
          f"and dataset); answers by status: {dict(sorted(STATUSES.items()))}")
    for op, n in sorted(SENT.items()):
        print(f"  {n:5d}  {op}" + (f"  ({REAL[op]} on the real resource)" if REAL[op] else ""))


# (schemathesis.pytest.from_fixture, the lazy load from the live service, fails on pytest 9.2:
# "'Function' object has no attribute '_nodeid'"; the fixture above checks the two schemas are equal)
OPENAPI = create_app(Settings.from_env()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


def send(case, service):
    # always t1's key (the schema declares Authorization as an optional header: the fuzz would
    # otherwise spend its cases on 401s)
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(base_url=service.url, headers=AUTH, timeout=60)
    SENT[case.operation.label] += 1
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=CHECKS, headers=AUTH)


FUZZ = settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@schema.parametrize()
@FUZZ
def test_openapi(case, seeded):
    """Every operation, every parameter generated (ids too: mostly ids that do not exist)."""
    send(case, seeded)


# Again, the operations on one job or dataset, on t1's real job that succeeded and its real upload, so
# the fuzz reaches past the 404: metrics ranges, checkpoints, weights, /predict's inputs, the control
# routes on a finished job. DELETE is left out (it would end the run's real resources).
on_resources = schema.include(path_regex=r"\{(job_id|dataset_id)\}").exclude(method="DELETE")


@on_resources.parametrize()
@FUZZ
def test_openapi_on_real_resources(case, seeded):
    params = case.path_parameters
    for name in ("job_id", "dataset_id"):
        if name in params:
            params[name] = seeded.ids[name]
    if isinstance(params.get("step"), int) and params["step"] % 2 == 0:   # half the cases: a real checkpoint
        params["step"] = seeded.ids["step"]
    REAL[case.operation.label] += 1
    send(case, seeded)


def test_malformed_multipart_is_a_422(seeded):
    """What the fuzz found first: a multipart upload whose part has no headers was a 500 (python-multipart's
    MultipartParseError escaped the route)."""
    body = b"--b0\r\nNone--b0--\r\n"
    with seeded.client("t1") as c:
        r = c.post("/v1/datasets", params={"filename": "x.csv"}, content=body,
                   headers={"Content-Type": "multipart/form-data; boundary=b0"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_syntax" and r.json()["error"]["param"] == "file", r.text


def test_every_operation_was_fuzzed():
    """(Runs after the fuzz, in the same process: --dist loadfile.) No operation of the schema was left out."""
    operations = {f"{method.upper()} {path}" for path, methods in OPENAPI["paths"].items() for method in methods}
    assert set(SENT) == operations, operations ^ set(SENT)
