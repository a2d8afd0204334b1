"""Logging for every Fita process: human lines on a terminal, one JSON object per line otherwise (for log
collectors), with the job id on every line logged while a job is being handled.

``job_context(job_id)`` sets the id for the current context (the work process around a job; a request
handler); ``setup_logging(level)`` installs the handler on the root logger once per process.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time

__all__ = ["setup_logging", "job_context", "JsonFormatter"]

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("fita_job_id", default=None)


@contextlib.contextmanager
def job_context(job_id: str):
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class _JobId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                "process": record.process}
        if getattr(record, "job_id", None):
            line["job_id"] = record.job_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


class _Human(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        job = getattr(record, "job_id", None)
        return text.replace(": ", f": [{job}] ", 1) if job else text


def setup_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    """JSON lines unless stderr is a terminal (or as ``json_lines`` says)."""
    json_lines = not sys.stderr.isatty() if json_lines is None else json_lines
    handler = logging.StreamHandler()
    handler.addFilter(_JobId())
    handler.setFormatter(JsonFormatter() if json_lines else
                         _Human("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
