// Herald console: a few pages over the /v1 API, no framework, no build
// step. Every value is put into the page as text (never as HTML).
"use strict";

const main = document.getElementById("main");
const errorBox = document.getElementById("error");
const noticeBox = document.getElementById("notice");
let timer = null;

function token() { return sessionStorage.getItem("herald-token") || ""; }

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem("herald-token", input.value);
  input.value = "";
  render();
});

// Find by id: the search box opens the notification's page.
document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("search");
  const id = input.value.trim();
  if (!id) return;
  input.value = "";
  location.hash = "#/message/" + encodeURIComponent(id);
});

async function api(method, path, body) {
  const headers = {};
  if (token()) headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/x-ndjson";
  const resp = await fetch(path, { method, headers, body });
  let answer = null;
  try { answer = await resp.json(); } catch (e) { answer = { code: "internal", error: "not JSON" }; }
  if (!resp.ok) {
    const err = new Error((answer && answer.error) || resp.statusText);
    err.code = answer && answer.code;
    err.status = resp.status;
    err.body = answer;
    throw err;
  }
  return answer;
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
// eta is a campaign's time to done: what is not held at the current rate,
// plus the held ones, which end when their hold does.
function eta(p) {
  const held = p.held || 0;
  const rest = p.total - p.final - held;
  let s = rest > 0 ? dur(p.eta_seconds) : (held ? "" : "done");
  if (held) s += (s ? " + " : "") + held + " held";
  return s;
}

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
    el("td", { "data-field": "eta" }, eta(c)),
    el("td", {}, details[i] ? sparkline(details[i].throughput) : "")));
  return [el("h1", {}, "Campaigns"),
    table(["campaign", "progress", { name: "total", num: 1 }, { name: "final", num: 1 }, { name: "failed", num: 1 },
      { name: "held", num: 1 }, { name: "rate", num: 1 }, "time to done", "final per 30 s, last 30 min"], rows, "campaigns")];
}

async function campaignPage(name) {
  const [d, msgs] = await Promise.all([
    api("GET", "/v1/campaigns/" + encodeURIComponent(name)),
    messageList("campaign/" + name, { campaign: name }, STATUSES)]);
  const act = async (what, path) => {
    if (!confirm(`${what} campaign ${name}?`)) return;
    try {
      const r = await api("POST", path);
      showNotice(`${r.action}: ${r.requested} requested`);
    } catch (e) { showError(e.message); }
  };
  const counts = el("dl", { class: "kv", "data-testid": "progress" },
    el("dt", {}, "progress"), el("dd", {}, progressBar(d.progress.done), " ", `${d.final} of ${d.total} final`),
    el("dt", {}, "rate"), el("dd", {}, d.progress.rate_per_second.toFixed(2) + "/s"),
    el("dt", {}, "time to done"), el("dd", { "data-field": "eta" }, eta(d.progress)),
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
    el("h2", {}, "Notifications (newest first)"), ...msgs];
}

// Lists of notifications keep their status filter and page across the
// live refresh, per list (a campaign's, the held ones).
const lists = {};

function pageSize() { return Number(sessionStorage.getItem("herald-page-size")) || 50; }

