// The Fita dashboard: a job list and a page per job, on the REST API. Routes: #/ (the jobs) and
// #/jobs/<id> (one job); /jobs/<id> serves the same page. The API key is asked for once and kept in
// localStorage (or given as ?api_key= in the URL).
import * as api from "./api.js";
import { LineChart, fmt } from "./chart.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const CANCELLABLE = new Set(["queued", "running", "paused"]);
const PAUSABLE = new Set(["queued", "running"]);
const COLORS = { train: "#2563eb", trainRaw: "#93b4f5", validation: "#ea580c", accuracy: "#059669" };
const main = document.getElementById("main");
let view = null;                 // the view on screen; its stop() is called when the route changes

// ---- small DOM helpers ----------------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") Object.assign(node.style, v);      // (the CSP allows no inline style attributes)
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

// Put `nodes` in `parent`, keeping each child that would be drawn the same (moved if need be): a click
// that lands while the page refreshes itself must find the element it pressed still there (Chromium
// fires no click when the element under the pointer was replaced between mousedown and mouseup).
function patchChildren(parent, nodes) {
  const spare = [...parent.children];
  nodes.forEach((node, i) => {
    const same = spare.findIndex((old) => old.isEqualNode(node));
    if (same >= 0) node = spare.splice(same, 1)[0];
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
  for (const old of spare) old.remove();
}

function badge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status, text: status });
}

function ago(t) {
  const s = Date.now() / 1000 - t;
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t * 1000).toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function jobDuration(job) {
  if (!job.started_at) return null;
  return (job.finished_at || (TERMINAL.has(job.status) ? job.updated_at : Date.now() / 1000)) - job.started_at;
}

