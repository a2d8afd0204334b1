// A small SVG line chart: axes with round ticks, a linear or logarithmic y axis, a legend, and a
// crosshair with the nearest values under the pointer. `new LineChart(container, options)`, then
// `chart.update(series)` whenever the data grows; it redraws itself when its container is resized.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

export function niceTicks(lo, hi, n = 5) {
  if (!(isFinite(lo) && isFinite(hi))) return [0, 1];
  if (hi <= lo) { const d = Math.abs(lo) || 1; lo -= d / 2; hi += d / 2; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.floor(lo / step) * step; t < hi + step * 0.999; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  let ticks = [];
  for (const mults of [[1], [1, 2, 5], [1, 1.5, 2, 3, 5, 7]]) {
    ticks = [];
    for (let e = a; e <= b; e++) for (const m of mults) { const t = m * 10 ** e; if (t >= lo && t <= hi) ticks.push(+t.toPrecision(12)); }
    if (ticks.length >= 3) break;
  }
  return ticks;
}

export function fmt(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 100000 || a < 0.001) return v.toExponential(1).replace("e+", "e");
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return (+v.toPrecision(4)).toString();
}

// min and max of each bucket, in order: what a line of that many pixels can show anyway
function thin(points, max) {
  if (points.length <= max) return points;
  const size = Math.ceil(points.length / (max / 2));
  const out = [];
  for (let i = 0; i < points.length; i += size) {
    let lo = points[i], hi = points[i];
    for (const p of points.slice(i, i + size)) { if (p[1] < lo[1]) lo = p; if (p[1] > hi[1]) hi = p; }
    if (lo === hi) out.push(lo); else out.push(...(lo[0] <= hi[0] ? [lo, hi] : [hi, lo]));
  }
  return out;
}

export class LineChart {
  constructor(container, { yLabel = "", xLabel = "step", log = false, height = 300, yMin = null, yMax = null,
                           format = fmt } = {}) {
    Object.assign(this, { container, yLabel, xLabel, log, height, yMin, yMax, format });
    this.series = [];
    this.svg = el("svg", { class: "chart", role: "img" }, container);
    this.tip = Object.assign(document.createElement("div"), { className: "chart-tip" });
    this.tip.hidden = true;
    container.append(this.tip);
    this.svg.addEventListener("pointermove", (e) => this.hover(e));
    this.svg.addEventListener("pointerleave", () => this.hover(null));
    new ResizeObserver(() => this.draw()).observe(container);
  }

  setLog(log) { this.log = log; this.draw(); }

  update(series) { this.series = series; this.draw(); }

