// Herald console: a few pages over the /v1 API, no framework, no build
// step. Every value is put into the page as text (never as HTML).
"use strict";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
let timer = null;

function token() { return sessionStorage.getItem("herald-token") || ""; }

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem("herald-token", input.value);
  input.value = "";
  render();
});

async function api(method, path) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  const resp = await fetch(path, { method, headers });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { code: "internal", error: "not JSON" }; }
  if (!resp.ok) {
    const err = new Error((body && body.error) || resp.statusText);
    err.code = body && body.code;
    err.status = resp.status;
    throw err;
  }
  return body;
}

// el builds an element: el("td", {class: "num"}, "42", child, ...).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, testid) {
  const t = el("table", { "data-testid": testid });
  t.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", h.num ? { class: "num" } : {}, h.name || h)))));
  const tb = el("tbody");
  for (const r of rows) tb.append(r);
  t.append(tb);
  return t;
}

function status(s) { return el("span", { class: "status " + s, "data-status": s }, s); }
function when(t) { return t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
function dur(s) {
  if (s === undefined || s === null) return "—";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function link(href, text) { return el("a", { href }, text); }

// sparkline draws a series of counts as an SVG polyline.
function sparkline(points) {
  const w = 120, h = 24;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("data-testid", "sparkline");
  const max = Math.max(1, ...points.map((p) => p.final));
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map((p, i) => `${(i * step).toFixed(1)},${(h - 1 - (p.final / max) * (h - 2)).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

function progressBar(done) {
  const fill = el("span");
  fill.style.width = (done * 100).toFixed(1) + "%"; // CSSOM: the CSP refuses style attributes
  return el("span", { class: "bar", title: (done * 100).toFixed(1) + "%" }, fill);
}

const STATUSES = ["scheduled", "deferred", "sending", "retrying", "sent", "failed", "expired", "rejected", "canceled"];

async function campaignsPage() {
  const list = await api("GET", "/v1/campaigns?limit=50");
  const details = await Promise.all(list.campaigns.slice(0, 20).map((c) =>
    api("GET", "/v1/campaigns/" + encodeURIComponent(c.campaign)).catch(() => null)));
  const rows = list.campaigns.map((c, i) => el("tr", { "data-campaign": c.campaign },
    el("td", {}, link("#/campaign/" + encodeURIComponent(c.campaign), c.campaign)),
    el("td", {}, progressBar(c.done), " ", (c.done * 100).toFixed(0) + "%"),
    el("td", { class: "num", "data-field": "total" }, c.total),
    el("td", { class: "num", "data-field": "final" }, c.final),
    el("td", { class: "num", "data-field": "failed" }, c.by_status.failed || 0),
    el("td", { class: "num", "data-field": "held" }, (c.by_status.scheduled || 0) + (c.by_status.deferred || 0) + (c.by_status.retrying || 0)),
    el("td", { class: "num", "data-field": "rate" }, c.rate_per_second.toFixed(2) + "/s"),
    el("td", { "data-field": "eta" }, dur(c.eta_seconds)),
    el("td", {}, details[i] ? sparkline(details[i].throughput) : "")));
  return [el("h1", {}, "Campaigns"),
    table(["campaign", "progress", { name: "total", num: 1 }, { name: "final", num: 1 }, { name: "failed", num: 1 },
      { name: "held", num: 1 }, { name: "rate", num: 1 }, "time to done", "final per 30 s, last 30 min"], rows, "campaigns")];
}

async function campaignPage(name) {
  const [d, msgs] = await Promise.all([
    api("GET", "/v1/campaigns/" + encodeURIComponent(name)),
    api("GET", "/v1/messages?limit=50&campaign=" + encodeURIComponent(name))]);
  const act = async (what, path) => {
    if (!confirm(`${what} campaign ${name}?`)) return;
    try {
      const r = await api("POST", path);
      showError(`${r.action}: ${r.requested} requested`);
    } catch (e) { showError(e.message); }
  };
  const counts = el("dl", { class: "kv", "data-testid": "progress" },
    el("dt", {}, "progress"), el("dd", {}, progressBar(d.progress.done), " ", `${d.final} of ${d.total} final`),
    el("dt", {}, "rate"), el("dd", {}, d.progress.rate_per_second.toFixed(2) + "/s"),
    el("dt", {}, "time to done"), el("dd", {}, dur(d.progress.eta_seconds)),
    el("dt", {}, "throughput"), el("dd", {}, sparkline(d.throughput)),
    ...STATUSES.filter((s) => d.by_status[s]).flatMap((s) => [el("dt", {}, status(s)), el("dd", { "data-count": s }, d.by_status[s])]));
  const failures = table(["status", "channel", "last error", { name: "notifications", num: 1 }],
    d.failures.map((f) => el("tr", {}, el("td", {}, status(f.status)), el("td", {}, f.channel), el("td", {}, f.error),
      el("td", { class: "num" }, f.notifications))), "failures");
  return [el("h1", {}, "Campaign ", name),
    el("p", {},
      el("button", { onclick: () => act("Cancel everything not yet started in", "/v1/campaigns/" + encodeURIComponent(name) + "/cancel") }, "Cancel campaign"), " ",
      el("button", { onclick: () => act("Retry the failed notifications of", "/v1/campaigns/" + encodeURIComponent(name) + "/retry?status=failed") }, "Retry failed")),
    counts, el("h2", {}, "Failures by last error"), failures,
    el("h2", {}, "Notifications (newest first)"), messageTable(msgs.messages)];
}

function messageTable(ms) {
  return table(["id", "status", "channel", { name: "attempts", num: 1 }, "hold", "next attempt", "last error", "updated"],
    ms.map((m) => el("tr", { "data-id": m.id },
      el("td", {}, link("#/message/" + encodeURIComponent(m.id), m.id)), el("td", {}, status(m.status)), el("td", {}, m.channel),
      el("td", { class: "num" }, m.attempts), el("td", {}, m.hold_reason || ""), el("td", {}, when(m.next_attempt_at)),
      el("td", {}, m.last_error || ""), el("td", {}, when(m.updated_at)))), "messages");
}

async function messagePage(id) {
  const m = await api("GET", "/v1/messages/" + encodeURIComponent(id));
  const r = m.recipient || {};
  const kv = el("dl", { class: "kv", "data-testid": "message" },
    el("dt", {}, "status"), el("dd", { "data-field": "status" }, status(m.status)),
    el("dt", {}, "campaign"), el("dd", {}, link("#/campaign/" + encodeURIComponent(m.campaign), m.campaign)),
    el("dt", {}, "hold reason"), el("dd", { "data-field": "hold_reason" }, m.hold_reason || "—"),
    el("dt", {}, "next attempt"), el("dd", { "data-field": "next_attempt_at" }, when(m.next_attempt_at) || "—"),
    el("dt", {}, "channel"), el("dd", {}, `${m.channel} (of ${(m.channels || []).join(", ")})`),
    el("dt", {}, "attempts"), el("dd", { "data-field": "attempts" }, m.attempts),
    el("dt", {}, "recipient"), el("dd", { "data-field": "recipient" }, [r.email, r.phone, r.push_token].filter(Boolean).join(", ")),
    el("dt", {}, "last error"), el("dd", { "data-field": "last_error" }, m.last_error || "—"),
    el("dt", {}, "first seen"), el("dd", {}, when(m.first_seen)),
    el("dt", {}, "version"), el("dd", {}, m.version));
  const hist = table([{ name: "attempt", num: 1 }, "channel", "outcome", { name: "code", num: 1 }, "error", "at"],
    m.history.map((a) => el("tr", {}, el("td", { class: "num" }, a.attempt || "—"), el("td", {}, a.channel), el("td", {}, a.outcome),
      el("td", { class: "num" }, a.code || ""), el("td", {}, a.error || ""), el("td", {}, when(a.at)))), "history");
  return [el("h1", {}, "Notification ", m.id), kv, el("h2", {}, "Attempt history"), hist];
}

async function heldPage() {
  const [h, msgs] = await Promise.all([api("GET", "/v1/held"),
    api("GET", "/v1/messages?limit=50&status=scheduled,deferred,retrying")]);
  const rows = h.held.map((x) => el("tr", { "data-reason": x.reason },
    el("td", {}, x.reason), el("td", {}, status(x.status)), el("td", { class: "num", "data-field": "count" }, x.notifications),
    el("td", {}, when(x.next_at))));
  return [el("h1", {}, "Held notifications"),
    table(["reason", "status", { name: "notifications", num: 1 }, "next due"], rows, "held"),
    el("h2", {}, "Held, newest first"), messageTable(msgs.messages)];
}

async function dlqPage() {
  const d = await api("GET", "/v1/dlq?limit=100");
  const reasons = table(["reason", { name: "dead letters", num: 1 }],
    d.reasons.map((r) => el("tr", { "data-reason": r.reason }, el("td", {}, r.reason), el("td", { class: "num", "data-field": "count" }, r.dead_letters))), "dlq-reasons");
  const letters = table(["key", "reason", "error", "from", "at"],
    d.dead_letters.map((x) => el("tr", { "data-key": x.key }, el("td", {}, x.key), el("td", {}, x.reason), el("td", {}, x.error),
      el("td", {}, `${x.topic}/${x.partition}@${x.offset}`), el("td", {}, when(x.at)))), "dlq");
  return [el("h1", {}, "Dead letters"), el("p", { class: "muted" }, `${d.total} in herald.dlq`),
    el("h2", {}, "By reason"), reasons, el("h2", {}, "Newest"), letters];
}

function showError(msg) {
  errorBox.textContent = msg;
  errorBox.hidden = !msg;
}

async function render() {
  clearTimeout(timer);
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [page, ...rest] = hash.split("/");
  const arg = rest.join("/");
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.nav === (page || "campaigns"));
  }
  try {
    let content;
    if (page === "campaign") content = await campaignPage(arg);
    else if (page === "message") content = await messagePage(arg);
    else if (page === "held") content = await heldPage();
    else if (page === "dlq") content = await dlqPage();
    else content = await campaignsPage();
    main.replaceChildren(...content);
    main.dataset.page = page || "campaigns";
    document.getElementById("live").textContent = "updated " + new Date().toLocaleTimeString();
    if (errorBox.textContent.startsWith("API")) showError("");
  } catch (e) {
    if (e.status === 401) {
      main.replaceChildren(el("p", { "data-testid": "need-token" }, "This Herald needs its API token: type it above."));
      main.dataset.page = "token";
      return;
    }
    showError("API: " + e.message);
  }
  timer = setTimeout(render, 2000);
}

window.addEventListener("hashchange", render);
render();