function pct(v) { return v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`; }

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

// the best validation result so far: {label, value} (accuracy for classifiers, else the loss)
function bestMetric(job) {
  const best = job.result?.best?.metrics;
  if (best?.val_accuracy !== undefined) return { label: "val acc", value: pct(best.val_accuracy) };
  if (best?.val_loss !== undefined) return { label: "val loss", value: fmt(best.val_loss) };
  const v = job.latest_metrics?.validation;
  if (v?.accuracy !== undefined && v?.accuracy !== null) return { label: "val acc", value: pct(v.accuracy) };
  if (v?.loss !== undefined && v?.loss !== null) return { label: "val loss", value: fmt(v.loss) };
  const t = job.latest_metrics?.train;
  if (t?.loss !== undefined && t?.loss !== null) return { label: "loss", value: fmt(t.loss) };
  return null;
}

function progressBar(job) {
  const p = job.progress || {};
  const frac = job.status === "succeeded" ? 1 : p.total_steps ? Math.min(1, (p.step || 0) / p.total_steps) : 0;
  const bar = h("div", { class: `progress status-${job.status}`, role: "progressbar", "aria-valuenow": Math.round(frac * 100),
                         "aria-valuemin": 0, "aria-valuemax": 100 }, h("div", { class: "fill" }));
  bar.firstChild.style.width = `${(frac * 100).toFixed(1)}%`;
  return bar;
}

function stepText(job) {
  const p = job.progress || {};
  const epochs = job.spec?.training?.epochs;
  if (p.step === null || p.step === undefined) return { queued: "waiting for a worker", running: "starting…" }[job.status] || "";
  // progress is written every second or so, the latest metrics more often
  const t = job.latest_metrics?.train || {};
  const step = Math.max(p.step, t.step || 0);
  const e = t.step > p.step && t.epoch !== undefined ? t.epoch : p.epoch;
  const epoch = e !== null && e !== undefined && epochs ? `epoch ${Math.min(e + 1, epochs)}/${epochs} · ` : "";
  return `${epoch}step ${fmt(step)}${p.total_steps ? `/${fmt(p.total_steps)}` : ""}`;
}

function errorBox(err) {
  return h("div", { class: "alert" }, h("b", { text: err.code ? `${err.code}: ` : "Error: " }), err.message || String(err));
}

// ---- the key -------------------------------------------------------------------------------------
function keyView(message) {
  const input = h("input", { type: "password", id: "api-key", placeholder: "API key", autocomplete: "off",
                             spellcheck: "false", required: true });
  const form = h("form", { class: "card key-card", onsubmit: (e) => {
    e.preventDefault();
    api.setKey(input.value);
    route();
  } },
  h("h1", { text: "Sign in to Fita" }),
  h("p", { class: "muted" }, "Paste your API key. ", h("code", { text: "make run" }), " prints the local one (also in ",
    h("code", { text: ".fita/local.key" }), "); ", h("code", { text: "fita keys create" }), " makes more. It is kept in this browser only."),
  message ? h("div", { class: "alert" }, message) : null,
  h("div", { class: "row" }, input, h("button", { class: "primary", type: "submit", text: "Continue" })));
  main.replaceChildren(form);
  input.focus();
  return { stop() {} };
}

function handleAuth(err) {
  if (err instanceof api.ApiError && err.status === 401) {
    api.setKey("");
    view?.stop();
    view = keyView(err.message);
    updateHeader();
    return true;
  }
  return false;
}

// ---- the job list --------------------------------------------------------------------------------
const MAX_PAGE = 100;            // the most GET /v1/jobs gives in one page

// Jobs per page: 100, or ?page_size=N in the address (/?page_size=N or #/?page_size=N), 1 to 100.
function pageSize() {
  const fromHash = new URLSearchParams(location.hash.split("?")[1] || "").get("page_size");
  const n = Number(fromHash || new URLSearchParams(location.search).get("page_size"));
  return Number.isInteger(n) && n >= 1 ? Math.min(n, MAX_PAGE) : MAX_PAGE;
}

function listPath(limit, after) {
  return `/v1/jobs?limit=${limit}${after ? `&after=${encodeURIComponent(after)}` : ""}`;
}

// Where a fresh list (newest first) ends so that it reaches down to `oldest`, the last row on screen:
// just past it, or (deleted meanwhile) past the last job newer than it. -1: not reached yet.
function endAt(jobs, oldest) {
  for (let i = 0; i < jobs.length; i++) {
    if (jobs[i].id === oldest.id) return i + 1;
    if (jobs[i].created_at < oldest.created_at) return i;
  }
  return -1;
}

function listView() {
  const size = pageSize();
  const body = h("tbody");
  const summary = h("span", { class: "muted" });
  const table = h("table", { class: "jobs" },
    h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Created", "Duration", "Best"].map((t) => h("th", { text: t })))),
    body);
  const empty = h("div", { class: "empty", hidden: true },
    h("p", { text: "No jobs yet." }),
    h("p", { class: "muted" }, "Submit one with ", h("code", { text: "fita submit configs/iris.yaml" }), " or ",
      h("code", { text: "POST /v1/jobs" }), "; it appears here."));
  const error = h("div");
  const more = h("button", { type: "button", id: "load-more", onclick: () => clickMore(), text: "Load more" });
  const moreError = h("div");
  const moreBar = h("div", { class: "load-more", hidden: true }, moreError, more);
  main.replaceChildren(h("section", { class: "page" },
    h("div", { class: "page-head" }, h("h1", { text: "Jobs" }), summary),
    error, h("div", { class: "card flush" }, table, empty, moreBar)));

  let jobs = [], hasMore = false, timer = null, stopped = false, loading = false;
  // a refresh and a "Load more" never overlap: the one that ended later would undo the other's rows
  // (a failed step is still reported as the page's error, and the queue goes on)
  let queue = Promise.resolve();
  const serial = (fn) => { const run = queue.then(fn); queue = run.catch(() => {}); return run; };

  function render() {
    // a row that changed is drawn anew: the keyboard's focus stays on the same job's link
    const focused = document.activeElement?.closest?.("tr.job-row")?.dataset.jobId;
    patchChildren(body, jobs.map(row));
    if (focused) body.querySelector(`tr[data-job-id="${CSS.escape(focused)}"] a`)?.focus();
    empty.hidden = jobs.length > 0;
    table.hidden = jobs.length === 0;
    moreBar.hidden = !hasMore;
    const active = jobs.filter((j) => !TERMINAL.has(j.status)).length;
    summary.textContent = `${jobs.length}${hasMore ? "+" : ""} job${jobs.length === 1 ? "" : "s"} · ${active} active · refreshed ${new Date().toLocaleTimeString()}`;
  }

  // The newest page, or after "Load more" every job down to the oldest row on screen (in as few
  // requests as the API's page limit allows), so a refresh keeps the pages loaded; jobs submitted
  // meanwhile are added on top rather than pushing rows off the bottom.
  async function fetchList() {
    const oldest = jobs.length > size ? jobs[jobs.length - 1] : null;
    const fresh = [];
    let left = true;
    while (left) {
      const want = oldest ? Math.max(size, jobs.length - fresh.length) : size - fresh.length;
      const page = await api.get(listPath(Math.min(MAX_PAGE, want), fresh.at(-1)?.id));
      fresh.push(...page.data);
      left = page.has_more && page.data.length > 0;
      const end = oldest ? endAt(fresh, oldest) : fresh.length >= size ? size : -1;
      if (end >= 0) return { data: fresh.slice(0, Math.max(end, Math.min(size, fresh.length))), hasMore: left || end < fresh.length };
    }
    return { data: fresh, hasMore: false };
  }

  async function refresh() {
    clearTimeout(timer);
    if (stopped) return;
    try {
      const list = await fetchList();
      if (stopped) return;
      error.replaceChildren();
      ({ data: jobs, hasMore } = list);
      render();
    } catch (err) {
      if (handleAuth(err)) return;
      error.replaceChildren(errorBox(err));
    }
    if (!stopped) timer = setTimeout(() => serial(refresh), 2000);
  }

  function clickMore() {
    if (loading) return;                                 // a double click loads one page
    loading = true;
    more.setAttribute("aria-disabled", "true");          // (not disabled: the keyboard's focus stays on it)
    more.textContent = "Loading…";
    moreError.replaceChildren();
    serial(loadMore);
  }

  // the page after the last row, by its cursor; appended
  async function loadMore() {
    try {
      if (stopped || !jobs.length) return;
      const page = await api.get(listPath(size, jobs[jobs.length - 1].id));
      if (stopped) return;
      const hadFocus = document.activeElement === more;
      jobs.push(...page.data);
      hasMore = page.has_more;
      render();
      // the button is gone at the end of the list: the keyboard's focus goes on to the first new job
      if (hadFocus && !hasMore && page.data.length) body.querySelector(`tr[data-job-id="${CSS.escape(page.data[0].id)}"] a`)?.focus();
    } catch (err) {
      if (handleAuth(err)) return;
      // e.g. invalid_cursor: the last row was deleted meanwhile (the next refresh shows the list without it)
      moreError.replaceChildren(errorBox(err));
    } finally {
      loading = false;
      more.removeAttribute("aria-disabled");
      more.textContent = "Load more";
    }
  }

  function row(job) {
    const best = bestMetric(job);
    const href = `#/jobs/${job.id}`;
    const open = () => { location.hash = href; };
    return h("tr", { class: "job-row", "data-job-id": job.id, onclick: (e) => { if (!e.target.closest("a")) open(); } },
      h("td", {}, h("a", { href, class: "job-name", text: job.name || job.id }), h("div", { class: "mono muted small", text: job.id })),
      h("td", {}, badge(job.status)),
      h("td", { class: "progress-cell" }, progressBar(job), h("div", { class: "muted small", text: stepText(job) })),
      h("td", { title: new Date(job.created_at * 1000).toLocaleString(), text: ago(job.created_at) }),
      h("td", { class: "num", text: duration(jobDuration(job)) }),
      h("td", { class: "num" }, best ? [h("span", { class: "muted small", text: `${best.label} ` }), h("b", { text: best.value })] : "–"));
  }

  serial(refresh);
  return { stop() { stopped = true; clearTimeout(timer); } };
}

