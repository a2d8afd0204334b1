"""Bad input against the live service (real HTTP, real Redis, a real worker): it is refused with a 4xx in
the one error shape ``{"error": {"code", "message", "param"}}``, with a message that says what was wrong,
never with a 500, and nothing bad reaches the queue."""
from __future__ import annotations

import copy
import json

import pytest
import redis
from rq import Queue

from service_fixture import KEYS, check_error, service, t1, t2  # noqa: F401

IRIS = {
    "name": "iris-mlp",
    "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 8}, {"type": "ReLU"},
                         {"type": "Linear", "in_features": 8, "out_features": 3}]},
    "data": {"dataset": "iris", "batch_size": 16},
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "Adam", "lr": 0.01},
    "training": {"epochs": 2, "seed": 0},
    "resources": {"device": "cpu"},
}
IRIS_PARAMS = 4 * 8 + 8 + 8 * 3 + 3

# ids of the jobs this module's good submissions created, per tenant (the final test checks the list)
CREATED: dict[str, set] = {"t1": set(), "t2": set()}


def spec(**changes) -> dict:
    """IRIS with ``changes`` applied: ``training__epochs=3`` sets spec["training"]["epochs"] (list items by
    index: ``model__layers__1``); None deletes the key."""
    out = copy.deepcopy(IRIS)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = out
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return out


def submit(client, body: dict, tenant: str = "t1", **kw) -> dict:
    r = client.post("/v1/jobs", json=body, **kw)
    assert r.status_code in (200, 201), r.text
    CREATED[tenant].add(r.json()["id"])
    return r.json()