// messageList reads one page of GET /v1/messages with the list's filter
// and returns its controls (status filter, newer/older) and its table.
async function messageList(key, query, statuses) {
  const st = lists[key] || (lists[key] = { status: "", cursors: [""] });
  const q = new URLSearchParams(query);
  q.set("limit", String(pageSize()));
  q.set("status", st.status || statuses.join(","));
  const cursor = st.cursors[st.cursors.length - 1];
  if (cursor) q.set("cursor", cursor);
  const page = await api("GET", "/v1/messages?" + q.toString());
  const filter = el("select", { "data-testid": "status-filter", onchange: () => { st.status = filter.value; st.cursors = [""]; render(); } },
    el("option", { value: "" }, "any status"), ...statuses.map((x) => el("option", { value: x }, x)));
  filter.value = st.status;
  const newer = el("button", { type: "button", "data-testid": "page-newer", onclick: () => { st.cursors.pop(); render(); } }, "← newer");
  newer.disabled = st.cursors.length < 2;
  const older = el("button", { type: "button", "data-testid": "page-older", onclick: () => { st.cursors.push(page.next_cursor); render(); } }, "older →");
  older.disabled = !page.next_cursor;
  const controls = el("p", { class: "pager" }, el("label", {}, "status ", filter), newer, " ",
    el("span", { "data-testid": "page-number" }, "page " + st.cursors.length), " ", older);
  return [controls, messageTable(page.messages)];
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
  const act = async (what, path) => {
    if (!confirm(`${what} notification ${m.id}?`)) return;
    try {
      const r = await api("POST", path);
      showNotice(`${what}: ${r.result}`);
      render();
    } catch (e) { showError(`${what}: ${e.message}`); }
  };
  const base = "/v1/messages/" + encodeURIComponent(m.id);
  const actions = el("p", {},
    m.final ? null : el("button", { "data-testid": "cancel", onclick: () => act("Cancel", base + "/cancel") }, "Cancel"), " ",
    m.status === "failed" ? el("button", { "data-testid": "retry", onclick: () => act("Retry", base + "/retry") }, "Retry") : null);
  return [el("h1", {}, "Notification ", m.id), actions, kv, el("h2", {}, "Attempt history"), hist];
}

async function heldPage() {
  const [h, msgs] = await Promise.all([api("GET", "/v1/held"),
    messageList("held", {}, ["scheduled", "deferred", "retrying"])]);
  const rows = h.held.map((x) => el("tr", { "data-reason": x.reason },
    el("td", {}, x.reason), el("td", {}, status(x.status)), el("td", { class: "num", "data-field": "count" }, x.notifications),
    el("td", {}, when(x.next_at))));
  return [el("h1", {}, "Held notifications"),
    table(["reason", "status", { name: "notifications", num: 1 }, "next due"], rows, "held"),
    el("h2", {}, "Held, newest first"), ...msgs];
}

// stuckPage shows what the dispatcher's sweep would rescue now (GET
// /v1/stuck): sending past its time-out, or held past its wake-up by more
// than the sweep's grace.
async function stuckPage() {
  const s = await api("GET", "/v1/stuck?limit=" + pageSize());
  const kinds = { send_timeout: "no result past its send time-out", hold: "wake-up overdue" };
  const rows = s.stuck.map((x) => el("tr", { "data-id": x.id, "data-kind": x.kind },
    el("td", {}, link("#/message/" + encodeURIComponent(x.id), x.id)), el("td", {}, x.campaign), el("td", {}, status(x.status)),
    el("td", { "data-field": "kind" }, kinds[x.kind] || x.kind), el("td", {}, when(x.due)),
    el("td", { class: "num", "data-field": "overdue" }, dur(x.overdue_seconds)), el("td", {}, x.last_error || "")));
  return [el("h1", {}, "Stuck notifications"),
    el("p", { class: "muted", "data-testid": "stuck-total" }, `${s.total} stuck: what the dispatcher's sweep would rescue now `
      + `(sending past its time-out with no result, or held past its wake-up by more than ${dur(s.grace_seconds)}). `
      + "The sweep rescues each within a minute; one that stays here means no dispatcher sweeps its partition."),
    table(["id", "campaign", "status", "why", "due", { name: "overdue", num: 1 }, "last error"], rows, "stuck")];
}