// ---- one job -------------------------------------------------------------------------------------
function jobView(id) {
  const base = `/v1/jobs/${encodeURIComponent(id)}`;
  const abort = new AbortController();
  const s = { job: null, train: [], val: [], acc: [], lastTrain: -1, lastVal: -1, lastEventId: null,
              stopped: false, busy: false, again: false, timer: null, pending: new Set(),
              acting: false, pausing: false, actionError: null };

  // the page's parts, filled in as data comes
  const title = h("h1", { class: "job-title" });
  const idLine = h("div", { class: "mono muted small" });
  const actions = h("div", { class: "actions" });
  const alert = h("div");
  const progress = h("div", { class: "card progress-card" });
  const stats = h("div", { class: "stats" });
  const logToggle = h("input", { type: "checkbox", id: "log-scale" });
  const lossBox = h("div", { class: "chart-box", id: "loss-chart" });
  const accCard = h("div", { class: "card", hidden: true });
  const accBox = h("div", { class: "chart-box", id: "accuracy-chart" });
  const eventsList = h("ol", { class: "events", id: "events" });
  const ckptBody = h("tbody");
  const ckptEmpty = h("p", { class: "muted small", text: "No checkpoints yet." });
  const specPre = h("pre", { class: "spec", id: "spec" });
  const live = h("span", { class: "live", hidden: true }, h("span", { class: "dot" }), "live");

  const legend = (items) => h("div", { class: "legend" }, items.map(([color, label, cls]) =>
    h("span", { class: cls || "" }, h("span", { class: "swatch", style: { background: color } }), label)));

  main.replaceChildren(h("section", { class: "page" },
    h("a", { href: "#/", class: "back", text: "← All jobs" }),
    h("div", { class: "page-head job-head" }, h("div", {}, h("div", { class: "title-row" }, title, h("span", { id: "job-status" }), live), idLine), actions),
    alert, progress, stats,
    h("div", { class: "card" },
      h("div", { class: "card-head" }, h("h2", { text: "Loss" }),
        legend([[COLORS.train, "train loss"], [COLORS.validation, "validation loss"]]),
        h("label", { class: "toggle" }, logToggle, "log scale")),
      lossBox),
    accCard,
    h("div", { class: "columns" },
      h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", { text: "Events" })), eventsList),
      h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", { text: "Checkpoints" })),
        h("table", { class: "checkpoints", id: "checkpoints" },
          h("thead", {}, h("tr", {}, ["Step", "Epoch", "Metrics", "Size", ""].map((t) => h("th", { text: t })))), ckptBody),
        ckptEmpty)),
    h("details", { class: "card", open: true }, h("summary", {}, h("h2", { text: "Spec" })), specPre)));
  accCard.append(h("div", { class: "card-head" }, h("h2", { text: "Validation accuracy" }),
    legend([[COLORS.accuracy, "accuracy"]])), accBox);

  const lossChart = new LineChart(lossBox, { yLabel: "loss", height: 320 });
  const accChart = new LineChart(accBox, { yLabel: "accuracy", height: 220, yMax: 1, format: pct });
  logToggle.addEventListener("change", () => lossChart.setLog(logToggle.checked));

  function drawCharts() {
    const smooth = ema(s.train);
    lossChart.update([
      { name: "train loss", points: s.train, color: smooth.length ? COLORS.trainRaw : COLORS.train,
        width: smooth.length ? 1.2 : 2, opacity: smooth.length ? 0.8 : 1, cls: "train-raw", legend: !smooth.length },
      { name: "train loss (smoothed)", points: smooth, color: COLORS.train, width: 2, cls: "train" },
      { name: "validation loss", points: s.val, color: COLORS.validation, width: 2, dots: true, cls: "validation" },
    ]);
    lossBox.dataset.points = String(s.train.length);
    accCard.hidden = !s.acc.length;
    if (s.acc.length) accChart.update([{ name: "accuracy", points: s.acc, color: COLORS.accuracy, width: 2, dots: true, cls: "accuracy" }]);
  }

  function renderJob() {
    const job = s.job;
    document.title = `${job.name || job.id} · Fita`;
    title.textContent = job.name || job.id;
    document.getElementById("job-status")?.replaceChildren(badge(job.status));
    idLine.textContent = `${job.id} · ${job.queue || "–"} queue${job.worker ? ` · ${job.worker}` : ""}${job.restarts ? ` · ${job.restarts} restart(s)` : ""}`;
    live.hidden = TERMINAL.has(job.status);

    // data-slot: a button that changed is drawn anew; the keyboard's focus stays in its slot
    // (Pause, Pausing… and Resume share one; Pausing… is aria-disabled, not disabled, to keep it)
    const btns = [];
    if (job.status === "succeeded") {
      btns.push(h("button", { "data-slot": "weights", onclick: () => dl(`${base}/weights`, `${job.id}-final.safetensors`), text: "Download weights" }));
      btns.push(h("button", { "data-slot": "best", onclick: () => dl(`${base}/weights?which=best`, `${job.id}-best.safetensors`), text: "Best weights" }));
    }
    btns.push(h("button", { "data-slot": "svg", onclick: () => dl(`${base}/metrics.svg`, `${job.id}-loss.svg`), text: "Chart SVG" }));
    // a running job pauses at its next step (with a checkpoint): until then its status stays running
    if (job.status !== "running") s.pausing = false;
    if (s.pausing) btns.push(h("button", { "data-slot": "pause", "aria-disabled": "true", text: "Pausing…" }));
    else if (PAUSABLE.has(job.status)) btns.push(h("button", { "data-slot": "pause", id: "pause", onclick: () => control("pause"), text: "Pause" }));
    if (job.status === "paused") btns.push(h("button", { "data-slot": "pause", class: "primary", id: "resume", onclick: () => control("resume"), text: "Resume" }));
    if (CANCELLABLE.has(job.status)) btns.push(h("button", { "data-slot": "cancel", class: "danger", id: "cancel", onclick: cancel, text: "Cancel job" }));
    if (job.status === "cancelling") btns.push(h("button", { "data-slot": "cancel", class: "danger", "aria-disabled": "true", text: "Cancelling…" }));
    const slot = actions.contains(document.activeElement) ? document.activeElement.dataset.slot : null;
    patchChildren(actions, btns);
    if (slot) actions.querySelector(`[data-slot="${slot}"]`)?.focus();

    // the job's own error, and what the API said to the last click (kept until the next one)
    alert.replaceChildren(job.error ? errorBox(job.error) : "", s.actionError ? errorBox(s.actionError) : "");
    const p = job.progress || {};
    progress.replaceChildren(
      h("div", { class: "progress-head" }, h("b", { text: stepText(job) || job.status }),
        h("span", { class: "muted" }, job.phase && !TERMINAL.has(job.status) ? `${job.phase.replace("_", " ")} · ` : "",
          p.samples_per_s ? `${fmt(Math.round(p.samples_per_s))} samples/s · ` : "",
          !TERMINAL.has(job.status) && job.status !== "paused" && p.eta_s !== null && p.eta_s !== undefined ? `ETA ${duration(p.eta_s)} · ` : "",
          `ran ${duration(jobDuration(job))}`)),
      progressBar(job));

    const t = job.latest_metrics?.train || {}, v = job.latest_metrics?.validation || {};
    const best = job.result?.best;
    const cards = [["Train loss", fmt(t.loss), t.step !== undefined ? `step ${fmt(t.step)}` : ""],
      ["Validation loss", fmt(v.loss), v.epoch !== undefined ? `epoch ${v.epoch + 1}` : ""]];
    if (v.accuracy !== undefined && v.accuracy !== null) cards.push(["Validation accuracy", pct(v.accuracy), ""]);
    if (t.lr !== undefined && t.lr !== null) cards.push(["Learning rate", fmt(t.lr), ""]);
    if (best) cards.push(["Best epoch", String(best.epoch + 1), best.metrics?.val_accuracy !== undefined ? `val acc ${pct(best.metrics.val_accuracy)}` : `val loss ${fmt(best.metrics?.val_loss)}`]);
    else if (job.estimate?.parameters) cards.push(["Parameters", fmt(job.estimate.parameters), ""]);
    stats.replaceChildren(...cards.map(([label, value, sub]) => h("div", { class: "stat" },
      h("div", { class: "muted small", text: label }), h("div", { class: "stat-value", text: value }), h("div", { class: "muted small", text: sub }))));

    if (!specPre.textContent) specPre.textContent = JSON.stringify(job.spec, null, 2);
  }

  async function dl(path, name) {
    s.actionError = null;
    try { await api.download(path, name); } catch (err) { if (!handleAuth(err)) s.actionError = err; }
    if (!s.stopped) renderJob();
  }

  // cancel, pause or resume: the API answers with the job as it is now (the events and the poll show
  // what follows); an error (e.g. 409 invalid_state: it changed meanwhile) is shown above the progress
  async function control(action) {
    if (s.acting) return;             // one at a time (a double click)
    s.acting = true;
    s.actionError = null;
    renderJob();
    try {
      s.job = await api.post(`${base}/${action}`);
      if (action === "pause" && s.job.status === "running") s.pausing = true;
    } catch (err) {
      if (handleAuth(err)) return;
      s.actionError = err;
    } finally {
      s.acting = false;
    }
    if (!s.stopped) renderJob();
  }

  function cancel() {
    if (confirm(`Cancel job ${s.job.name || id}? Its checkpoints are kept.`)) control("cancel");
  }

  // the curves since the last rows seen (inclusive: a validation row is written after its step's train row)
  async function loadMetrics() {
    if (s.busy) { s.again = true; return; }
    s.busy = true;
    try {
      do {
        s.again = false;
        const m = await api.get(`${base}/metrics${s.lastTrain >= 0 ? `?step_from=${s.lastTrain}` : ""}`);
        const tr = m.train, va = m.validation;
        for (let i = 0; i < (tr.step || []).length; i++) {
          if (tr.step[i] > s.lastTrain && tr.loss[i] !== null) { s.train.push([tr.step[i], tr.loss[i]]); s.lastTrain = tr.step[i]; }
        }
        for (let i = 0; i < (va.step || []).length; i++) {
          if (va.step[i] > s.lastVal) {
            if (va.loss[i] !== null) s.val.push([va.step[i], va.loss[i]]);
            if (va.accuracy && va.accuracy[i] !== null && va.accuracy[i] !== undefined) s.acc.push([va.step[i], va.accuracy[i]]);
            s.lastVal = va.step[i];
          }
        }
        drawCharts();
      } while (s.again && !s.stopped);
    } finally {
      s.busy = false;
    }
  }

  async function loadCheckpoints() {
    const list = await api.get(`${base}/checkpoints`);
    ckptEmpty.hidden = list.data.length > 0;
    patchChildren(ckptBody, list.data.map((c) => h("tr", { "data-step": c.step },
      h("td", { class: "num", text: fmt(c.step) }), h("td", { class: "num", text: String(c.epoch) }),
      h("td", { class: "small" }, Object.entries(c.metrics || {}).filter(([, v]) => typeof v === "number")
        .map(([k, v]) => h("span", { class: "kv" }, `${k.replace("val_", "val ").replace("_", " ")} `, h("b", { text: k.includes("accuracy") ? pct(v) : fmt(v) })))),
      h("td", { class: "num small", text: bytes(c.bytes) }),
      h("td", {}, h("a", { href: `${base}/checkpoints/${c.step}`, class: "download", onclick: (e) => {
        e.preventDefault();
        dl(`${base}/checkpoints/${c.step}`, `${id}-step-${c.step}.safetensors`);
      }, text: "Download" })))));
  }

  function addEvent(ev) {
    const d = ev.data || {};
    let text;
    if (ev.type === "epoch_end") {
      text = [`epoch ${d.epoch + 1}`, `train loss ${fmt(d.train_loss)}`, d.val_loss !== undefined ? `val loss ${fmt(d.val_loss)}` : null,
        d.val_accuracy !== undefined ? `val acc ${pct(d.val_accuracy)}` : null].filter(Boolean).join(" · ");
    } else if (ev.type === "checkpoint") {
      text = `step ${fmt(d.step)}${d.epoch !== undefined ? ` · epoch ${d.epoch}` : ""}`;
    } else {
      text = Object.entries(d).filter(([, v]) => v !== null && typeof v !== "object").map(([k, v]) => `${k} ${typeof v === "number" ? fmt(v) : v}`).join(" · ");
      if (d.message) text = d.message;
    }
    eventsList.prepend(h("li", { "data-type": ev.type },
      h("time", { text: new Date(ev.time * 1000).toLocaleTimeString() }),
      h("span", { class: `etype etype-${ev.type}`, text: ev.type.replace("_", " ") }),
      h("span", { class: "edata", text })));
    while (eventsList.childElementCount > 500) eventsList.lastElementChild.remove();    // the newest 500
  }

  async function refreshJob() {
    const job = await api.get(base);
    if (s.stopped) return;
    const stepped = (job.progress?.step || 0) > s.lastTrain;
    s.job = job;
    renderJob();
    if (stepped || TERMINAL.has(job.status)) await loadMetrics();
  }

  // one call of `fn` shortly after a burst of events (a long job's backlog has an event per epoch)
  function later(name, fn) {
    if (s.pending.has(name)) return;
    s.pending.add(name);
    setTimeout(() => { s.pending.delete(name); if (!s.stopped) fn().catch(() => {}); }, 150);
  }

  // the live part: events over SSE (resumed with Last-Event-ID after a dropped connection), and a poll
  // of the job's progress for the steps between two events
  async function follow() {
    while (!s.stopped) {
      try {
        for await (const ev of api.readEvents(`${base}/events`, { lastEventId: s.lastEventId, signal: abort.signal })) {
          if (ev.id) s.lastEventId = ev.id;
          if (!ev.data || typeof ev.data !== "object") continue;
          addEvent(ev.data);
          if (ev.event === "checkpoint" || TERMINAL.has(ev.event)) later("checkpoints", loadCheckpoints);
          if (ev.event !== "queued") later("job", refreshJob);
        }
      } catch (err) {
        if (s.stopped || abort.signal.aborted) return;
        if (handleAuth(err)) return;
        if (err.status === 404) { alert.replaceChildren(errorBox(err)); return; }
      }
      await refreshJob().catch(() => {});
      if (s.job && TERMINAL.has(s.job.status)) return;
      await new Promise((r) => setTimeout(r, 2000));   // the stream dropped: resume from the last event
    }
  }

  async function poll() {
    if (s.stopped) return;
    try {
      await refreshJob();
    } catch (err) {
      if (handleAuth(err)) return;
    }
    if (!s.stopped && !TERMINAL.has(s.job?.status)) s.timer = setTimeout(poll, 1000);
  }

  (async () => {
    try {
      s.job = await api.get(base);
      renderJob();
      await Promise.all([loadMetrics(), loadCheckpoints()]);
    } catch (err) {
      if (handleAuth(err)) return;
      main.replaceChildren(h("section", { class: "page" }, h("a", { href: "#/", class: "back", text: "← All jobs" }), errorBox(err)));
      return;
    }
    follow();
    if (!TERMINAL.has(s.job.status)) s.timer = setTimeout(poll, 1000);
  })();

  return { stop() { s.stopped = true; clearTimeout(s.timer); abort.abort(); } };
}

// an exponential moving average of a noisy curve (debiased; a window of about 2% of its length)
function ema(points) {
  if (points.length < 20) return [];
  const beta = 1 - 1 / Math.max(5, points.length / 50);
  let avg = 0;
  return points.map(([x, y], k) => { avg = beta * avg + (1 - beta) * y; return [x, avg / (1 - beta ** (k + 1))]; });
}

// ---- routing -------------------------------------------------------------------------------------
function updateHeader() {
  const btn = document.getElementById("change-key");
  btn.hidden = !api.getKey();
}

function route() {
  api.takeKeyFromUrl();
  view?.stop();
  updateHeader();
  if (!api.getKey()) { view = keyView(); return; }
  const hash = location.hash.split("?")[0];
  const fromPath = location.pathname.match(/^\/jobs\/([^/]+)$/);
  const m = hash.match(/^#\/jobs\/([^/]+)$/) || (!hash || hash === "#/" ? fromPath : null);
  document.getElementById("nav-jobs").classList.toggle("active", !m);
  document.title = "Fita";
  view = m ? jobView(decodeURIComponent(m[1])) : listView();
}

document.getElementById("change-key").addEventListener("click", () => {
  api.setKey("");
  route();
});
window.addEventListener("hashchange", route);
route();
