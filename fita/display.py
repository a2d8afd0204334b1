"""What the client and the CLI show people: aligned tables, sparklines, durations, sizes and the live
one-line progress of a training job. Plain text; nothing here talks to the server."""
from __future__ import annotations

import math
import shutil
import time
from typing import IO, Any, Sequence

BLOCKS = "▁▂▃▄▅▆▇█"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Columns padded to their widest cell; columns of numbers right-aligned, others left-aligned."""
    body = [["-" if v is None else str(v) for v in row] for row in rows]
    cells = [[str(h) for h in headers]] + body
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [bool(body) and all(_is_number(row[i]) for row in body) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    if text == "-":   # missing
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def number(value: Any, digits: int = 4) -> str:
    """A metric as people read it: 4 significant digits, '-' when missing, 'nan' when not finite."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def size(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "-"
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def age(timestamp: float | None, now: float | None = None) -> str:
    """'3:05 ago' style: how long since a server timestamp (seconds since the epoch)."""
    if timestamp is None:
        return "-"
    return duration((now or time.time()) - timestamp) + " ago"


def sparkline(values: Sequence[float | None], width: int = 60, log: bool = False) -> str:
    """One line of block characters, lowest ▁ to highest █, at most ``width`` wide (longer series are
    averaged in equal buckets); a missing or non-finite value (or, on a ``log`` scale, one <= 0) is a
    space."""
    def usable(v):
        return v is not None and math.isfinite(v) and (v > 0 or not log)
    values = _buckets([(math.log10(v) if log else v) if usable(v) else None for v in values], width)
    finite = [v for v in values if v is not None]
    if not finite:
        return " " * len(values)
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    top = len(BLOCKS) - 1
    return "".join(" " if v is None else BLOCKS[round((v - low) / span * top)] for v in values)


def _buckets(values: list[float | None], width: int) -> list[float | None]:
    if len(values) <= width:
        return values
    out = []
    for i in range(width):
        chunk = [v for v in values[i * len(values) // width:(i + 1) * len(values) // width] if v is not None]
        out.append(sum(chunk) / len(chunk) if chunk else None)
    return out


def latest_metric(latest_metrics: dict | None, split: str, name: str) -> Any:
    """One value of a job's ``latest_metrics`` ({train: {...}, validation: {...}}, either may be null)."""
    return ((latest_metrics or {}).get(split) or {}).get(name)


def validation_score(latest_metrics: dict | None) -> tuple[str | None, Any]:
    """The validation metric people watch: ("val_acc", accuracy) for a classifier, else ("val_loss",
    loss); (None, None) before the first validation."""
    accuracy = latest_metric(latest_metrics, "validation", "accuracy")
    if accuracy is not None:
        return "val_acc", accuracy
    loss = latest_metric(latest_metrics, "validation", "loss")
    return ("val_loss", loss) if loss is not None else (None, None)


def progress_text(job) -> str:
    """One line about a job's training: epoch, a bar of steps, loss, the validation metric, speed, ETA."""
    p = job.progress or {}
    step, total = p.get("step") or 0, p.get("total_steps")
    epochs = ((job.spec or {}).get("training") or {}).get("epochs")
    parts = []
    if p.get("epoch") is not None:
        parts.append(f"epoch {min(p['epoch'] + 1, epochs or p['epoch'] + 1)}/{epochs or '?'}")
    if total:
        filled = round(20 * step / total)
        parts.append(f"{'█' * filled}{'░' * (20 - filled)} {step}/{total}")
    loss = latest_metric(job.latest_metrics, "train", "loss")
    if loss is not None:
        parts.append(f"loss {number(loss)}")
    name, value = validation_score(job.latest_metrics)
    if name:
        parts.append(f"{name} {number(value)}")
    if p.get("samples_per_s"):
        parts.append(f"{p['samples_per_s']:.0f} samples/s")
    if job.status == "running" and p.get("eta_s") is not None:
        parts.append(f"ETA {duration(p['eta_s'])}")
    return "  ".join(parts)


class ProgressLine:
    """A live progress line on ``stream``: redrawn in place on a terminal (cut to its width, or the
    redraw would wrap); elsewhere (a log file, a pipe) a new line when the status changes, or the epoch
    does ``every_s`` after the last line, so logs stay short."""

    def __init__(self, stream: IO[str], every_s: float = 5.0):
        self.stream, self.every_s = stream, every_s
        self.live = stream.isatty()
        self.width = 0
        self.last: tuple | None = None
        self.last_time = 0.0

    def update(self, job) -> None:
        text = f"{job.status:<10} {progress_text(job)}".rstrip()
        if self.live:
            text = text[:shutil.get_terminal_size().columns - 1]
            self.stream.write("\r" + text.ljust(self.width))
            self.width = len(text)
        elif self._worth_a_line(job):
            self.stream.write(text + "\n")
        self.stream.flush()

    def _worth_a_line(self, job) -> bool:
        now, key = time.monotonic(), (job.status, (job.progress or {}).get("epoch"))
        due = self.last is None or key[0] != self.last[0] or (key != self.last and now - self.last_time >= self.every_s)
        if due:
            self.last, self.last_time = key, now
        return due

    def close(self) -> None:
        if self.live and self.width:
            self.stream.write("\n")
            self.stream.flush()
