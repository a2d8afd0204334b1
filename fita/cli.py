"""The ``fita`` command: ``fita up`` (the whole service), ``fita api``, ``fita worker``, ``fita keys create``;
and for people using a running service (through fita.client): ``submit``, ``validate``, ``jobs``,
``status``, ``logs``, ``metrics``, ``cancel``, ``download``, ``datasets``.

Every part reads the same environment (workers/settings.py); options override it for one process.
The client commands read FITA_SERVER and FITA_API_KEY (or --server, --api-key), print aligned text
for people or, with --json, JSON for scripts; an error from the server is one line on stderr and
exit status 1.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path

from workers.settings import Settings

from . import display
from .client import Client, FitaError, Job


def _logging(level: str = "INFO") -> None:
    from workers.logs import setup_logging
    setup_logging(level)


def cmd_up(args) -> int:
    from .supervisor import Supervisor
    settings = Settings.from_env()
    return Supervisor(settings, workers=args.workers, device=args.device, queues=args.queues).run()


def cmd_api(args) -> int:
    import uvicorn

    from api.app import create_app
    settings = Settings.from_env()
    uvicorn.run(create_app(settings), host=args.host or settings.host,
                port=settings.port if args.port is None else args.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=5, access_log=args.access_log,
                log_config=None)                 # uvicorn logs through our handler (JSON off a terminal)
    return 0


def cmd_worker(args) -> int:
    from workers.worker import run_worker
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else \
        (["cpu"] if args.device == "cpu" else ["gpu", "cpu"])
    run_worker(queues, args.device, name=args.name, burst=args.burst, log_level=args.log_level)
    return 0


def cmd_keys_create(args) -> int:
    from api.auth import create_key
    settings = Settings.from_env()
    key = create_key(settings, args.tenant, name=args.name)
    print(key)
    print(f"(a new key for tenant {args.tenant!r}; only its hash is kept, in {settings.api_keys_file}: "
          "store it now)", file=sys.stderr)
    return 0


# ---- the client commands -------------------------------------------------------------------------

def _client(args) -> Client:
    return Client(args.server, args.api_key)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2))


def cmd_submit(args) -> int:
    with _client(args) as client:
        job = client.submit(Path(args.spec), idempotency_key=args.idempotency_key)
        if not args.wait:
            _print_json(job.to_dict()) if args.json else print(job.id)
            return 0
        if not args.json:
            print(job.id, flush=True)
        try:
            job.wait(progress=not args.json)
        except KeyboardInterrupt:
            print(f"\nstopped waiting; the job goes on (fita status {job.id}, fita cancel {job.id})",
                  file=sys.stderr)
            return 130
    _print_json(job.to_dict()) if args.json else print(_summary(job))
    return 0 if job.status == "succeeded" else 1


def _summary(job: Job) -> str:
    took = display.duration((job.finished_at or time.time()) - (job.started_at or job.created_at))
    p = job.progress or {}
    lines = [f"{job.id} {job.status} in {took} (step {p.get('step') or 0} of {p.get('total_steps') or '?'})"]
    if job.error:
        lines.append(f"  error: {job.error['message']} ({job.error['code']})")
    result = job.result or {}
    if result.get("metrics"):
        lines.append(f"  final: {_metrics_text(result['metrics'])}")
    if (result.get("best") or {}).get("metrics"):
        best = result["best"]
        lines.append(f"  best:  epoch {best['epoch']} (step {best['step']}): {_metrics_text(best['metrics'])}")
    if job.status == "succeeded":
        lines.append(f"  weights: fita download {job.id} -o model.safetensors")
    return "\n".join(lines)


def _metrics_text(metrics: dict) -> str:
    return "  ".join(f"{k} {display.number(v)}" for k, v in metrics.items())


def cmd_validate(args) -> int:
    """The server's dry build, run here (no server needed) unless --remote."""
    if args.remote:
        with _client(args) as client:
            result = client.validate(Path(args.spec))
    else:
        result = _validate_locally(Path(args.spec))
    _print_json(result) if args.json else print(_dry_run_text(result))
    return 0