def all_jobs(client) -> list[str]:
    ids, after = [], None
    while True:
        r = client.get("/v1/jobs", params={"limit": 100, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        ids += [j["id"] for j in page["data"]]
        if not page["has_more"]:
            return ids
        after = page["last_id"]


@pytest.fixture(scope="module")
def before(t1, t2):
    """The tenants' job lists before this module submitted anything."""
    return {"t1": set(all_jobs(t1)), "t2": set(all_jobs(t2))}


@pytest.fixture(scope="module")
def done_job(service, t1, before):
    """A small iris job that succeeded."""
    job = submit(t1, spec())
    job = service.wait_for(job["id"])
    assert job["status"] == "succeeded", job
    return job


@pytest.fixture(scope="module")
def queued_job(t1, before):
    """A job that stays queued: it asks for CUDA and no worker listens on the gpu queue."""
    return submit(t1, spec(**{"resources__device": "cuda"}))


# ---- the body: syntax, media type, shape ------------------------------------------------------------

def post_raw(client, content, content_type="application/json", path="/v1/jobs", **kw):
    return client.post(path, content=content, headers={"Content-Type": content_type}, **kw)


def test_malformed_json(t1, before):
    err = check_error(post_raw(t1, b'{"name": "x", "model": '), 422, "invalid_syntax", None, ("json", "line 1"))
    assert "column" in err["message"]


def test_malformed_yaml(t1, before):
    check_error(post_raw(t1, b"name: x\nmodel: {layers: [\n  - {type: Linear\n", "application/yaml"), 422,
                "invalid_syntax", None, ("yaml", "line"))


@pytest.mark.parametrize("body,word", [(b"[1, 2, 3]", "list"), (b"42", "int"), (b"null", "nothing"),
                                       (b'"a string"', "str")])
def test_body_not_a_mapping(t1, before, body, word):
    check_error(post_raw(t1, body), 422, "invalid_value", None, ("mapping", word))


def test_yaml_that_is_a_list(t1, before):
    check_error(post_raw(t1, b"- 1\n- 2\n", "application/yaml"), 422, "invalid_value", None, ("mapping",))


def test_unsupported_content_type(t1, before):
    check_error(post_raw(t1, json.dumps(IRIS), "text/plain"), 415, "unsupported_media_type", None,
                ("text/plain", "application/json", "application/yaml"))


def test_empty_body(t1, before):
    check_error(post_raw(t1, b""), 422, "invalid_syntax", None, ("json",))


def test_not_utf8(t1, before):
    check_error(post_raw(t1, b'{"name": "\xff\xfe"}'), 422, "invalid_syntax", None, ("utf-8",))


def test_json_nan_refused(t1, before):
    body = json.dumps(spec()).replace('"lr": 0.01', '"lr": NaN')
    check_error(post_raw(t1, body), 422, "invalid_syntax", None, ("nan",))


def test_deeply_nested_json(t1, before):
    check_error(post_raw(t1, b"[" * 100_000 + b"]" * 100_000), 422, "invalid_syntax", None, ("json",))


def test_deeply_nested_yaml(t1, before):
    check_error(post_raw(t1, b"[" * 100_000 + b"]" * 100_000, "application/yaml"), 422, "invalid_syntax", None,
                ("yaml",))


def test_yaml_alias_refused(t1, before):
    body = b"a: &x [1, 2]\nb: *x\n"
    check_error(post_raw(t1, body, "application/yaml"), 422, "invalid_syntax", None, ("alias",))


def test_yaml_python_tag_refused(t1, before, tmp_path):
    marker = tmp_path / "ran"
    body = f"name: !!python/object/apply:os.mkdir ['{marker}']\n".encode()
    check_error(post_raw(t1, body, "application/yaml"), 422, "invalid_syntax", None, ("yaml",))
    assert not marker.exists()


def test_yaml_spec_accepted_by_validate(t1, before):
    import yaml
    r = post_raw(t1, yaml.safe_dump(IRIS), "application/yaml", path="/v1/jobs/validate")
    assert r.status_code == 200, r.text
    assert r.json()["parameters"] == IRIS_PARAMS


# ---- the schema: types, missing and unknown fields ----------------------------------------------------

@pytest.mark.parametrize("path,value,param", [
    ("training__epochs", "ten", "training.epochs"),
    ("training__epochs", 2.5, "training.epochs"),
    ("data__batch_size", "16", "data.batch_size"),
    ("data__shuffle", "yes", "data.shuffle"),
    ("data__validation_split", 1.5, "data.validation_split"),
    ("training__seed", -1, "training.seed"),
    ("resources__device", "tpu", "resources.device"),
    ("model__layers", {"type": "Linear"}, "model.layers"),
    ("name", "", "name"),
])
def test_wrong_field_type(t1, before, path, value, param):
    err = check_error(t1.post("/v1/jobs", json=spec(**{path: value})), 422, "invalid_value", param)
    assert err["message"].startswith(param), err


@pytest.mark.parametrize("path,param", [("model", "model"), ("loss", "loss"), ("optimizer", "optimizer"),
                                        ("data", "data"), ("data__dataset", "data.dataset"),
                                        ("loss__type", "loss.type")])
def test_missing_field(t1, before, path, param):
    check_error(t1.post("/v1/jobs", json=spec(**{path: None})), 422, "missing_field", param, (param,))


def test_layer_without_type(t1, before):
    body = spec()
    del body["model"]["layers"][1]["type"]
    check_error(t1.post("/v1/jobs", json=body), 422, "missing_field", "model.layers[1].type", ("type",))


def test_unknown_top_level_field(t1, before):
    body = {**spec(), "epochs": 3}
    check_error(t1.post("/v1/jobs", json=body), 422, "unknown_field", "epochs", ("epochs", "unknown"))


def test_unknown_nested_field_suggests(t1, before):
    body = spec(**{"training__epoch": 3})
    check_error(t1.post("/v1/jobs", json=body), 422, "unknown_field", "training.epoch", ("did you mean", "epochs"))


# ---- the vocabulary and the dry build ------------------------------------------------------------------

def test_unknown_layer_type(t1, before):
    body = spec(**{"model__layers__1": {"type": "Relu"}})
    check_error(t1.post("/v1/jobs", json=body), 422, "unknown_type", "model.layers[1].type",
                ("'Relu'", "did you mean", "ReLU"))


def test_layer_type_that_is_a_loss(t1, before):
    body = spec(**{"model__layers__1": {"type": "MSELoss"}})
    check_error(t1.post("/v1/jobs", json=body), 422, "unknown_type", "model.layers[1].type", ("MSELoss", "loss"))


def test_bad_layer_argument_name(t1, before):
    body = spec(**{"model__layers__2": {"type": "Linear", "in_features": 8, "out_feature": 3}})
    check_error(t1.post("/v1/jobs", json=body), 422, "invalid_argument", "model.layers[2].out_feature",
                ("out_feature", "did you mean", "out_features"))


def test_bad_layer_argument_type(t1, before):
    body = spec(**{"model__layers__2": {"type": "Linear", "in_features": 8, "out_features": "three"}})
    check_error(t1.post("/v1/jobs", json=body), 422, "invalid_argument", "model.layers[2].out_features",
                ("integer", '"three"'))


def test_missing_layer_argument(t1, before):
    body = spec(**{"model__layers__2": {"type": "Linear", "in_features": 8}})
    check_error(t1.post("/v1/jobs", json=body), 422, "invalid_argument", "model.layers[2].out_features",
                ("out_features",))


def test_bad_layer_argument_value(t1, before):
    body = spec(**{"model__layers__1": {"type": "Dropout", "p": 1.5}})
    check_error(t1.post("/v1/jobs", json=body), 422, "invalid_argument", "model.layers[1].p", ("Dropout", "1.5"))


def test_shape_mismatch(t1, before):
    body = spec(**{"model__layers__0": {"type": "Linear", "in_features": 5, "out_features": 8}})
    err = check_error(t1.post("/v1/jobs", json=body), 422, "shape_mismatch", ..., ("model.layers[0]", "iris"))
    assert err["param"].startswith("model.layers[0]"), err
    assert "5" in err["message"] and "4" in err["message"], err


def test_output_does_not_fit_the_classes(t1, before):
    body = spec(**{"model__layers__2": {"type": "Linear", "in_features": 8, "out_features": 2}})
    err = check_error(t1.post("/v1/jobs", json=body), 422, "shape_mismatch", ..., ("3",))
    assert err["param"].startswith("model.layers[2]"), err


@pytest.mark.parametrize("path,value,code,param,word", [
    ("loss__type", "CrossEntropy", "unknown_type", "loss.type", "CrossEntropyLoss"),
    ("optimizer__type", "Adamm", "unknown_type", "optimizer.type", "Adam"),
    ("optimizer__type", "LBFGS", "unknown_type", "optimizer.type", "closure"),
    ("data__dataset", "irs", "unknown_dataset", "data.dataset", "iris"),
    ("data__dataset", "text:nope", "unknown_dataset", "data.dataset", "text:tinyshakespeare"),
    ("data__dataset", "upload:ds_doesnotexist", "unknown_dataset", "data.dataset", "ds_doesnotexist"),
])
def test_unknown_names(t1, before, path, value, code, param, word):
    check_error(t1.post("/v1/jobs", json=spec(**{path: value})), 422, code, param, (value.partition(":")[2] or value,
                                                                                    word))


def test_loss_that_does_not_fit_the_task(t1, before):
    check_error(t1.post("/v1/jobs", json=spec(**{"loss__type": "MSELoss"})), 422, None, ..., ("MSELoss",))


def test_option_that_does_not_apply(t1, before):
    check_error(t1.post("/v1/jobs", json=spec(**{"data__seq_len": 8})), 422, "invalid_value", "data.seq_len",
                ("iris",))


def test_optimizer_lr_not_finite(t1, before):
    body = json.dumps(spec()).replace('"lr": 0.01', '"lr": 1e400')
    check_error(post_raw(t1, body), 422, None, "optimizer.lr", ("finite",))


def _leaves(node, path=()):
    """Every path in a spec (mappings and lists, and their leaves)."""
    yield path
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield from _leaves(v, (*path, k))


ODD_VALUES = [None, -1, 0, 10**12, 1.5, -1e300, "x", "", [], [1, "a"], {}, {"type": "Linear"}, True]


def test_no_field_value_is_a_500(t1, before):
    """Every field of a good spec replaced by each of a few odd values: always a 200 or a 4xx in the error
    shape, never a 500 (one /validate per case: nothing is queued)."""
    import itertools
    seen = set()
    for path, value in itertools.product(list(_leaves(IRIS))[1:], ODD_VALUES):
        body = copy.deepcopy(IRIS)
        node = body
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        r = t1.post("/v1/jobs/validate", json=body)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (path, value, r.status_code, r.text)
        if r.status_code != 200:
            check_error(r, r.status_code)
        seen.add(r.status_code)
    assert 422 in seen


# ---- limits ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,value,code,param,says", [
    ("training__epochs", 0, "invalid_value", "training.epochs", ("1",)),
    ("training__epochs", -5, "invalid_value", "training.epochs", ("1",)),
    ("training__epochs", 10**9, "limit_exceeded", "training.epochs", ("10000", "max_epochs")),
    ("training__epochs", 10**30, "limit_exceeded", "training.epochs", ("10000",)),
    ("data__batch_size", 0, "invalid_value", "data.batch_size", ("1",)),
    ("data__batch_size", -16, "invalid_value", "data.batch_size", ("1",)),
    ("data__batch_size", 10**7, "limit_exceeded", "data.batch_size", ("65536", "max_batch_size")),
])
def test_epochs_and_batch_size_limits(t1, before, path, value, code, param, says):
    check_error(t1.post("/v1/jobs", json=spec(**{path: value})), 422, code, param, says)


