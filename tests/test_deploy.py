"""Deployment files, checked without a Docker engine (none runs here): docker-compose.yml is valid
against the Compose Specification's JSON Schema (../shared/schemas/compose-spec.json) and wires
Redis, the API and the workers as DESIGN.md says; every service command is the `fita` console
script; the Dockerfile has what the image needs (a base chosen by build argument, a non-root user,
the data directory, the API's port and health check); .dockerignore keeps the image small."""
from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"

# The commands the team agreed on (the CLI lands with the service, issue 4).
COMMANDS = {
    "api": ["fita", "api"],
    "worker-gpu": ["fita", "worker", "--queues", "gpu,cpu", "--device", "cuda:0"],
    "worker-cpu": ["fita", "worker", "--queues", "cpu", "--device", "cpu"],
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def command_of(service: dict) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd or [])


def env_of(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


# ---- docker-compose.yml ----------------------------------------------------------------------------

def test_compose_is_valid_against_the_compose_spec(compose):
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.skip(f"no schema at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes(compose):
    """The validation above is not vacuous: a misspelt key or a wrong type is refused."""
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.skip(f"no schema at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid(compose)
    bad = json.loads(json.dumps(compose))
    bad["services"]["api"]["dependson"] = ["redis"]
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(compose))
    del bad["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"]
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(compose))
    bad["services"]["redis"]["healthcheck"]["interval"] = 5     # a duration is a string ("5s")
    assert not validator.is_valid(bad)


def test_services(compose):
    assert set(compose["services"]) == {"redis", "api", "worker-gpu", "worker-cpu"}
    assert set(compose["volumes"]) >= {"data", "redis-data"}


def test_redis_persists_and_reports_health(compose):
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:[\w.-]+", redis["image"])            # the official image, a pinned tag
    cmd = command_of(redis)
    assert cmd[0] == "redis-server" and cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]                     # a named volume
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_fita_services_share_redis_and_the_data_volume(compose, name):
    service = compose["services"][name]
    env = env_of(service)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["FITA_DATA_DIR"] == "/data"
    assert "data:/data" in service["volumes"]
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert service["build"]["context"] == "." and (ROOT / service["build"].get("dockerfile", "Dockerfile")).is_file()


def test_api_publishes_its_port(compose):
    api = compose["services"]["api"]
    assert "8000:8000" in [str(p) for p in api["ports"]]
    assert env_of(api)["FITA_HOST"] == "0.0.0.0"        # reachable from outside the container
    assert "healthcheck" not in api or not api["healthcheck"].get("disable")   # the image's /healthz check