def _validate_locally(path: Path) -> dict:
    from workers.build import dry_build
    from workers.datasets import DataSettings
    from workers.spec import SpecError, SpecLimits, parse_spec
    media_type = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
    limits = SpecLimits.from_settings(Settings.from_env())
    try:
        spec = parse_spec(path.read_bytes(), media_type, limits)
        return dry_build(spec, limits=limits, data_settings=DataSettings.from_env()).to_dict()
    except SpecError as e:    # printed as the server would answer it
        raise FitaError(e.http_status, e.code, e.message, e.param) from None


def _dry_run_text(r: dict) -> str:
    data, memory = r["dataset"], r["memory"]
    parts = ", ".join(f"{k.replace('_', ' ')} {display.size(v)}" for k, v in memory.items() if k != "total")
    classes = (f" (vocabulary of {data['vocab_size']})" if data.get("vocab_size") else
               f" ({data['n_classes']} classes)" if data.get("n_classes") else "")
    rows = [("parameters", f"{r['parameters']:,} ({r['trainable_parameters']:,} trainable)"),
            ("FLOPs per step", f"{r['flops_per_step']:,} ({r['forward_flops_per_sample']:,} forward per sample)"),
            ("memory per step", f"{display.size(memory['total'])} ({parts})"),
            ("output shape", str(r["output_shape"])),
            ("dataset", f"{data['name']}: {data['task']}{classes}, input {data['input_shape']}, "
                        f"{data.get('n_train')} train / {data.get('n_val')} validation samples"),
            ("steps", f"{r['steps_per_epoch']} per epoch, {r['total_steps']} in all")]
    lines = [f"{r['spec'].get('name') or 'the spec'} is valid", _fields(rows)]
    lines += [f"warning: {w}" for w in r.get("warnings") or []]
    return "\n".join(lines)


def _fields(rows) -> str:
    """Aligned "name  value" lines."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def cmd_jobs(args) -> int:
    with _client(args) as client:
        jobs = list(itertools.islice(client.jobs(status=args.status, limit=min(args.limit, 100)), args.limit))
    if args.json:
        _print_json([j.to_dict() for j in jobs])
        return 0
    now = time.time()
    rows = [(j.id, j.name or "-", j.status, _steps(j), display.number(display.latest_metric(j.latest_metrics, "train",
                                                                                             "loss")),
             display.number(display.validation_score(j.latest_metrics)[1]), display.age(j.created_at, now))
            for j in jobs]
    print(display.table(rows, ["ID", "NAME", "STATUS", "STEP", "LOSS", "VAL", "CREATED"]) if rows else "no jobs")
    return 0


def _steps(job: Job) -> str:
    p = job.progress or {}
    return f"{p.get('step') or 0}/{p['total_steps']}" if p.get("total_steps") else "-"




def cmd_status(args) -> int:
    with _client(args) as client:
        job = client.job(args.id)
    if args.json:
        _print_json(job.to_dict())
        return 0
    rows = [("name", job.name or "-"), ("status", job.status + (f" ({job.phase})" if job.phase else "")),
            ("progress", display.progress_text(job)), ("created", display.age(job.created_at))]
    for split in ("train", "validation"):
        if (job.latest_metrics or {}).get(split):
            rows.append((split, _metrics_text({k: v for k, v in job.latest_metrics[split].items()
                                               if k not in ("step", "epoch")})))
    if job.latest_checkpoint:
        rows.append(("checkpoint", f"step {job.latest_checkpoint['step']} (epoch {job.latest_checkpoint['epoch']})"))
    if job.error:
        rows.append(("error", f"{job.error['message']} ({job.error['code']})"))
    print(job.id)
    print(_fields(rows))
    return 0


def cmd_logs(args) -> int:
    with _client(args) as client:
        job = client.job(args.id)
        for event in job.events(follow=args.follow):
            print(json.dumps(event) if args.json else _event_text(event), flush=True)
    return 0


# in an event's data, what people need not read (the API's JSON has it all)
_EVENT_NOISE = {"job_id", "key", "sha256", "created_at"}


def _event_text(event: dict) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(event["time"]))
    return f"{when}  {event['type']:<11} {_flat_text(event['data'])}".rstrip()


def _flat_text(data: dict) -> str:
    """``key value`` pairs; a nested dict's pairs in line (a checkpoint's metrics, a failure's error)."""
    return "  ".join(_flat_text(v) if isinstance(v, dict) else
                     f"{k} {json.dumps(v) if isinstance(v, list) else display.number(v)}"
                     for k, v in data.items() if k not in _EVENT_NOISE)


