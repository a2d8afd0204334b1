"""/metrics in Prometheus's format from a live service, and the logs: JSON lines with the job id when the
output is not a terminal."""
import io
import json
import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from service_fixture import service  # noqa: F401
from workers.logs import JsonFormatter, job_context, setup_logging

SPEC = {"model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
        "optimizer": {"type": "SGD", "lr": 0.1}, "training": {"epochs": 2}, "resources": {"device": "cpu"}}


def scrape(service) -> dict:
    text = httpx.get(service.url + "/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_prometheus_metrics(service):
    with service.client() as c:
        job = c.post("/v1/jobs", json=SPEC).json()
        service.wait_for(job["id"])
        c.get(f"/v1/jobs/{job['id']}")
        c.get("/v1/jobs/nope")
    m = scrape(service)
    assert m[("fita_jobs", (("status", "succeeded"),))] >= 1
    assert m[("fita_jobs", (("status", "running"),))] == 0
    assert m[("fita_workers", (("queue", "cpu"),))] == 1 and m[("fita_workers", (("queue", "gpu"),))] == 0
    assert m[("fita_queue_depth", (("queue", "cpu"),))] == 0
    assert ("fita_training_samples_per_second", ()) in m
    ok = ("fita_http_request_duration_seconds_count", (("method", "GET"), ("route", "/v1/jobs/{job_id}"),
                                                        ("status", "200")))
    missing = ok[:1] + ((("method", "GET"), ("route", "/v1/jobs/{job_id}"), ("status", "404")),)
    assert m[ok] >= 1 and m[missing] >= 1                # by route template, never by raw path
    assert not any("nope" in str(labels) for _, labels in m)


def test_json_log_lines_carry_the_job_id():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    setup_logging("INFO", json_lines=True)
    root = logging.getLogger()
    handler.setFormatter(JsonFormatter())
    handler.filters = root.handlers[0].filters
    root.addHandler(handler)
    try:
        with job_context("job_abc"):
            logging.getLogger("workers.train").info("step %d", 3)
        logging.getLogger("api").warning("no job here")
    finally:
        root.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["job_id"] == "job_abc" and first["message"] == "step 3" and first["level"] == "INFO"
    assert "job_id" not in second and second["logger"] == "api"