def test_gpu_worker_reserves_a_gpu_and_builds_on_cuda(compose):
    worker = compose["services"]["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    args = worker["build"]["args"]
    base = args["BASE_IMAGE"]
    assert base.startswith("nvidia/cuda:12.") and "runtime" in base
    # the Dockerfile installs Python from the base's apt: Ubuntu 24.04 has 3.12; 22.04's 3.10 is too old
    assert re.search(r"ubuntu2[4-9]\.\d\d$", base), base
    assert "cuda" in args["EXTRAS"].split(",") and "dev" not in args["EXTRAS"].split(",")
    assert worker["image"] != compose["services"]["worker-cpu"]["image"]
    assert worker["healthcheck"]["disable"] is True


def test_cpu_worker_and_api_use_the_cpu_image(compose):
    api, cpu = compose["services"]["api"], compose["services"]["worker-cpu"]
    assert api["image"] == cpu["image"]
    assert not (api["build"].get("args") or {}).get("BASE_IMAGE") and not (cpu["build"].get("args") or {}).get("BASE_IMAGE")
    assert "deploy" not in cpu
    assert cpu["healthcheck"]["disable"] is True


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_service_command_is_the_fita_console_script(compose, name):
    cmd = command_of(compose["services"][name])
    assert cmd == COMMANDS[name]
    assert cmd[0] == "fita"
    if name.startswith("worker"):
        queues = cmd[cmd.index("--queues") + 1].split(",")
        assert set(queues) <= {"gpu", "cpu"}
        device = cmd[cmd.index("--device") + 1]
        assert ("gpu" in queues) == device.startswith("cuda")


def project_scripts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("scripts", {})


def test_fita_console_script_is_declared():
    """The commands above run `fita`: pyproject.toml must declare it under [project.scripts], pointing
    at a module of the package."""
    scripts = project_scripts()
    assert "fita" in scripts
    module = scripts["fita"].split(":", 1)[0]
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file() or \
        (ROOT / module.replace(".", "/") / "__init__.py").is_file()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_service_command_is_one_the_cli_accepts(compose, name):
    """Each service's command parses with the real `fita` CLI and picks the function that runs that part."""
    from fita.cli import cmd_api, cmd_worker, parser
    args = parser().parse_args(command_of(compose["services"][name])[1:])
    assert args.func is (cmd_api if name == "api" else cmd_worker)


# ---- Dockerfile --------------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, continuation lines joined."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def test_dockerfile_base_is_a_build_argument():
    steps = dockerfile()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    froms = instructions("FROM")
    assert froms == ["${BASE_IMAGE}"]
    args = {a.split("=", 1)[0] for a in instructions("ARG")}
    assert {"BASE_IMAGE", "EXTRAS"} <= args


def test_compose_build_args_are_declared_in_the_dockerfile(compose):
    declared = {a.split("=", 1)[0] for a in instructions("ARG")}
    for name, service in compose["services"].items():
        for arg in (service.get("build") or {}).get("args", {}) or {}:
            assert arg in declared, f"{name} passes build arg {arg} that the Dockerfile does not declare"


def test_dockerfile_installs_the_package_without_dev_extras():
    runs = " ".join(instructions("RUN"))
    assert "pip install" in runs
    assert "[dev" not in runs and ",dev" not in runs and "pytest" not in runs and "torch" not in runs
    assert re.search(r"pip install[^;]*\.\[\$\{?EXTRAS\}?\]", runs)    # pyproject's extras, cuda for GPU


def test_dockerfile_builds_the_engine_kernels():
    """setup.py builds the engine's C parts optionally; the image must have them, so its build checks."""
    runs = " ".join(instructions("RUN"))
    assert runs.index("install -y --no-install-recommends gcc") < runs.index("pip install -e")
    assert "n.ready" in runs and "import engine._cblas" in runs


def test_dockerfile_runs_as_a_non_root_user():
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0", "0:0")
    steps = dockerfile()
    last_user = max(i for i, (w, _) in enumerate(steps) if w == "USER")
    assert all(w != "RUN" for w, _ in steps[last_user:]), "nothing should run as root after USER"


def test_dockerfile_environment_port_and_command():
    env = " ".join(instructions("ENV"))
    assert re.search(r"\bFITA_DATA_DIR=/data\b", env)
    assert re.search(r"\bFITA_HOST=0\.0\.0\.0\b", env)
    assert instructions("EXPOSE") == ["8000"]
    cmd = json.loads(instructions("CMD")[-1])
    assert cmd == COMMANDS["api"]
    assert not instructions("ENTRYPOINT")    # compose's commands name `fita` themselves


def test_dockerfile_healthcheck_hits_healthz_with_python():
    (check,) = instructions("HEALTHCHECK")
    assert " CMD " in f" {check} "
    probe = check.split(" CMD ", 1)[1]
    assert probe.startswith("python -c") and "urllib.request" in probe and "/healthz" in probe
    assert "curl" not in probe and "wget" not in probe
    code = shlex.split(probe)[2]
    compile(code, "<healthcheck>", "exec")    # the probe is valid Python


def test_dockerignore_keeps_the_context_small():
    lines = [l.strip() for l in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
             if l.strip() and not l.startswith("#")]
    assert lines[0] == "*"                       # an allow-list
    allowed = {l[1:] for l in lines if l.startswith("!")}
    assert {"pyproject.toml", "setup.py", "engine", "workers", "api", "data", "configs"} <= allowed
    assert not allowed & {".venv", ".git", "tests", ".fita"}
    # every package pyproject.toml installs is in the image (the `fita` console script lives in fita/)
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= allowed