def test_batch_larger_than_the_dataset_with_drop_last(t1, before):
    body = spec(**{"data__batch_size": 1000, "data__drop_last": True})
    check_error(t1.post("/v1/jobs", json=body), 422, "invalid_value", "data.batch_size", ("1000", "drop_last"))


def test_too_many_layers(t1, before):
    layers = [{"type": "Linear", "in_features": 4, "out_features": 4}] + [{"type": "ReLU"}] * 256 + \
        [{"type": "Linear", "in_features": 4, "out_features": 3}]
    body = spec(**{"model__layers": layers})
    check_error(t1.post("/v1/jobs", json=body), 422, "limit_exceeded", "model", ("258", "256", "max_layers"))


def test_too_many_parameters(t1, before):
    layers = [{"type": "Linear", "in_features": 4, "out_features": 20000}, {"type": "ReLU"},
              {"type": "Linear", "in_features": 20000, "out_features": 20000}, {"type": "ReLU"},
              {"type": "Linear", "in_features": 20000, "out_features": 3}]
    body = spec(**{"model__layers": layers})
    check_error(t1.post("/v1/jobs", json=body), 422, "limit_exceeded", ..., ("parameters", "100,000,000"))


def test_huge_integer_argument(t1, before):
    body = spec(**{"model__layers__0": {"type": "Linear", "in_features": 4, "out_features": 10**12}})
    check_error(t1.post("/v1/jobs", json=body), 422, "limit_exceeded", "model.layers[0].out_features",
                ("1000000000000",))


