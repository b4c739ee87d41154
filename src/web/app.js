// uspwatch web console: a small single-page app over the public API (/api/v1).
// Every string that comes from the API (device ids, values, summaries) is inserted as text,
// never as markup: devices choose their own ids and values.
"use strict";

const TOKEN_KEY = "uspwatch.token";
const REFRESH_MS = 5000;
const main = () => document.getElementById("main");

// ---- DOM helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function td(v, cls) { return el("td", { class: cls }, v === undefined || v === null ? "—" : v); }

function setStatus(msg) { document.getElementById("status").textContent = msg || ""; }

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  return Math.round(s / 3600) + "h ago";
}

function deviceLink(eid) {
  return el("a", { href: "#/device/" + encodeURIComponent(eid), class: "device-link" }, eid);
}

// ---- API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts) {
  const o = Object.assign({ method: "GET" }, opts || {});
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  if (o.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch("/api/v1" + path, {
    method: o.method,
    headers,
    body: o.body === undefined ? undefined : JSON.stringify(o.body),
    cache: "no-store",
  });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const err = (body && body.error) || {};
    throw new ApiError(resp.status, err.code || "http_" + resp.status,
      err.message || resp.statusText);
  }
  return body;
}

function explain(e) {
  if (e instanceof ApiError && e.status === 401) return "The API needs a token: enter it above.";
  if (e instanceof ApiError && e.status === 403) return "This token may not do that (" + e.message + ").";
  return "Error: " + e.message;
}

// ---- Fleet overview ----------------------------------------------------------------------

const SEVERITY_WEIGHT = { critical: 3, warning: 2 };

async function overview() {
  const count = (q) => api("/devices?per_page=1" + q).then((r) => r.total);
  const [total, online, stale, offline, alerts] = await Promise.all([
    count(""), count("&state=online"), count("&state=stale"), count("&state=offline"),
    api("/alerts"),
  ]);
  const active = alerts.alerts.filter((a) => a.state !== "resolved");
  const firing = active.filter((a) => a.state === "firing");
  const card = (id, n, label, cls) =>
    el("div", { class: "card" }, el("div", { class: "n " + (cls || ""), id }, n), el("div", { class: "l" }, label));
  // Worst devices: the most and the most severe firing alerts; pending ones count a little.
  const score = new Map();
  for (const a of active) {
    const eid = a.labels && a.labels.endpoint_id;
    if (!eid) continue;
    const s = score.get(eid) || { eid, score: 0, rules: [] };
    const w = SEVERITY_WEIGHT[a.severity] || 1;
    s.score += a.state === "firing" ? w : w / 4;
    s.rules.push(a.rule + (a.state === "pending" ? " (pending)" : ""));
    score.set(eid, s);
  }
  const worst = [...score.values()].sort((a, b) => b.score - a.score || a.eid.localeCompare(b.eid)).slice(0, 10);
  return [
    el("h1", {}, "Fleet"),
    el("div", { class: "cards" },
      card("count-total", total, "devices"),
      card("count-online", online, "online", "online"),
      card("count-stale", stale, "stale (online, silent)", "stale"),
      card("count-offline", offline, "offline", "offline"),
      card("count-firing", firing.length, "alerts firing", firing.length ? "firing" : "")),
    el("h2", {}, "Worst devices"),
    worst.length
      ? table(["device", "score", "alerts"], worst.map((w) =>
          el("tr", { class: "worst", dataset: { endpoint: w.eid } },
            el("td", {}, deviceLink(w.eid)), td(w.score.toFixed(1), "num"), td(w.rules.join(", ")))),
        { id: "worst-devices" })
      : el("p", { id: "worst-devices", class: "muted" }, "No device has an active alert."),
  ];
}

// ---- Device page -------------------------------------------------------------------------

const DIAGNOSTICS = [
  ["Read device info", { type: "get", paths: ["Device.DeviceInfo."] }],
  ["Ping test", { type: "operate", command: "Device.IP.Diagnostics.IPPing()", args: { Host: "example.net" } }],
  ["Self-test", { type: "operate", command: "Device.SelfTestDiagnostics()" }],
  ["Wi-Fi neighbour scan", { type: "operate", command: "Device.WiFi.NeighboringWiFiDiagnostic()" }],
];