def cmd_metrics(args) -> int:
    with _client(args) as client:
        curves = client.job(args.id).metrics()
    if args.json:
        _print_json(curves)
    elif args.plot:
        print(_plot(curves))
    else:
        print(_metrics_tables(curves, args.rows))
    return 0


def _metrics_tables(curves: dict, n_rows: int) -> str:
    out = []
    for split, columns in curves.items():
        names = list(columns)
        n = len(columns[names[0]]) if names else 0
        if not n:
            continue
        rows = [[display.number(columns[c][i]) for c in names] for i in range(max(n - n_rows, 0), n)]
        out.append(f"{split} (last {len(rows)} of {n})\n" + display.table(rows, names))
    return "\n\n".join(out) or "no metrics yet"


def _plot(curves: dict) -> str:
    """Sparklines: losses on a log scale (a loss curve is mostly its tail otherwise), accuracy linear."""
    series = [(split, name, curves[split].get(name) or []) for split, name in
              (("train", "loss"), ("validation", "loss"), ("validation", "accuracy"))]
    series = [(f"{split} {name}" + (" (log)" if name == "loss" else ""), name == "loss", values)
              for split, name, values in series if any(v is not None for v in values)]
    if not series:
        return "no metrics yet"
    width = max(len(label) for label, _, _ in series)
    lines = []
    for label, log, values in series:
        known = [v for v in values if v is not None]
        lines.append(f"{label:<{width}}  {display.sparkline(values, log=log)}  last {display.number(known[-1])}  "
                     f"min {display.number(min(known))}  max {display.number(max(known))}  ({len(values)} points)")
    return "\n".join(lines)


def cmd_cancel(args) -> int:
    with _client(args) as client:
        job = client.job(args.id).cancel()
    _print_json(job.to_dict()) if args.json else print(f"{job.id} {job.status}")
    return 0


def cmd_download(args) -> int:
    with _client(args) as client:
        path = client.job(args.id).download(args.output, which=args.which, checkpoint=args.checkpoint)
    n_bytes = path.stat().st_size
    _print_json({"path": str(path), "bytes": n_bytes}) if args.json else \
        print(f"{path} ({display.size(n_bytes)})")
    return 0


def cmd_datasets_list(args) -> int:
    with _client(args) as client:
        items = list(client.datasets(builtin=args.builtin))
    if args.json:
        _print_json(items)
    elif args.builtin:
        print(display.table([(d["id"], d["task"], d["info"].get("n_samples"), _shape(d["info"].get("input_shape")),
                              d["info"].get("description") or "") for d in items],
                            ["ID", "TASK", "SAMPLES", "INPUT", "DESCRIPTION"]))
    else:
        rows = [(d["id"], d.get("filename") or "-", d["task"], d["info"].get("n_samples"),
                 _shape(d["info"].get("input_shape")), d["info"].get("n_classes") or "-", display.size(d.get("bytes")),
                 display.age(d.get("created_at"))) for d in items]
        print(display.table(rows, ["ID", "FILE", "TASK", "SAMPLES", "INPUT", "CLASSES", "SIZE", "CREATED"])
              if rows else "no uploaded datasets (fita datasets list --builtin: the built-in ones)")
    return 0


def _shape(shape) -> str:
    return "x".join(map(str, shape)) if shape else "-"


