// Talking to the Fita API from the page: the key (localStorage), JSON requests, downloads and the live
// event stream. Every request carries `Authorization: Bearer <key>`; the event stream is read with
// fetch() and a ReadableStream (EventSource cannot send that header) and parsed here.

const KEY_ITEM = "fita.apiKey";

export function getKey() {
  return localStorage.getItem(KEY_ITEM) || "";
}

export function setKey(key) {
  if (key) localStorage.setItem(KEY_ITEM, key.trim());
  else localStorage.removeItem(KEY_ITEM);
}

// A key given in the URL (`/?api_key=...` or `/#/jobs/x?api_key=...`) is kept, then taken out of the
// address bar and the history.
export function takeKeyFromUrl() {
  const url = new URL(location.href);
  let key = url.searchParams.get("api_key");
  if (key) url.searchParams.delete("api_key");
  const [route, query] = url.hash.split("?");
  if (query) {
    const params = new URLSearchParams(query);
    if (params.get("api_key")) {
      key = params.get("api_key");
      params.delete("api_key");
      url.hash = params.toString() ? `${route}?${params}` : route;
    }
  }
  if (key) {
    setKey(key);
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || `http_${status}`;
    this.param = err.param;
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${getKey()}`, ...extra };
}

async function check(res) {
  if (res.ok) return res;
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  throw new ApiError(res.status, body);
}

export async function get(path, opts = {}) {
  const res = await check(await fetch(path, { headers: headers(), ...opts }));
  return res.json();
}

export async function post(path) {
  const res = await check(await fetch(path, { method: "POST", headers: headers() }));
  return res.json();
}

// A file behind the key: fetched with the header, then handed to the browser as a download.
export async function download(path, filename) {
  const res = await check(await fetch(path, { headers: headers() }));
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Server-sent events over fetch: yields {id, event, data} for each event (data parsed as JSON when it
// is JSON). Comments (`: keep-alive`) and `retry:` lines are skipped.
export async function* readEvents(path, { lastEventId = null, signal } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const res = await check(await fetch(path, { headers: headers(extra), signal, cache: "no-store" }));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const ev = parseBlock(block);
        if (ev) yield ev;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseBlock(block) {
  let id = null, event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  const text = data.join("\n");
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* plain text */ }
  return { id, event, data: parsed };
}