// Commands sent from this tab, per device (the API keeps rule actions with their alerts).
function sentHere(eid) {
  try { return JSON.parse(sessionStorage.getItem("uspwatch.sent." + eid) || "[]"); } catch (_) { return []; }
}
function rememberSent(eid, entry) {
  const list = sentHere(eid);
  list.unshift(entry);
  sessionStorage.setItem("uspwatch.sent." + eid, JSON.stringify(list.slice(0, 20)));
}

function describe(cmd) {
  if (!cmd) return "—";
  if (cmd.type === "operate") return "operate " + cmd.command;
  if (cmd.type === "set") {
    return "set " + (cmd.objects || []).flatMap((o) =>
      Object.entries(o.params || {}).map(([k, v]) => o.obj_path + k + "=" + v)).join(" ");
  }
  if (cmd.type === "get") return "get " + (cmd.paths || []).join(" ");
  return cmd.type;
}

function kv(obj) {
  return table(["field", "value"], Object.entries(obj).map(([k, v]) =>
    el("tr", {}, td(k), td(typeof v === "object" && v !== null ? JSON.stringify(v) : v))));
}

// A numeric series drawn as a small line chart. points: [[t_ms, value], ...].
function sparkChart(title, points) {
  const W = 260, H = 70, P = 4;
  const ts = points.map((p) => p[0]), vs = points.map((p) => p[1]);
  const t0 = Math.min(...ts), t1 = Math.max(...ts), v0 = Math.min(...vs), v1 = Math.max(...vs);
  const x = (t) => P + (t1 === t0 ? (W - 2 * P) / 2 : ((t - t0) / (t1 - t0)) * (W - 2 * P));
  const y = (v) => H - P - (v1 === v0 ? (H - 2 * P) / 2 : ((v - v0) / (v1 - v0)) * (H - 2 * P));
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#2b6cb0"); line.setAttribute("stroke-width", "1.5");
  line.setAttribute("points", points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
  svg.append(line);
  const last = vs[vs.length - 1];
  return el("div", { class: "chart" }, el("div", { class: "t" }, title),
    svg, el("div", { class: "t" }, `last ${last} · min ${v0} · max ${v1} · ${points.length} points`));
}

// Numeric value changes from the recent events, one chart per parameter.
function eventCharts(events) {
  const series = new Map();
  for (const e of events || []) {
    if (e.kind !== "value_change" || e.value === undefined || e.value === null) continue;
    const v = Number(e.value);
    if (!Number.isFinite(v) || e.value === "") continue;
    if (!series.has(e.path)) series.set(e.path, []);
    series.get(e.path).push([e.received_at_ms, v]);
  }
  return [...series.entries()].slice(0, 8).map(([path, pts]) =>
    sparkChart(path, pts.sort((a, b) => a[0] - b[0])));
}

// Bulk Data samples, when the API returns them: every numeric field over time.
function sampleCharts(samples) {
  const series = new Map();
  for (const s of samples || []) {
    const t = s.at_ms || s.received_at_ms || s.ts_ms || Date.parse(s.at || s.ts || "");
    const fields = s.values || s.params || s.parameters || s;
    for (const [k, v] of Object.entries(fields || {})) {
      const n = Number(v);
      if (!Number.isFinite(t) || typeof v === "boolean" || v === "" || !Number.isFinite(n)) continue;
      if (/(_ms|^at|^ts)$/.test(k)) continue;
      if (!series.has(k)) series.set(k, []);
      series.get(k).push([t, n]);
    }
  }
  return [...series.entries()].slice(0, 8).map(([k, pts]) => sparkChart(k, pts.sort((a, b) => a[0] - b[0])));
}

async function devicePage(eid) {
  const [d, alerts] = await Promise.all([
    api("/devices/" + encodeURIComponent(eid)),
    api("/alerts"),
  ]);
  const mine = alerts.alerts.filter((a) => a.labels && a.labels.endpoint_id === eid);
  const inv = {
    status: d.status, online: d.online, stale: d.stale, mqtt_version: d.mqtt_version,
    remote_addr: d.remote_addr, connected_since: d.connected_since, last_seen: d.last_seen,
    last_disconnect_reason: d.last_disconnect_reason, model_name: d.model_name,
    software_version: d.software_version, last_boot: d.last_boot,
  };
  for (const [k, v] of Object.entries(d.labels || {})) inv["label " + k] = v;
  const parts = [
    el("h1", { id: "device-title" }, eid),
    el("div", { class: "row" },
      el("div", {}, el("h2", {}, "Inventory"), el("div", { id: "inventory" }, kv(inv))),
      el("div", {}, el("h2", {}, "Diagnostics"),
        el("div", { id: "diagnostics" }, DIAGNOSTICS.map(([label, cmd]) =>
          el("button", { type: "button", class: "diag", onclick: () => runDiagnostic(eid, label, cmd) }, label), " ")),
        el("pre", { id: "diag-result", class: "muted" }, "Results appear here."))),
  ];
  const provisioning = d.provisioning || d.provisioning_state;
  if (provisioning !== undefined && provisioning !== null) {
    parts.push(el("h2", {}, "Provisioning"),
      el("div", { id: "provisioning" }, typeof provisioning === "object" ? kv(provisioning) : el("p", {}, provisioning)));
  }
  const samples = d.samples || d.bulk_data_samples || d.bulk_data;
  if (Array.isArray(samples) && samples.length) {
    parts.push(el("h2", {}, "Bulk Data samples"), el("div", { id: "samples", class: "charts" }, sampleCharts(samples)));
  }
  const charts = eventCharts(d.recent_events);
  parts.push(el("h2", {}, "Recent events"),
    charts.length ? el("div", { id: "event-charts", class: "charts" }, charts)
      : el("p", { id: "event-charts", class: "muted" }, "No numeric value changes yet."),
    table(["received", "kind", "path", "value"], (d.recent_events || []).slice(0, 15).map((e) =>
      el("tr", {}, td(e.received_at), td(e.kind), td(e.path + (e.name ? " " + e.name : "")), td(e.value)))));
  parts.push(el("h2", {}, "Alerts"), alertTable(mine, false));
  // Command history: rule actions (with their outcome and verification) and this tab's own.
  const history = [];
  for (const a of mine) for (const act of a.actions || []) {
    history.push({ at: act.at, origin: "rule " + act.rule, command: describe(act.command),
      status: act.status + (act.reason ? ": " + act.reason : ""), verify: act.verify });
  }
  for (const c of d.commands || []) {
    history.push({ at: c.at, origin: c.origin, command: describe(c.command), status: c.status || c.outcome, verify: c.verify });
  }
  for (const c of sentHere(eid)) history.push(c);
  history.sort((a, b) => String(b.at).localeCompare(String(a.at)));
  parts.push(el("h2", {}, "Command history"), history.length
    ? table(["at", "origin", "command", "status", "verified"], history.map((h) =>
        el("tr", {}, td(h.at), td(h.origin), td(h.command), td(h.status, String(h.status).split(":")[0]), td(h.verify, h.verify))),
      { id: "command-history" })
    : el("p", { id: "command-history", class: "muted" }, "No commands yet."));
  const latest = Object.entries(d.latest || {});
  parts.push(el("h2", {}, "Latest values"), table(["parameter", "value", "at"],
    latest.map(([p, v]) => el("tr", {}, td(p), td(v.value), td(v.at)))));
  return parts;
}

async function runDiagnostic(eid, label, cmd) {
  const out = document.getElementById("diag-result");
  out.textContent = label + ": waiting for the device…";
  const at = new Date().toISOString();
  try {
    const r = await api("/devices/" + encodeURIComponent(eid) + "/commands", { method: "POST", body: cmd });
    out.textContent = label + ":\n" + JSON.stringify(r, null, 2);
    rememberSent(eid, { at, origin: "console", command: describe(cmd), status: r.ok === false ? "failed" : "succeeded" });
  } catch (e) {
    out.textContent = label + ": " + explain(e);
    rememberSent(eid, { at, origin: "console", command: describe(cmd), status: "failed: " + e.message });
  }
}

// ---- Alerts and silences -----------------------------------------------------------------

function alertTable(alerts, withSilence) {
  const order = { firing: 0, pending: 1, resolved: 2 };
  const rows = [...alerts].sort((a, b) => order[a.state] - order[b.state] || b.active_since_ms - a.active_since_ms)
    .map((a) => {
      const eid = a.labels && a.labels.endpoint_id;
      return el("tr", { class: "alert", dataset: { rule: a.rule, endpoint: eid || "", state: a.state } },
        td(a.state, a.state), td(a.severity, a.severity), td(a.rule),
        el("td", {}, eid ? deviceLink(eid) : "—"),
        td((a.annotations && a.annotations.summary) || ""),
        td(ago(a.fired_at_ms || a.active_since_ms)), td(a.silenced ? "silenced" : ""),
        withSilence ? el("td", {}, el("button", { type: "button", class: "silence", onclick: () => openSilenceForm(a) }, "Silence…")) : null);
    });
  const id = withSilence ? "alerts" : "device-alerts";
  if (!rows.length) return el("p", { id, class: "muted" }, "No alerts.");
  const head = ["state", "severity", "rule", "device", "summary", "since", ""];
  if (withSilence) head.push("");
  return table(head, rows, { id });
}

let silenceFormOpen = false;

function openSilenceForm(alert) {
  silenceFormOpen = true;
  const host = document.getElementById("silence-host");
  const matchers = [["alertname", alert ? alert.rule : ""]];
  if (alert && alert.labels && alert.labels.endpoint_id) matchers.push(["endpoint_id", alert.labels.endpoint_id]);
  const text = el("textarea", { id: "silence-matchers" });
  text.value = matchers.map(([k, v]) => k + "=" + v).join("\n");
  const duration = el("input", { id: "silence-duration", value: "2h" });
  const by = el("input", { id: "silence-created-by", value: sessionStorage.getItem("uspwatch.user") || "" });
  const comment = el("input", { id: "silence-comment", value: "" });
  const result = el("span", { id: "silence-result" });
  const form = el("form", { id: "silence-form", class: "inline", onsubmit: (ev) => { ev.preventDefault(); submitSilence(); } },
    el("label", { for: "silence-matchers" }, "matchers (name=value, one per line; name=~regex)"), text,
    el("label", { for: "silence-duration" }, "duration"), duration,
    el("label", { for: "silence-created-by" }, "created by"), by,
    el("label", { for: "silence-comment" }, "comment"), comment,
    el("span", {}), el("div", {},
      el("button", { id: "silence-submit", type: "submit" }, "Create silence"), " ",
      el("button", { type: "button", onclick: () => { silenceFormOpen = false; host.replaceChildren(); } }, "Cancel"), " ", result));
  host.replaceChildren(form);
  comment.focus();
}

// The alert's rule name is the `alertname` label, as Alertmanager calls it.
function parseMatchers(text) {
  return text.split("\n").map((l) => l.trim()).filter((l) => l).map((l) => {
    const m = l.match(/^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)$/);
    if (!m) throw new Error("not a matcher: " + l);
    return { name: m[1], value: m[3], is_regex: m[2].includes("~"), is_equal: !m[2].startsWith("!") };
  });
}