def cmd_datasets_upload(args) -> int:
    with _client(args) as client:
        dataset = client.upload_dataset(args.file, target=args.target, task=args.task)
    if args.json:
        _print_json(dataset)
        return 0
    print(dataset["id"])
    print(f"(in a spec: data: {{dataset: upload:{dataset['id']}}})", file=sys.stderr)
    return 0


def cmd_datasets_show(args) -> int:
    with _client(args) as client:
        dataset = client.dataset(args.id)
    if args.json:
        _print_json(dataset)
        return 0
    info = dataset["info"]
    rows = [("task", dataset["task"]), ("samples", info.get("n_samples")), ("input", _shape(info.get("input_shape"))),
            ("target", _shape(info.get("target_shape")) if info.get("target_shape") else "one value per sample")]
    if info.get("classes"):
        rows.append(("classes", ", ".join(map(str, info["classes"]))))
    if info.get("feature_names"):
        rows.append(("features", ", ".join(info["feature_names"])))
    if not dataset.get("builtin"):
        rows += [("file", f"{dataset.get('filename')} ({display.size(dataset.get('bytes'))})"),
                 ("created", display.age(dataset.get("created_at")))]
    print(dataset["id"] + (f": {info['description']}" if info.get("description") else ""))
    print(_fields(rows))
    return 0


def cmd_datasets_delete(args) -> int:
    with _client(args) as client:
        result = client.delete_dataset(args.id)
    _print_json(result) if args.json else print(f"{result['id']} deleted")
    return 0


def _client_options(p: argparse.ArgumentParser, top_level: bool) -> None:
    """--server, --api-key and --json, before the command or after it (after it they must not reset
    what was given before: SUPPRESS leaves the top level's value alone)."""
    default = (lambda value: value) if top_level else (lambda value: argparse.SUPPRESS)
    p.add_argument("--server", default=default(None), help="the API's URL (default: FITA_SERVER, "
                   "http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=default(None), help="default: FITA_API_KEY, else "
                   "$FITA_DATA_DIR/local.key (written by fita up)")
    p.add_argument("--json", action="store_true", default=default(False), help="print JSON for scripts")