def _big_spec() -> bytes:
    body = spec(**{"name": "x" * 100})
    body["model"]["layers"][1]["padding"] = "y" * (1 << 20)
    return json.dumps(body).encode()


def test_spec_over_the_limit_with_content_length(t1, before):
    body = _big_spec()
    assert len(body) > 1 << 20
    check_error(post_raw(t1, body), 413, "request_too_large", None, (str(1 << 20), "FITA_MAX_BODY_BYTES"))


def test_spec_over_the_limit_chunked(t1, before):
    body = _big_spec()

    def chunks():
        for i in range(0, len(body), 64 << 10):
            yield body[i:i + 64 << 10]
    check_error(post_raw(t1, chunks()), 413, "request_too_large", None, (str(1 << 20),))


def test_spec_under_the_limit_chunked_is_read(t1, before):
    body = json.dumps(spec()).encode()

    def chunks():
        for i in range(0, len(body), 100):
            yield body[i:i + 100]
    r = post_raw(t1, chunks(), path="/v1/jobs/validate")
    assert r.status_code == 200, r.text


# ---- /validate ----------------------------------------------------------------------------------------

def test_validate_good_spec(t1, before):
    r = t1.post("/v1/jobs/validate", json=spec())
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["object"] == "training.validation"
    assert dry["parameters"] == dry["trainable_parameters"] == IRIS_PARAMS
    assert dry["flops_per_step"] > 0 and dry["forward_flops_per_sample"] > 0
    assert dry["memory"]["parameters"] == IRIS_PARAMS * 4 and dry["memory"]["total"] > 0
    assert dry["output_shape"] == [3]
    assert dry["dataset"]["input_shape"] == [4] and dry["dataset"]["n_classes"] == 3
    assert dry["spec"]["training"]["epochs"] == 2 and dry["spec"]["data"]["standardize"] is True
    assert dry["total_steps"] == dry["steps_per_epoch"] * 2


def test_validate_bad_spec(t1, before):
    body = spec(**{"model__layers__0": {"type": "Linear", "in_features": 5, "out_features": 8}})
    check_error(t1.post("/v1/jobs/validate", json=body), 422, "shape_mismatch")
    check_error(t1.post("/v1/jobs/validate", json=spec(**{"loss": None})), 422, "missing_field", "loss")


def test_validate_needs_a_key(service, before):
    with service.client(None) as anon:
        check_error(anon.post("/v1/jobs/validate", json=spec()), 401, "missing_api_key")


# ---- auth -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/job_x"),
                                         ("GET", "/v1/datasets"), ("POST", "/v1/datasets")])
