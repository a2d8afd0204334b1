"""The ``fita`` command: ``fita up`` (the whole service), ``fita api``, ``fita worker``, ``fita keys create``.

Every part reads the same environment (workers/settings.py); options override it for one process.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from workers.settings import Settings


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


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
                timeout_graceful_shutdown=5, access_log=args.access_log)
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fita", description="Fita: training as a service. Settings come from "
                                "FITA_* variables and REDIS_URL (see workers/settings.py).")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _logging(getattr(args, "log_level", "INFO"))
    try:
        return args.func(args) or 0
    except (ValueError, RuntimeError) as e:   # bad settings or options: say which, no traceback
        if os.environ.get("FITA_DEBUG"):
            raise
        print(f"fita {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