def _add_client_commands(sub) -> None:
    def command(name, func, help, parent=sub):
        c = parent.add_parser(name, help=help, description=help)
        _client_options(c, top_level=False)
        c.set_defaults(func=func, client_command=True)
        return c

    submit = command("submit", cmd_submit, "submit a job spec (YAML or JSON); prints the job's id")
    submit.add_argument("spec", help="the spec file, e.g. configs/digits-mlp.yaml")
    submit.add_argument("--wait", action="store_true", help="show its progress until it ends, then a summary; "
                        "exit status 1 when it failed or was cancelled")
    submit.add_argument("--idempotency-key", default=None, help="submitting again with the same key returns "
                        "the same job")

    validate = command("validate", cmd_validate, "check a spec with a dry build here, without a server: "
                       "parameters, FLOPs, memory, or what is wrong")
    validate.add_argument("spec")
    validate.add_argument("--remote", action="store_true", help="ask the server instead (a spec on an "
                          "uploaded dataset needs it)")

    jobs = command("jobs", cmd_jobs, "your jobs, newest first")
    jobs.add_argument("--status", default=None, choices=["queued", "running", "cancelling", "succeeded", "failed",
                                                         "cancelled", "paused"])
    jobs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    command("status", cmd_status, "one job: status, progress, latest metrics, error").add_argument("id")

    logs = command("logs", cmd_logs, "a job's events (--json: one JSON object per line)")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true", help="then new events live, until the job ends")

    metrics = command("metrics", cmd_metrics, "a job's loss curve: the last rows, or --plot")
    metrics.add_argument("id")
    metrics.add_argument("--plot", action="store_true", help="sparklines of the train and validation curves")
    metrics.add_argument("--rows", type=int, default=10, help="rows per table (default 10)")

    command("cancel", cmd_cancel, "cancel a job (a running one stops at its next step)").add_argument("id")

    download = command("download", cmd_download, "download a job's weights (.safetensors; PyTorch's keys)")
    download.add_argument("id")
    download.add_argument("--which", choices=["final", "best"], default="final", help="final (default) or the "
                          "epoch with the best validation loss")
    download.add_argument("--checkpoint", type=int, default=None, metavar="STEP", help="a checkpoint instead "
                          "(model, optimizer, scheduler and RNG state)")
    download.add_argument("-o", "--output", default=None, metavar="FILE", help="default: the server's file name")

    datasets = sub.add_parser("datasets", help="uploaded and built-in datasets")
    datasets_sub = datasets.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    listing = command("list", cmd_datasets_list, "your uploaded datasets", datasets_sub)
    listing.add_argument("--builtin", action="store_true", help="the built-in datasets instead")
    upload = command("upload", cmd_datasets_upload, "upload a .npz (arrays x, y) or a CSV; prints its id",
                     datasets_sub)
    upload.add_argument("file")
    upload.add_argument("--target", default=None, metavar="COL", help="CSV: the target column (default: the last)")
    upload.add_argument("--task", choices=["classification", "regression"], default=None)
    command("show", cmd_datasets_show, "one dataset: task, shapes, classes", datasets_sub).add_argument("id")
    command("delete", cmd_datasets_delete, "delete an uploaded dataset", datasets_sub).add_argument("id")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fita", description="Fita: training as a service. Settings come from "
                                "FITA_* variables and REDIS_URL (see workers/settings.py).")
    _client_options(p, top_level=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    log_level = {"default": "INFO", "choices": ["DEBUG", "INFO", "WARNING", "ERROR"], "type": str.upper}

    up = sub.add_parser("up", help="run everything in the foreground: embedded Redis (unless REDIS_URL), "
                        "the API and FITA_WORKERS workers; Ctrl-C stops all of it")
    up.add_argument("--workers", type=int, default=None, help="worker processes (default: FITA_WORKERS, 1)")
    up.add_argument("--device", default="cpu", help="the workers' device: cpu (default) or cuda:N")
    up.add_argument("--queues", default=None, help="the workers' queues (default: cpu; gpu,cpu on a GPU)")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="run the API server only (needs a Redis: REDIS_URL or a running `fita up`)")
    api.add_argument("--host", default=None, help="default: FITA_HOST, 127.0.0.1")
    api.add_argument("--port", type=int, default=None, help="default: FITA_PORT, 8000")
    api.add_argument("--log-level", **log_level)
    api.add_argument("--access-log", action="store_true", help="log every request")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run one RQ worker that trains jobs on one device")
    worker.add_argument("--queues", default=None, help="comma-separated, in priority order: gpu,cpu or cpu "
                        "(default: cpu for a CPU worker, gpu,cpu for a GPU one)")
    worker.add_argument("--device", default="cpu", help="cpu (default) or cuda:N; one worker per GPU")
    worker.add_argument("--name", default=None, help="the worker's name in RQ (default: from device, host, pid)")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.add_argument("--log-level", **log_level)
    worker.set_defaults(func=cmd_worker)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="create an API key for a tenant and print it (once)")
    create.add_argument("--tenant", default="default", help="the tenant the key belongs to (default: default)")
    create.add_argument("--name", default="", help="a note to recognise the key by")
    create.set_defaults(func=cmd_keys_create)
    _add_client_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # a client command's output is for people: no library's INFO lines (httpx logs every request)
    _logging("WARNING" if getattr(args, "client_command", False) else getattr(args, "log_level", "INFO"))
    try:
        return args.func(args) or 0
    except FitaError as e:                    # the server's answer, as one line
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:                      # a spec, dataset or output file of a client command
        if not getattr(args, "client_command", False):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if not getattr(args, "client_command", False):
            raise
        return 130
    except (ValueError, RuntimeError) as e:   # bad settings or options: say which, no traceback
        if os.environ.get("FITA_DEBUG"):
            raise
        print(f"fita {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