def test_missing_api_key(service, before, method, path):
    with service.client(None) as anon:
        r = anon.request(method, path, json=spec() if method == "POST" else None)
    check_error(r, 401, "missing_api_key", None, ("Authorization: Bearer",))
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("value", [f"Basic {KEYS['t1']}", KEYS["t1"], "Bearer", "Token abc"])
def test_wrong_scheme(service, before, value):
    with service.client(None) as anon:
        r = anon.get("/v1/jobs", headers={"Authorization": value})
    check_error(r, 401, "invalid_authorization", None, ("Bearer",))
    assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_key(service, before):
    with service.client(None) as anon:
        r = anon.get("/v1/jobs", headers={"Authorization": "Bearer fita_sk_not-a-real-key"})
    check_error(r, 401, "invalid_api_key", None, ("not valid",))
    assert r.headers["www-authenticate"] == "Bearer"


def test_scheme_is_case_insensitive(service, before):
    with service.client(None) as anon:
        r = anon.get("/v1/jobs", headers={"Authorization": f"bearer {KEYS['t1']}"})
    assert r.status_code == 200, r.text


# ---- unknown ids, paths and methods ------------------------------------------------------------------------

@pytest.mark.parametrize("method,suffix,body", [
    ("GET", "", None), ("GET", "/metrics", None), ("GET", "/events", None), ("GET", "/checkpoints", None),
    ("GET", "/checkpoints/1", None), ("GET", "/weights", None), ("POST", "/cancel", None),
    ("POST", "/pause", None), ("POST", "/resume", None), ("DELETE", "", None),
    ("POST", "/predict", {"inputs": [[1, 2, 3, 4]]}),
])
@pytest.mark.parametrize("job_id", ["job_doesnotexist", "job..x", "a" * 300, "job%20x"])
def test_unknown_job(t1, before, method, suffix, body, job_id):
    r = t1.request(method, f"/v1/jobs/{job_id}{suffix}", json=body)
    check_error(r, 404, "job_not_found", "job_id", ("no job",))


def test_unknown_job_event_stream(t1, before):
    r = t1.get("/v1/jobs/job_doesnotexist/events", headers={"Accept": "text/event-stream"})
    check_error(r, 404, "job_not_found", "job_id")


def test_unknown_path(t1, before):
    check_error(t1.get("/v1/nothing-here"), 404, "not_found", None, ("/v1/nothing-here",))
    check_error(t1.get("/v1/jobs/job_x/nothing"), 404, "not_found", None, ("/v1/jobs/job_x/nothing",))


def test_unknown_path_without_a_key(service, before):
    with service.client(None) as anon:
        check_error(anon.get("/nope"), 404, "not_found")


@pytest.mark.parametrize("method,path", [("PUT", "/v1/jobs"), ("PATCH", "/v1/jobs/job_x"),
                                         ("GET", "/v1/jobs/job_x/cancel"), ("DELETE", "/v1/jobs")])
def test_wrong_method(t1, before, method, path):
    r = t1.request(method, path)
    check_error(r, 405, "method_not_allowed", None, (method, path))
    assert r.headers.get("allow"), r.headers


# ---- query parameters ------------------------------------------------------------------------------------

@pytest.mark.parametrize("params,param", [({"limit": 0}, "limit"), ({"limit": 1000}, "limit"),
                                          ({"limit": "ten"}, "limit"), ({"status": "bogus"}, "status")])
def test_bad_list_query(t1, before, params, param):
    err = check_error(t1.get("/v1/jobs", params=params), 422, "invalid_value", param, (param,))
    if param == "status":
        assert "queued" in err["message"] and "succeeded" in err["message"], err


def test_bad_list_cursor(t1, before):
    check_error(t1.get("/v1/jobs", params={"after": "job_nope"}), 400, "invalid_cursor", "after", ("job_nope",))
    check_error(t1.get("/v1/jobs", params={"after": "../../etc"}), 400, "invalid_cursor", "after")


@pytest.mark.parametrize("params,param", [({"step_from": -1}, "step_from"), ({"step_to": "x"}, "step_to"),
                                          ({"format": "xml"}, "format")])
def test_bad_metrics_query(t1, queued_job, params, param):
    check_error(t1.get(f"/v1/jobs/{queued_job['id']}/metrics", params=params), 422, "invalid_value", param,
                (param,))


