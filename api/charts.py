"""The loss curve as a picture (``GET /v1/jobs/{id}/metrics.svg`` and ``.png``), drawn by the server.

One layout, two back-ends: ``loss_chart`` lays the figure out once as a short list of primitives (lines,
polylines, circles, text) in pixel coordinates; ``to_svg`` writes them as SVG by hand and ``to_png``
rasterises the same list with Pillow (drawn at 3x and downsampled, for smooth lines). Pillow is a
self-contained wheel that brings its own font, so the PNG needs no system library (cairo) and no
system fonts; see docs/service.md, "The loss curve as a picture".
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

TRAIN, TRAIN_RAW, VALIDATION = "#2563eb", "#bfd3fb", "#ea580c"
INK, MUTED, GRID, AXIS = "#111827", "#6b7280", "#e5e7eb", "#9ca3af"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


@dataclass
class Figure:
    width: int
    height: int
    items: list[tuple] = field(default_factory=list)   # ("line"|"poly"|"circle"|"text"|"rect", ...)

    def line(self, x1, y1, x2, y2, color, width=1.0, dash=False):
        self.items.append(("line", [(x1, y1), (x2, y2)], color, width, dash))

    def poly(self, points, color, width=1.5, cls=""):
        if len(points) >= 2:
            self.items.append(("poly", points, color, width, cls))

    def circle(self, x, y, r, color):
        self.items.append(("circle", x, y, r, color))

    def rect(self, x, y, w, h, fill, stroke=None):
        self.items.append(("rect", x, y, w, h, fill, stroke))

    def text(self, x, y, s, size=12, color=INK, anchor="start", bold=False):
        self.items.append(("text", x, y, str(s), size, color, anchor, bold))


# ---- scales --------------------------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round numbers covering [lo, hi], about ``n`` of them (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        lo, hi = lo - (abs(lo) or 1) * 0.5, hi + (abs(hi) or 1) * 0.5
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2 and 5 times the powers of ten within [lo, hi] (only the powers when that makes enough)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mults in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10 ** e for e in range(a, b + 1) for m in mults if lo <= m * 10 ** e <= hi]
        if len(ticks) >= 3:
            return ticks
    return ticks


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 10000 or abs(v) < 0.001:
        return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{v:.4g}"


def _thin(xs: list, ys: list, max_points: int) -> list[tuple[float, float]]:
    """At most about ``max_points`` points: the min and max of each bucket, in order (the envelope a
    plotted line would show anyway)."""
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None and math.isfinite(y)]
    if len(pts) <= max_points:
        return pts
    size = math.ceil(len(pts) / (max_points / 2))
    out = []
    for i in range(0, len(pts), size):
        chunk = pts[i:i + size]
        lo, hi = min(chunk, key=lambda p: p[1]), max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}, key=lambda p: p[0]))
    return out


def _smooth(pts: list[tuple[float, float]], n_total: int) -> list[tuple[float, float]]:
    """An exponential moving average, debiased, with a window of about 2% of the curve."""
    if len(pts) < 20:
        return []
    beta = 1 - 1 / max(5.0, n_total / 50)
    avg, out = 0.0, []
    for k, (x, y) in enumerate(pts, 1):
        avg = beta * avg + (1 - beta) * y
        out.append((x, avg / (1 - beta ** k)))
    return out


# ---- the figure ----------------------------------------------------------------------------------
def loss_chart(metrics: dict, title: str, subtitle: str = "", width: int = 800, height: int = 450,
               yscale: str = "auto") -> Figure:
    """Train loss (per step) and validation loss (per epoch) against the step."""
    fig = Figure(width, height)
    fig.rect(0, 0, width, height, "#ffffff")
    left, right, top, bottom = 64, 24, 88, 52
    pw, ph = width - left - right, height - top - bottom
    fig.text(left, 28, title, size=17, bold=True)
    if subtitle:
        fig.text(left, 49, subtitle, size=12, color=MUTED)

    train, val = metrics.get("train") or {}, metrics.get("validation") or {}
    tr = _thin(train.get("step") or [], train.get("loss") or [], max(4 * pw, 200))
    va = [(x, y) for x, y in zip(val.get("step") or [], val.get("loss") or [])
          if x is not None and y is not None and math.isfinite(y)]
    pts = tr + va
    if not pts:
        fig.rect(left, top, pw, ph, "#f9fafb", GRID)
        fig.text(left + pw / 2, top + ph / 2 + 5, "no metrics yet", size=14, color=MUTED, anchor="middle")
        return fig

    x_lo, x_hi = 0.0, max(max(p[0] for p in pts), 1)
    ys = [p[1] for p in pts]
    y_lo, y_hi = min(ys), max(ys)
    smooth = _smooth(tr, len(tr))
    # auto: logarithmic when the trend (not the noise of single steps) spans more than a factor of 30
    trend = [p[1] for p in (smooth or tr) + va]
    log = yscale == "log" or (yscale == "auto" and min(trend) > 0 and max(trend) / min(trend) > 30)
    if log and y_lo <= 0:
        log = False
    if log:
        y_lo, y_hi = y_lo / 1.12, y_hi * 1.12
        yt = log_ticks(y_lo, y_hi)
        to_u = math.log10
    else:
        yt = nice_ticks(min(y_lo, 0.0) if y_lo >= 0 and y_lo < 0.35 * y_hi else y_lo, y_hi)
        to_u = float
        y_lo, y_hi = yt[0], yt[-1]
    u_lo, u_hi = to_u(y_lo), to_u(y_hi)
    xt = [t for t in nice_ticks(x_lo, x_hi, 6) if t <= x_hi * 1.0001]
    x_hi = max(x_hi, xt[-1]) if xt else x_hi

    def sx(x):
        return left + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y):
        return top + ph - (to_u(y) - u_lo) / ((u_hi - u_lo) or 1) * ph

    for t in yt:
        y = sy(t)
        fig.line(left, y, left + pw, y, GRID)
        fig.text(left - 8, y + 4, fmt(t), size=11, color=MUTED, anchor="end")
    for t in xt:
        x = sx(t)
        fig.line(x, top + ph, x, top + ph + 5, AXIS)
        fig.text(x, top + ph + 19, fmt(t) if t < 10000 else f"{t:,.0f}", size=11, color=MUTED, anchor="middle")
    fig.line(left, top + ph, left + pw, top + ph, AXIS)
    fig.line(left, top, left, top + ph, AXIS)
    fig.text(left + pw / 2, height - 12, "step", size=12, color=MUTED, anchor="middle")
    fig.text(left - 40, top - 14, "loss" + (" (log)" if log else ""), size=12, color=MUTED, anchor="start")

    fig.poly([(sx(x), sy(y)) for x, y in tr], TRAIN_RAW if smooth else TRAIN, 1.2 if smooth else 1.8, "train-raw")
    fig.poly([(sx(x), sy(y)) for x, y in smooth], TRAIN, 2.0, "train")
    fig.poly([(sx(x), sy(y)) for x, y in va], VALIDATION, 2.0, "validation")
    for x, y in va if len(va) <= 60 else []:
        fig.circle(sx(x), sy(y), 3.2, VALIDATION)
    if len(tr) == 1:                                   # one point draws no line
        fig.circle(sx(tr[0][0]), sy(tr[0][1]), 3.2, TRAIN)

    # the legend, top right inside the plot
    entries = [(TRAIN, "train loss"), *([(VALIDATION, "validation loss")] if va else [])]
    lw = 140 if va else 100
    lx, ly = left + pw - lw - 8, top + 8
    fig.rect(lx, ly, lw, 10 + 20 * len(entries), "#ffffff", GRID)
    for i, (color, label) in enumerate(entries):
        y = ly + 15 + 20 * i
        fig.line(lx + 10, y, lx + 32, y, color, 2.5)
        fig.text(lx + 40, y + 4, label, size=12, color=INK)
    return fig


# ---- back-ends -----------------------------------------------------------------------------------
def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def to_svg(fig: Figure) -> str:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{fig.width}" height="{fig.height}" '
           f'viewBox="0 0 {fig.width} {fig.height}" font-family="{escape(FONT, {chr(34): "&quot;"})}">']
    for item in fig.items:
        kind = item[0]
        if kind == "rect":
            _, x, y, w, h, fill, stroke = item
            s = f' stroke="{stroke}"' if stroke else ""
            out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" fill="{fill}"{s} rx="'
                       f'{4 if stroke else 0}"/>')
        elif kind == "line":
            _, ((x1, y1), (x2, y2)), color, width, dash = item
            d = ' stroke-dasharray="4 3"' if dash else ""
            out.append(f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{color}" '
                       f'stroke-width="{width}"{d}/>')
        elif kind == "poly":
            _, pts, color, width, cls = item
            d = "M" + " L".join(f"{_n(x)},{_n(y)}" for x, y in pts)
            out.append(f'<path class="{cls}" d="{d}" fill="none" stroke="{color}" stroke-width="{width}" '
                       'stroke-linejoin="round" stroke-linecap="round"/>')
        elif kind == "circle":
            _, x, y, r, color = item
            out.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{r}" fill="{color}" stroke="#ffffff" '
                       'stroke-width="1"/>')
        elif kind == "text":
            _, x, y, s, size, color, anchor, bold = item
            w = ' font-weight="600"' if bold else ""
            out.append(f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" fill="{color}" text-anchor="{anchor}"'
                       f'{w}>{escape(s)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def to_png(fig: Figure, scale: float = 1.0) -> bytes:
    """The figure rasterised with Pillow: drawn at 3x the output size, then downsampled (antialiasing)."""
    from PIL import Image, ImageDraw, ImageFont      # imported here: only this route needs Pillow

    ss = 3 * scale
    img = Image.new("RGB", (round(fig.width * ss), round(fig.height * ss)), "#ffffff")
    draw = ImageDraw.Draw(img)
    fonts: dict = {}

    def font(size):
        if size not in fonts:
            fonts[size] = ImageFont.load_default(size * ss)
        return fonts[size]

    def p(x, y):
        return (x * ss, y * ss)

    for item in fig.items:
        kind = item[0]
        if kind == "rect":
            _, x, y, w, h, fill, stroke = item
            draw.rounded_rectangle([p(x, y), p(x + w, y + h)], radius=(4 if stroke else 0) * ss, fill=_rgb(fill),
                                   outline=_rgb(stroke) if stroke else None, width=max(1, round(ss)))
        elif kind in ("line", "poly"):
            pts, color, width = item[1], item[2], item[3]
            draw.line([p(x, y) for x, y in pts], fill=_rgb(color), width=max(1, round(width * ss)), joint="curve")
        elif kind == "circle":
            _, x, y, r, color = item
            draw.ellipse([p(x - r - 1, y - r - 1), p(x + r + 1, y + r + 1)], fill=(255, 255, 255))
            draw.ellipse([p(x - r, y - r), p(x + r, y + r)], fill=_rgb(color))
        elif kind == "text":
            _, x, y, s, size, color, anchor, bold = item
            a = {"start": "ls", "middle": "ms", "end": "rs"}[anchor]
            draw.text(p(x, y), s, fill=_rgb(color), font=font(size), anchor=a,
                      stroke_width=round(0.35 * ss) if bold else 0, stroke_fill=_rgb(color) if bold else None)
    out = img.resize((round(fig.width * scale), round(fig.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=True)
    return buf.getvalue()