async function dlqPage() {
  const d = await api("GET", "/v1/dlq?limit=100");
  const reasons = table(["reason", { name: "dead letters", num: 1 }],
    d.reasons.map((r) => el("tr", { "data-reason": r.reason }, el("td", {}, r.reason), el("td", { class: "num", "data-field": "count" }, r.dead_letters))), "dlq-reasons");
  const letters = table(["dlq", "key", "reason", "error", "from", "at", "replayed", ""],
    d.dead_letters.map((x) => el("tr", { "data-key": x.key, "data-dlq": x.dlq }, el("td", {}, x.dlq), el("td", {}, x.key), el("td", {}, x.reason), el("td", {}, x.error),
      el("td", {}, `${x.topic}/${x.partition}@${x.offset}`), el("td", {}, when(x.at)),
      el("td", { "data-field": "replayed" }, x.replayed ? `${when(x.replayed.at)} as ${x.replayed.id}${x.replayed.fixed ? " (fixed)" : ""}` : ""),
      el("td", {}, el("button", { "data-action": "replay", onclick: () => openReplay(d, { at: x.dlq }, true) }, "Replay…")))), "dlq");
  return [el("h1", {}, "Dead letters"), el("p", { class: "muted" }, `${d.total} in herald.dlq `,
    replay ? null : el("button", { "data-testid": "replay-open", onclick: () => openReplay(d, { topic: "herald.requests" }, false) }, "Replay…")),
  replay ? replay.panel : null,
  el("h2", {}, "By reason"), reasons, el("h2", {}, "Newest"), letters];
}

// The replay panel of the DLQ page. While it is open the page's live
// refresh pauses, so that the form and the plan stay as they are. A replay
// is two steps: a dry run shows what would be replayed and what would be
// skipped and why; the confirm button then replays exactly the dead
// letters the dry run showed (by their positions).
let replay = null;

const REPLAY_FILTERS = ["reason", "topic", "key", "since", "until", "at"];

function openReplay(d, preset, dryRunNow) {
  const field = (name, input) => el("label", {}, name, " ", input);
  const inputs = {};
  for (const name of REPLAY_FILTERS) {
    inputs[name] = name === "reason"
      ? el("select", { name }, el("option", { value: "" }, "any"), ...d.reasons.map((r) => el("option", { value: r.reason }, r.reason)))
      : el("input", { name, size: name === "at" ? 24 : 16,
        placeholder: { since: "24h or RFC 3339", until: "RFC 3339", at: "PARTITION@OFFSET,…" }[name] || "" });
    inputs[name].value = preset[name] || "";
  }
  const again = el("input", { type: "checkbox", name: "again" });
  const fix = el("textarea", { name: "fix", rows: 4, cols: 100, placeholder: "optional fix-up: corrected requests, one JSON object a line; only the dead letters they fix (by id) are replayed" });
  const out = el("div", { "data-testid": "replay-output" });
  const form = el("form", { class: "replay", "data-testid": "replay-form" },
    el("h2", {}, "Replay dead letters"),
    el("p", {}, ...REPLAY_FILTERS.flatMap((n) => [field(n, inputs[n]), " "]), el("label", {}, again, " again (replayed ones too)")),
    el("p", {}, fix),
    el("p", {}, el("button", { type: "submit", "data-testid": "replay-dry-run" }, "Dry run"), " ",
      el("button", { type: "button", onclick: closeReplay }, "Close")),
    out);
  const query = (at) => {
    const q = new URLSearchParams();
    for (const n of REPLAY_FILTERS) if (inputs[n].value.trim()) q.set(n, inputs[n].value.trim());
    if (at) q.set("at", at.join(","));
    if (again.checked) q.set("again", "1");
    return q;
  };
  const send = async (q) => {
    try {
      return await api("POST", "/v1/dlq/replay?" + q.toString(), fix.value);
    } catch (e) {
      // A replay stopped midway still says what it did.
      if (e.body && e.body.items) out.replaceChildren(replayTable(e.body, "replay-result"));
      showError("replay: " + e.message);
      return null;
    }
  };
  const dryRun = async () => {
    const q = query(null);
    q.set("dry_run", "1");
    const r = await send(q);
    if (!r) return;
    const ats = r.items.filter((it) => it.action === "would replay").map((it) => it.dlq);
    const confirmBtn = el("button", { type: "button", "data-testid": "replay-confirm", onclick: async () => {
      confirmBtn.disabled = true;
      const done = await send(query(ats));
      if (done) out.replaceChildren(el("p", { "data-testid": "replay-summary" }, `${done.replayed} replayed, ${done.skipped} skipped`),
        replayTable(done, "replay-result"));
    } }, `Replay ${ats.length} dead letter${ats.length === 1 ? "" : "s"}`);
    if (!ats.length) confirmBtn.disabled = true;
    out.replaceChildren(el("p", { "data-testid": "replay-summary" }, `${r.would_replay} would be replayed, ${r.skipped} skipped `, confirmBtn),
      replayTable(r, "replay-plan"));
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); dryRun(); });
  replay = { panel: form };
  render().then(() => { if (dryRunNow) dryRun(); });
}