@pytest.mark.parametrize("params,param", [({"limit": 0}, "limit"), ({"limit": 1001}, "limit")])
def test_bad_events_query(t1, queued_job, params, param):
    check_error(t1.get(f"/v1/jobs/{queued_job['id']}/events", params=params), 422, "invalid_value", param)


def test_bad_events_cursor(t1, queued_job):
    jid = queued_job["id"]
    check_error(t1.get(f"/v1/jobs/{jid}/events", params={"after": "garbage"}), 400, "invalid_cursor", "after",
                ("garbage",))
    check_error(t1.get(f"/v1/jobs/{jid}/events", headers={"Last-Event-ID": "nope"}), 400, "invalid_cursor",
                "Last-Event-ID")


def test_bad_weights_query(t1, done_job):
    check_error(t1.get(f"/v1/jobs/{done_job['id']}/weights", params={"which": "worst"}), 422, "invalid_value",
                "which")


def test_bad_checkpoint_step(t1, done_job):
    check_error(t1.get(f"/v1/jobs/{done_job['id']}/checkpoints/latest"), 422, "invalid_value", "step")


# ---- artifacts that do not exist yet --------------------------------------------------------------------

def test_weights_before_they_exist(t1, queued_job):
    err = check_error(t1.get(f"/v1/jobs/{queued_job['id']}/weights"), 404, "weights_not_found", "job_id",
                      ("queued", "succeeds"))
    assert queued_job["id"] in err["message"]
    check_error(t1.get(f"/v1/jobs/{queued_job['id']}/weights", params={"which": "best"}), 404, "weights_not_found")


def test_checkpoint_before_it_exists(t1, queued_job):
    assert t1.get(f"/v1/jobs/{queued_job['id']}/checkpoints").json()["data"] == []
    check_error(t1.get(f"/v1/jobs/{queued_job['id']}/checkpoints/1"), 404, "checkpoint_not_found", "step",
                ("no checkpoint", "step 1", "/checkpoints"))


def test_checkpoint_at_a_step_that_has_none(t1, done_job):
    check_error(t1.get(f"/v1/jobs/{done_job['id']}/checkpoints/999999"), 404, "checkpoint_not_found", "step",
                ("999999",))


def test_weights_of_a_finished_job_download(t1, done_job):
    r = t1.get(f"/v1/jobs/{done_job['id']}/weights")
    assert r.status_code == 200 and len(r.content) > IRIS_PARAMS * 4


# ---- /predict ---------------------------------------------------------------------------------------------

