"""A fuzz run of the OpenAPI schema against the live service (real HTTP, real Redis, a real worker), with
schemathesis: every operation of /openapi.json, called as tenant t1, with generated parameters and bodies
(valid and invalid ones). Whatever it sends, the service answers without a 5xx, with a status code the
schema declares for the operation, and with a body that conforms to the schema of that status.

Bounded: at most ``MAX_EXAMPLES`` generated cases per operation and pass, derandomized (the same cases
every run), no deadline. Before the fuzz, t1 has a job that succeeded (so the lists, metrics, events,
checkpoints and charts have real rows to conform) and an uploaded dataset; a second pass fuzzes the
operations on one job or dataset with those real ids in the path. ``pytest -s`` prints how many cases
were sent.
"""
from __future__ import annotations

import os
import re
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from api.app import create_app
from service_fixture import KEYS, service  # noqa: F401
from workers.settings import Settings

MAX_EXAMPLES = int(os.environ.get("FITA_FUZZ_EXAMPLES", 50))   # a deeper run: FITA_FUZZ_EXAMPLES=500
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


# The schema fuzzed is the app's, built here at collection (the fixture above checks the live service
# serves the same). Each operation is its own pytest item, fuzzed by a Hypothesis test of its own over
# schemathesis's strategies (``APIOperation.as_strategy``). (Not ``@schema.parametrize()``: on pytest 9.2
# its items of one test function share one node id, so under pytest-xdist -- `make test` -- only the first
# operation ran; nor ``schemathesis.pytest.from_fixture``: "'Function' object has no attribute '_nodeid'".)
OPENAPI = create_app(Settings.from_env()).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
OPERATIONS = {op.label: op for op in (result.ok() for result in schema.get_all_operations())}
# the operations on one job or dataset; DELETE is left out of the pass on the real ones (it would end them)
ON_RESOURCES = [label for label, op in OPERATIONS.items()
                if re.search(r"\{(job_id|dataset_id)\}", op.path) and op.method.lower() != "delete"]


def send(case, service) -> None:
    # always t1's key (the schema declares Authorization as an optional header: the fuzz would
    # otherwise spend its cases on 401s)
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(base_url=service.url, headers=AUTH, timeout=60)
    SENT[case.operation.label] += 1
    STATUSES[response.status_code] += 1
    case.validate_response(response, checks=CHECKS, headers=AUTH)


def fuzz(operation, service, tweak=lambda case: None, **fixed) -> None:
    """Valid and invalid cases for ``operation`` (``fixed``: e.g. path_parameters that are not generated)."""
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE, **fixed),
                      operation.as_strategy(GenerationMode.NEGATIVE, **fixed))

    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def run(case):
        tweak(case)
        send(case, service)
    run()


@pytest.mark.parametrize("label", list(OPERATIONS))
def test_openapi(label, seeded):
    """Every operation, every parameter generated (ids too: mostly ids that do not exist)."""
    fuzz(OPERATIONS[label], seeded)


@pytest.mark.parametrize("label", ON_RESOURCES)
def test_openapi_on_real_resources(label, seeded):
    """Again, with t1's real job that succeeded and its real upload in the path, so the fuzz gets past the
    404: metrics ranges, checkpoints, weights, charts, /predict's inputs, control routes on a finished job."""
    operation = OPERATIONS[label]
    fixed = {name: seeded.ids[name] for name in ("job_id", "dataset_id") if f"{{{name}}}" in operation.path}

    def tweak(case):
        REAL[label] += 1
        step = case.path_parameters.get("step")
        if isinstance(step, int) and step % 2 == 0:   # half the cases: a real checkpoint
            case.path_parameters["step"] = seeded.ids["step"]
    fuzz(operation, seeded, tweak, path_parameters=fixed)


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