  draw() {
    const width = Math.max(this.container.clientWidth, 280), height = this.height;
    const m = { left: 58, right: 16, top: 16, bottom: 38 };
    const pw = width - m.left - m.right, ph = height - m.top - m.bottom;
    const svg = this.svg;
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    this.frame = null;

    const visible = this.series.filter((s) => s.points.length);
    const all = visible.flatMap((s) => s.points).filter((p) => isFinite(p[1]) && (!this.log || p[1] > 0));
    if (!all.length) {
      el("rect", { x: m.left, y: m.top, width: pw, height: ph, class: "plot-empty", rx: 6 }, svg);
      el("text", { x: m.left + pw / 2, y: m.top + ph / 2, class: "empty-label", "text-anchor": "middle" }, svg)
        .textContent = "waiting for the first steps…";
      return;
    }
    let xHi = 1, yLo = Infinity, yHi = -Infinity;       // (a loop: a long job has too many points to spread)
    for (const [x, y] of all) { if (x > xHi) xHi = x; if (y < yLo) yLo = y; if (y > yHi) yHi = y; }
    if (this.yMin !== null) yLo = Math.min(yLo, this.yMin);
    if (this.yMax !== null) yHi = Math.max(yHi, this.yMax);
    let yt, tu;
    if (this.log) {
      yLo /= 1.12; yHi *= 1.12;
      yt = logTicks(yLo, yHi);
      tu = Math.log10;
    } else {
      if (yLo >= 0 && yLo < 0.35 * yHi) yLo = 0;
      yt = niceTicks(yLo, yHi);
      yLo = yt[0]; yHi = yt[yt.length - 1];
      tu = (v) => v;
    }
    const xt = niceTicks(0, xHi, Math.max(2, Math.round(pw / 110))).filter((t) => t <= xHi * 1.0001);
    const uLo = tu(yLo), uHi = tu(yHi);
    const sx = (x) => m.left + (x / xHi) * pw;
    const sy = (y) => m.top + ph - ((tu(y) - uLo) / (uHi - uLo || 1)) * ph;
    this.frame = { m, pw, ph, sx, sy, xHi, width };

    const grid = el("g", { class: "grid" }, svg);
    for (const t of yt) {
      el("line", { x1: m.left, x2: m.left + pw, y1: sy(t), y2: sy(t) }, grid);
      el("text", { x: m.left - 8, y: sy(t) + 4, "text-anchor": "end", class: "tick" }, grid).textContent = fmt(t);
    }
    for (const t of xt) {
      el("line", { x1: sx(t), x2: sx(t), y1: m.top + ph, y2: m.top + ph + 5, class: "axis" }, grid);
      el("text", { x: sx(t), y: m.top + ph + 19, "text-anchor": "middle", class: "tick" }, grid).textContent = fmt(t);
    }
    el("line", { x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph, class: "axis" }, grid);
    el("text", { x: m.left + pw / 2, y: height - 4, "text-anchor": "middle", class: "axis-label" }, svg)
      .textContent = this.xLabel;

    for (const s of visible) {
      const pts = thin(s.points.filter((p) => isFinite(p[1]) && (!this.log || p[1] > 0)), pw * 2);
      if (!pts.length) continue;
      const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
      el("path", { d, class: `series ${s.cls || ""}`, stroke: s.color, "stroke-width": s.width || 2,
                   "stroke-opacity": s.opacity ?? 1, fill: "none" }, svg);
      if ((s.dots && pts.length <= 80) || pts.length === 1) {      // (one point draws no line)
        const g = el("g", { class: `dots ${s.cls || ""}` }, svg);
        for (const p of pts) el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3.2, fill: s.color }, g);
      }
    }
    this.cursor = el("g", { class: "cursor", visibility: "hidden" }, svg);
    el("line", { y1: m.top, y2: m.top + ph }, this.cursor);
  }

  hover(e) {
    const f = this.frame;
    if (!e || !f) { this.tip.hidden = true; this.cursor?.setAttribute("visibility", "hidden"); return; }
    const box = this.svg.getBoundingClientRect();
    const px = ((e.clientX - box.left) / box.width) * f.width;
    const x = ((px - f.m.left) / f.pw) * f.xHi;
    if (x < 0 || x > f.xHi) { this.hover(null); return; }
    const rows = [];
    let at = null;
    for (const s of this.series) {
      if (!s.points.length || s.legend === false) continue;
      let best = s.points[0];
      for (const p of s.points) if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
      at = at ?? best[0];
      rows.push([s.color, s.name, this.format(best[1])]);
    }
    if (!rows.length) { this.hover(null); return; }
    const lx = f.sx(at);
    this.cursor.setAttribute("visibility", "visible");
    this.cursor.firstChild.setAttribute("x1", lx);
    this.cursor.firstChild.setAttribute("x2", lx);
    this.tip.replaceChildren();
    const head = document.createElement("div");
    head.className = "tip-head";
    head.textContent = `${this.xLabel} ${fmt(at)}`;
    this.tip.append(head);
    for (const [color, name, value] of rows) {
      const row = document.createElement("div");
      const sw = Object.assign(document.createElement("span"), { className: "swatch" });
      sw.style.background = color;
      const label = document.createElement("span");
      label.textContent = `${name} `;
      const b = document.createElement("b");
      b.textContent = value;
      row.append(sw, label, b);
      this.tip.append(row);
    }
    this.tip.hidden = false;
    const left = (lx / f.width) * box.width;
    this.tip.style.left = `${Math.min(left + 12, box.width - this.tip.offsetWidth - 4)}px`;
    this.tip.style.top = `${f.m.top + 4}px`;
  }
}