def test_predict_good(t1, done_job):
    r = t1.post(f"/v1/jobs/{done_job['id']}/predict", json={"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["outputs"]) == 2 and len(out["probabilities"][0]) == 3
    assert len(out["classes"]) == 3 and all(p in out["classes"] for p in out["predicted"])


@pytest.mark.parametrize("inputs,says", [([[1, 2, 3]], ("[4]", "[3]")), ([[1, 2, 3, 4, 5]], ("[4]", "[5]")),
                                         ([[[1, 2, 3, 4]]], ("[4]",)), ([1, 2], ("[4]",))])
def test_predict_wrong_shape(t1, done_job, inputs, says):
    check_error(t1.post(f"/v1/jobs/{done_job['id']}/predict", json={"inputs": inputs}), 422, "invalid_value",
                "inputs", says)


@pytest.mark.parametrize("inputs", [[["a", "b", "c", "d"]], [[1, 2, None, 4]], [[1, 2, [3], 4]],
                                    [[1, 2, 3], [1, 2, 3, 4]], [{"x": 1}]])
def test_predict_not_numbers(t1, done_job, inputs):
    err = check_error(t1.post(f"/v1/jobs/{done_job['id']}/predict", json={"inputs": inputs}), 422, "invalid_value")
    assert err["param"] in ("inputs", "inputs[0]"), err


def test_predict_not_finite(t1, done_job):
    body = b'{"inputs": [[1e400, 2, 3, 4]]}'
    check_error(post_raw(t1, body, path=f"/v1/jobs/{done_job['id']}/predict"), 422, "invalid_value", "inputs",
                ("nan or infinite",))


@pytest.mark.parametrize("inputs,says", [([[1e39, 1, 2, 3]], ("float32",)), ([[1e308] * 4], ("float32",)),
                                         ([[10**400, 1, 2, 3]], ("numbers",)), ([["1", "2", "3", "4"]], ("numbers",)),
                                         ([[1, 2, 3, "4"]], ("numbers",))])
def test_predict_numbers_out_of_range_or_text(t1, done_job, inputs, says):
    """Not NaN outputs with a made-up class, not a 500, not strings read as numbers: a 422."""
    check_error(t1.post(f"/v1/jobs/{done_job['id']}/predict", json={"inputs": inputs}), 422, "invalid_value",
                "inputs", says)


@pytest.fixture(scope="module")
def lm_job(service, t1, before):
    """A tiny character model that succeeded (token-id inputs)."""
    vocab = t1.get("/v1/datasets/text:tinyshakespeare").json()["info"]["vocab_size"]
    body = {"name": "chars", "model": {"layers": [
        {"type": "Embedding", "num_embeddings": vocab, "embedding_dim": 8},
        {"type": "Linear", "in_features": 8, "out_features": vocab}]},
        "data": {"dataset": "text:tinyshakespeare", "seq_len": 8, "batch_size": 4096},
        "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 1}, "resources": {"device": "cpu"}}
    job = service.wait_for(submit(t1, body)["id"])
    assert job["status"] == "succeeded", job
    return job, vocab


def test_predict_token_ids(t1, lm_job):
    job, vocab = lm_job
    path = f"/v1/jobs/{job['id']}/predict"
    r = t1.post(path, json={"inputs": [[0, 1, 2, 3, 4, 5, 6, vocab - 1]]})
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"][0]) == 8 and len(r.json()["outputs"][0][0]) == vocab
    for bad in ([0, 1, 2, 3, 4, 5, 6, vocab], [0, 1, 2, 3, 4, 5, 6, -1], [0, 1, 2, 3, 4, 5, 6, 1.5]):
        check_error(t1.post(path, json={"inputs": [bad]}), 422, "invalid_value", "inputs",
                    ("token ids", str(vocab - 1)))
    check_error(t1.post(path, json={"inputs": [[0, 1, 2]]}), 422, "invalid_value", "inputs", ("[8]",))


@pytest.mark.parametrize("body,code,param", [({}, "missing_field", "inputs"), ({"inputs": []}, "invalid_value",
                                                                                  "inputs"),
                                             ({"inputs": [[1, 2, 3, 4]], "extra": 1}, "invalid_value", "extra"),
                                             ({"inputs": "1,2,3,4"}, "invalid_value", "inputs")])
def test_predict_bad_body(t1, done_job, body, code, param):
    check_error(t1.post(f"/v1/jobs/{done_job['id']}/predict", json=body), 422, code, param)


def test_predict_malformed_json(t1, done_job):
    check_error(post_raw(t1, b'{"inputs": [[1, 2', path=f"/v1/jobs/{done_job['id']}/predict"), 422,
                "invalid_syntax", None, ("json", "character"))


def test_predict_not_json(t1, done_job):
    path = f"/v1/jobs/{done_job['id']}/predict"
    check_error(post_raw(t1, b"1,2,3,4", "text/csv", path=path), 415, "unsupported_media_type", None,
                ("text/csv", "application/json"))
    check_error(post_raw(t1, b"[[1, 2, 3, 4]]", path=path), 422, "invalid_value", None, ("JSON object",))
    check_error(t1.post(path), 422, "missing_field", None, ("JSON object",))


def test_predict_before_success(t1, queued_job):
    check_error(t1.post(f"/v1/jobs/{queued_job['id']}/predict", json={"inputs": [[1, 2, 3, 4]]}), 409,
                "not_ready", "job_id", ("queued", "succeeded"))


# ---- job control in the wrong state ----------------------------------------------------------------------

def test_cancel_finished_job(t1, done_job):
    check_error(t1.post(f"/v1/jobs/{done_job['id']}/cancel"), 409, "invalid_state", "job_id", ("succeeded",))


def test_pause_and_resume_in_the_wrong_state(t1, done_job, queued_job):
    check_error(t1.post(f"/v1/jobs/{done_job['id']}/pause"), 409, "invalid_state", "job_id")
    check_error(t1.post(f"/v1/jobs/{queued_job['id']}/resume"), 409, "invalid_state", "job_id")


def test_delete_queued_job(t1, queued_job):
    check_error(t1.delete(f"/v1/jobs/{queued_job['id']}"), 409, "invalid_state", "job_id", ("queued", "cancel"))


def test_delete_running_job(service, t1, done_job):
    long = spec(**{"name": "long", "training__epochs": 10000, "data__batch_size": 1})
    job = submit(t1, long)
    try:
        service.wait_for(job["id"], until=lambda j: j["status"] != "queued")
        check_error(t1.delete(f"/v1/jobs/{job['id']}"), 409, "invalid_state", "job_id", ("running", "cancel"))
    finally:
        assert t1.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert service.wait_for(job["id"])["status"] == "cancelled"
    assert t1.delete(f"/v1/jobs/{job['id']}").status_code == 200
    CREATED["t1"].discard(job["id"])
    check_error(t1.get(f"/v1/jobs/{job['id']}"), 404, "job_not_found")


# ---- tenants ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/metrics"), ("GET", "/events"),
                                           ("GET", "/checkpoints"), ("GET", "/weights"), ("POST", "/cancel"),
                                           ("DELETE", ""), ("POST", "/predict")])
def test_other_tenant_sees_nothing(t2, done_job, method, suffix):
    body = {"inputs": [[1, 2, 3, 4]]} if suffix == "/predict" else None
    err = check_error(t2.request(method, f"/v1/jobs/{done_job['id']}{suffix}", json=body), 404, "job_not_found",
                      "job_id")
    assert err["message"] == f"no job {done_job['id']!r}"


def test_other_tenant_list(t1, t2, done_job):
    assert done_job["id"] not in all_jobs(t2)
    assert done_job["id"] in all_jobs(t1)
    check_error(t2.get("/v1/jobs", params={"after": done_job["id"]}), 400, "invalid_cursor", "after")


# ---- Idempotency-Key --------------------------------------------------------------------------------------

def test_idempotency_key(t1, t2, queued_job):
    body = spec(**{"name": "idem", "resources__device": "cuda"})   # stays queued; cancelled below
    first = t1.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    CREATED["t1"].add(first.json()["id"])
    again = t1.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == f"/v1/jobs/{first.json()['id']}"
    other = t1.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    CREATED["t1"].add(other.json()["id"])
    # keys are per tenant: t2's k-1 is t2's own job
    theirs = t2.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    CREATED["t2"].add(theirs.json()["id"])
    # a bad spec with a used key is still refused, and queues nothing
    check_error(t1.post("/v1/jobs", json=spec(**{"loss": None}), headers={"Idempotency-Key": "k-1"}), 422,
                "missing_field", "loss")
    for client, jid in ((t1, first.json()["id"]), (t1, other.json()["id"]), (t2, theirs.json()["id"])):
        assert client.post(f"/v1/jobs/{jid}/cancel").status_code == 200


def test_idempotency_key_reused_with_another_spec(t1, before):
    """As Stripe and the IETF draft do: a key replays only the request it was first used for."""
    body = spec(**{"name": "idem-other", "resources__device": "cuda"})
    first = t1.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-other"})
    assert first.status_code == 201, first.text
    CREATED["t1"].add(first.json()["id"])
    try:
        changed = spec(**{"name": "idem-other", "resources__device": "cuda", "training__epochs": 3})
        r = t1.post("/v1/jobs", json=changed, headers={"Idempotency-Key": "k-other"})
        if r.status_code in (200, 201):
            CREATED["t1"].add(r.json()["id"])
        check_error(r, 422, "idempotency_key_reused", "idempotency-key", ("idempotency-key", first.json()["id"]))
    finally:
        assert t1.post(f"/v1/jobs/{first.json()['id']}/cancel").status_code == 200


def test_idempotency_key_too_long(t1, before):
    check_error(t1.post("/v1/jobs", json=spec(), headers={"Idempotency-Key": "k" * 300}), 422, "invalid_value",
                "idempotency-key")


# ---- nothing bad reached the queue ---------------------------------------------------------------------------

def test_only_good_submissions_became_jobs(service, t1, t2, before, done_job, queued_job):
    """Runs last: every job in the tenants' lists is one a good submission above created."""
    for tenant, client in (("t1", t1), ("t2", t2)):
        now = set(all_jobs(client))
        assert now - before[tenant] == CREATED[tenant], (tenant, now - before[tenant], CREATED[tenant])
    conn = redis.Redis.from_url(service.redis_url)
    try:   # the worker has drained everything good from the cpu queue; nothing else was put there
        assert Queue("cpu", connection=conn).count == 0
    finally:
        conn.close()
    assert t1.post(f"/v1/jobs/{queued_job['id']}/cancel").status_code == 200