async function submitSilence() {
  const result = document.getElementById("silence-result");
  try {
    const created_by = document.getElementById("silence-created-by").value;
    sessionStorage.setItem("uspwatch.user", created_by);
    const s = await api("/silences", { method: "POST", body: {
      matchers: parseMatchers(document.getElementById("silence-matchers").value),
      duration: document.getElementById("silence-duration").value,
      created_by,
      comment: document.getElementById("silence-comment").value,
    } });
    silenceFormOpen = false;
    notice = "Created silence " + s.id + ".";
    await show();
  } catch (e) {
    result.textContent = explain(e);
  }
}

async function expireSilence(id) {
  try { await api("/silences/" + encodeURIComponent(id), { method: "DELETE" }); await show(); }
  catch (e) { setStatus(explain(e)); }
}

async function alertsPage() {
  const r = await api("/alerts");
  const silences = r.silences || [];
  const matcherText = (m) => m.name + (m.is_equal ? "" : "!") + (m.is_regex ? "=~" : "=") + m.value;
  return [
    el("h1", {}, "Alerts"),
    el("div", {}, el("button", { type: "button", id: "silence-new", onclick: () => openSilenceForm(null) }, "New silence…"),
      " ", el("span", { id: "silence-created", class: "muted" })),
    el("div", { id: "silence-host" }),
    alertTable(r.alerts, true),
    el("h2", {}, "Silences"),
    silences.length ? table(["id", "matchers", "ends", "created by", "comment", "active", ""], silences.map((s) =>
      el("tr", { class: "silence-row", dataset: { id: s.id } }, td(s.id), td(s.matchers.map(matcherText).join(", ")),
        td(new Date(s.ends_at_ms).toISOString()), td(s.created_by), td(s.comment), td(s.active ? "active" : "expired"),
        el("td", {}, s.active ? el("button", { type: "button", onclick: () => expireSilence(s.id) }, "Expire") : ""))),
      { id: "silences" }) : el("p", { id: "silences", class: "muted" }, "No silences."),
  ];
}