function closeReplay() {
  replay = null;
  render();
}

function replayTable(r, testid) {
  return table(["dlq", "action", "key", "id", "reason", "from", "why", "published"],
    r.items.map((it) => el("tr", { "data-dlq": it.dlq, "data-action": it.action },
      el("td", {}, it.dlq), el("td", { "data-field": "action" }, it.action), el("td", {}, it.key), el("td", { "data-field": "id" }, it.id || ""),
      el("td", {}, it.reason || ""), el("td", {}, it.topic || ""), el("td", { "data-field": "why" }, it.why || ""),
      el("td", {}, it.published ? `${it.published.topic}/${it.published.partition}@${it.published.offset}` : ""))), testid);
}

function showError(msg) {
  errorBox.textContent = msg;
  errorBox.hidden = !msg;
  if (msg) showNotice("");
}

// showNotice says that an action went through (not in the error box).
function showNotice(msg) {
  noticeBox.textContent = msg;
  noticeBox.hidden = !msg;
  if (msg) { showError(""); setTimeout(() => { if (noticeBox.textContent === msg) showNotice(""); }, 8000); }
}

async function render() {
  clearTimeout(timer);
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [page, ...rest] = hash.split("/");
  const arg = rest.join("/");
  if (page !== "dlq") replay = null;
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.nav === (page || "campaigns"));
  }
  try {
    let content;
    if (page === "campaign") content = await campaignPage(arg);
    else if (page === "message") content = await messagePage(arg);
    else if (page === "held") content = await heldPage();
    else if (page === "stuck") content = await stuckPage();
    else if (page === "dlq") content = await dlqPage();
    else content = await campaignsPage();
    main.replaceChildren(...content.filter((c) => c !== null && c !== undefined));
    main.dataset.page = page || "campaigns";
    document.getElementById("live").textContent = "updated " + new Date().toLocaleTimeString() + (replay ? " (paused while replaying)" : "");
    if (errorBox.textContent.startsWith("API")) showError("");
    if (replay) return; // no refresh: see openReplay
  } catch (e) {
    if (e.status === 401) {
      main.replaceChildren(token()
        ? el("p", { "data-testid": "bad-token" }, "Herald refused this token: type the right one above (herald run printed it; it is in <data-dir>/api-token).")
        : el("p", { "data-testid": "need-token" }, "This Herald needs its API token: type it above."));
      main.dataset.page = "token";
      return;
    }
    if (e.status === 404) {
      // Not the previous page's content under the new address.
      const what = page === "message" ? `No notification with id ${arg}` : page === "campaign" ? `No campaign ${arg}` : "Not found";
      main.replaceChildren(el("p", { "data-testid": "not-found" }, what + " (one published a moment ago may not be in the view yet)."));
      main.dataset.page = "not-found";
    } else if (main.dataset.page !== (page || "campaigns")) {
      main.replaceChildren(el("p", { "data-testid": "page-error" }, "This page could not be loaded: " + e.message));
      main.dataset.page = "error";
    }
    showError("API: " + e.message);
  }
  timer = setTimeout(render, 2000);
}

window.addEventListener("hashchange", () => { showNotice(""); render(); });
render();
