"""The people-facing `fita` commands, run as real processes against the live service: submit --wait and
its exit status, --json that parses, local validation without a server, metrics --plot, logs --follow
that ends with the job, download -o that PyTorch loads, datasets, and errors as one clean line."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import yaml

from service_fixture import KEYS, ROOT, service  # noqa: F401
from workers.redis_server import free_port

IRIS = {"name": "iris-cli",
        "model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
                             {"type": "Linear", "in_features": 16, "out_features": 3}]},
        "data": {"dataset": "iris", "batch_size": 16},
        "loss": {"type": "CrossEntropyLoss"}, "optimizer": {"type": "Adam", "lr": 0.01},
        "training": {"epochs": 3, "seed": 0}, "resources": {"device": "cpu"}}
DIVERGES = {"model": {"layers": [{"type": "Linear", "in_features": 8, "out_features": 16}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 16, "out_features": 1}]},
            "data": {"dataset": "regression", "n_samples": 200, "batch_size": 16}, "loss": {"type": "MSELoss"},
            "optimizer": {"type": "SGD", "lr": 1e10}, "training": {"epochs": 5, "seed": 0}}   # to NaN
BLOCKS = set("▁▂▃▄▅▆▇█")


def spec_file(tmp_path, spec: dict, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def env_for(service, key=KEYS["t1"]) -> dict:
    return {**os.environ, "FITA_SERVER": service.url, "FITA_API_KEY": key, "PYTHONPATH": str(ROOT)}


def fita(service, *args, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fita", *map(str, args)], env=env or env_for(service), cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def fita_json(service, *args):
    r = fita(service, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_clean_error(r, *says):
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    for text in says:
        assert text in r.stderr, r.stderr


@pytest.fixture(scope="module")
def done(service, tmp_path_factory) -> dict:
    """A job submitted with --wait: (its process, its id)."""
    r = fita(service, "submit", spec_file(tmp_path_factory.mktemp("spec"), IRIS), "--wait")
    return {"run": r, "id": r.stdout.split()[0]}


def test_submit_wait_shows_progress_then_a_summary(done):
    r = done["run"]
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == done["id"] and done["id"].startswith("job_")
    assert f"{done['id']} succeeded" in lines[1] and "val_accuracy" in r.stdout
    assert f"fita download {done['id']}" in r.stdout
    progress = r.stderr.strip().splitlines()          # not a terminal: a line per epoch and status
    assert progress[-1].startswith("succeeded") and "epoch 3/3" in progress[-1] and "24/24" in progress[-1]


def test_submit_without_wait_prints_the_id(service, tmp_path):
    r = fita(service, "submit", spec_file(tmp_path, IRIS))
    assert r.returncode == 0 and r.stdout.strip().startswith("job_") and len(r.stdout.split()) == 1
    fita(service, "cancel", r.stdout.strip())   # whatever it has reached: not this test's subject


def test_json_outputs_parse(service, done, tmp_path):
    job_id = done["id"]
    assert fita_json(service, "status", job_id)["status"] == "succeeded"
    assert job_id in [j["id"] for j in fita_json(service, "jobs", "--limit", "50")]
    assert all(j["status"] == "succeeded" for j in fita_json(service, "jobs", "--status", "succeeded"))
    metrics = fita_json(service, "metrics", job_id)
    assert len(metrics["train"]["loss"]) == 24 and metrics["validation"]["epoch"] == [0, 1, 2]
    assert fita_json(service, "validate", spec_file(tmp_path, IRIS))["parameters"] == 131
    assert fita_json(service, "validate", spec_file(tmp_path, IRIS), "--remote")["parameters"] == 131
    assert "iris" in [d["id"] for d in fita_json(service, "datasets", "list", "--builtin")]
    assert fita_json(service, "datasets", "show", "iris")["info"]["n_samples"] == 150
    submitted = fita_json(service, "submit", spec_file(tmp_path, IRIS), "--wait")
    assert submitted["status"] == "succeeded" and submitted["spec"]["name"] == "iris-cli"
    r = fita(service, "logs", job_id, "--json")                  # one event per line
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["type"] == "queued" and events[-1]["type"] == "succeeded"


def test_global_options_before_or_after_the_command(service, done):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FITA_SERVER": "http://127.0.0.1:1", "FITA_API_KEY": "wrong"}
    before = fita(service, "--server", service.url, "--api-key", KEYS["t1"], "--json", "status", done["id"], env=env)
    after = fita(service, "status", done["id"], "--server", service.url, "--api-key", KEYS["t1"], "--json", env=env)
    assert before.returncode == after.returncode == 0, (before.stderr, after.stderr)
    assert json.loads(before.stdout)["id"] == json.loads(after.stdout)["id"] == done["id"]


def test_people_read_tables(service, done):
    jobs = fita(service, "jobs")
    assert jobs.returncode == 0 and jobs.stdout.split("\n")[0].split() == ["ID", "NAME", "STATUS", "STEP", "LOSS",
                                                                          "VAL", "CREATED"]
    assert any(line.startswith(done["id"]) and "succeeded" in line for line in jobs.stdout.splitlines())
    status = fita(service, "status", done["id"])
    assert status.returncode == 0 and "succeeded" in status.stdout and "epoch 3/3" in status.stdout
    metrics = fita(service, "metrics", done["id"], "--rows", "2")
    assert metrics.returncode == 0 and "train (last 2 of 24)" in metrics.stdout
    assert "validation (last 2 of 3)" in metrics.stdout


def test_metrics_plot_draws_block_characters(service, done):
    r = fita(service, "metrics", done["id"], "--plot")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("  ", 1) for line in r.stdout.splitlines())
    assert {"train loss (log)", "validation loss (log)", "validation accuracy"} <= {k.strip() for k in lines}
    for line in r.stdout.splitlines():
        assert set(line) & BLOCKS, line


def test_a_failing_job_exits_1(service, tmp_path):
    r = fita(service, "submit", spec_file(tmp_path, DIVERGES), "--wait")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert " failed in " in r.stdout and "nan_loss" in r.stdout and "Traceback" not in r.stderr


def test_a_cancelled_job_exits_1(service, tmp_path):
    long = subprocess.Popen([sys.executable, "-m", "fita", "submit", spec_file(tmp_path, IRIS | {"training": {
        "epochs": 5000}}), "--wait"], env=env_for(service), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    job_id = long.stdout.readline().strip()
    assert fita(service, "cancel", job_id).stdout.split() in ([job_id, "cancelling"], [job_id, "cancelled"])
    out, err = long.communicate(timeout=120)
    assert long.returncode == 1, err
    assert f"{job_id} cancelled" in out


def test_validate_locally_without_a_server(service, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FITA_SERVER": f"http://127.0.0.1:{free_port()}"}
    r = fita(service, "validate", ROOT / "configs" / "digits-mlp.yaml", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digits-mlp is valid") and "9,610" in r.stdout and "FLOPs per step" in r.stdout
    bad = copy.deepcopy(IRIS)
    bad["model"]["layers"][2]["in_features"] = 7
    r = fita(service, "validate", spec_file(tmp_path, bad), env=env)
    assert_clean_error(r, "(shape_mismatch, param model.layers[2])")
    assert_clean_error(fita(service, "validate", tmp_path / "missing.yaml", env=env), "missing.yaml")


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_every_example_config_validates(config, capsys, monkeypatch):
    """In this process (each `fita` process spends seconds importing the engine and scikit-learn)."""
    from fita.cli import main
    monkeypatch.setenv("FITA_SERVER", f"http://127.0.0.1:{free_port()}")
    assert main(["validate", str(ROOT / "configs" / config)]) == 0
    assert " is valid\n" in capsys.readouterr().out


def test_logs_follow_ends_when_the_job_ends(service, tmp_path):
    """The followed job waits behind a long one, so the stream is surely live when it starts."""
    blocker = fita_json(service, "submit", spec_file(tmp_path, IRIS | {"training": {"epochs": 5000}}, "long.yaml"))
    followed = fita(service, "submit", spec_file(tmp_path, IRIS)).stdout.strip()
    follow = subprocess.Popen([sys.executable, "-m", "fita", "logs", followed, "--follow"], env=env_for(service),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "queued" in follow.stdout.readline()
        assert fita(service, "cancel", blocker["id"]).returncode == 0
        out, err = follow.communicate(timeout=120)
    finally:
        follow.kill()
    assert follow.returncode == 0, err
    types = [line.split()[1] for line in out.splitlines()]
    assert types[0] == "started" and types.count("epoch_end") == 3 and types[-1] == "succeeded"


def test_download_writes_weights_torch_loads(service, done, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file
    out = tmp_path / "model.safetensors"
    r = fita(service, "download", done["id"], "-o", out)
    assert r.returncode == 0 and r.stdout.startswith(str(out)), r.stderr
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    model.load_state_dict(load_file(out))
    best = fita_json(service, "download", done["id"], "--which", "best", "-o", tmp_path / "best.safetensors")
    assert set(load_file(best["path"])) == set(model.state_dict()) and best["bytes"] > 0
    r = fita(service, "download", done["id"], "--checkpoint", "24", cwd=tmp_path)   # the server's file name
    assert r.returncode == 0, r.stderr
    state = load_file(tmp_path / f"{done['id']}-step-24.safetensors")
    assert state["model.0.weight"].shape == (16, 4)


def test_datasets_upload_show_list_delete(service, tmp_path):
    path = tmp_path / "toy.csv"
    path.write_text("x1,x2,kind\n" + "".join(f"{i % 3},{i % 5},{'ab'[i % 2]}\n" for i in range(40)))
    r = fita(service, "datasets", "upload", path, "--target", "kind", "--task", "classification")
    assert r.returncode == 0, r.stderr
    ds_id = r.stdout.strip()
    assert ds_id.startswith("ds_") and f"upload:{ds_id}" in r.stderr
    show = fita(service, "datasets", "show", ds_id)
    assert show.returncode == 0 and "classification" in show.stdout and "toy.csv" in show.stdout
    listing = fita(service, "datasets", "list")
    assert any(line.startswith(ds_id) for line in listing.stdout.splitlines())
    assert fita(service, "datasets", "delete", ds_id).returncode == 0
    assert_clean_error(fita(service, "datasets", "show", ds_id), "dataset_not_found")


@pytest.mark.parametrize("command", [["status"], ["cancel"], ["metrics"], ["logs"], ["download"]])
def test_an_unknown_id_is_one_clean_line(service, command):
    r = fita(service, *command, "job_nope")
    assert_clean_error(r)
    assert r.stderr == "error: no job 'job_nope' (job_not_found, param job_id)\n"


def test_a_bad_key_and_no_server_are_clean_errors(service, done):
    assert_clean_error(fita(service, "status", done["id"], env=env_for(service, key="wrong")), "invalid_api_key")
    r = fita(service, "jobs", "--server", f"http://127.0.0.1:{free_port()}")
    assert_clean_error(r, "cannot reach the Fita server", "connection_error")