// ---- Rules -------------------------------------------------------------------------------

async function rulesPage() {
  const r = await api("/rules");
  const secs = (ms) => (ms ? ms / 1000 + "s" : "—");
  const parts = [el("h1", {}, "Rules"),
    table(["rule", "severity", "every", "for", "action", "last evaluation", "took", "rows", "pending", "firing", "error"],
      r.rules.map((x) => el("tr", { class: "rule", dataset: { rule: x.name } },
        td(x.name), td(x.severity, x.severity), td(secs(x.every_ms)), td(secs(x.for_ms)),
        td(x.has_action ? x.mode : "—"), td(ago(x.last_eval_ms)),
        td(x.last_duration_us === null || x.last_duration_us === undefined ? "—" : (x.last_duration_us / 1000).toFixed(1) + " ms", "num"),
        td(x.last_rows, "num"), td(x.pending, "num"), td(x.firing, "num"),
        td(x.last_error || "", x.last_error ? "failed" : ""))),
      { id: "rules" })];
  if ((r.load_errors || []).length) {
    parts.push(el("h2", {}, "Rules that did not load"), el("ul", {}, r.load_errors.map((e) => el("li", { class: "failed" }, e))));
  }
  return parts;
}

// ---- Routing -----------------------------------------------------------------------------

function route() {
  const h = location.hash.replace(/^#/, "") || "/";
  if (h.startsWith("/device/")) return { name: "device", arg: decodeURIComponent(h.slice(8)) };
  if (h === "/alerts") return { name: "alerts" };
  if (h === "/rules") return { name: "rules" };
  return { name: "overview" };
}

let rendering = null;
let renderAgain = false;

// Renders the current route; a call during a render makes it render once more afterwards,
// so what the latest call asked for is what ends up on screen.
async function show() {
  if (rendering) { renderAgain = true; return rendering; }
  rendering = (async () => {
    do { renderAgain = false; await render(); } while (renderAgain);
  })();
  try { await rendering; } finally { rendering = null; }
}

let notice = "";

async function render() {
  const r = route();
  for (const [id, name] of [["nav-overview", "overview"], ["nav-alerts", "alerts"], ["nav-rules", "rules"]]) {
    document.getElementById(id).classList.toggle("active", r.name === name);
  }
  try {
    const parts = r.name === "device" ? await devicePage(r.arg)
      : r.name === "alerts" ? await alertsPage()
      : r.name === "rules" ? await rulesPage()
      : await overview();
    main().replaceChildren(...parts);
    main().dataset.view = r.name;
    const n = document.getElementById("silence-created");
    if (n) n.textContent = notice;
    setStatus("");
  } catch (e) {
    setStatus(explain(e));
  }
}

function refresh() {
  // Keep the page still while someone types or reads a diagnostic result.
  const r = route();
  if (silenceFormOpen || r.name === "device") return;
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("token");
  input.value = sessionStorage.getItem(TOKEN_KEY) || "";
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    show();
  });
  window.addEventListener("hashchange", () => { silenceFormOpen = false; notice = ""; show(); });
  show();
  setInterval(refresh, REFRESH_MS);
});
