// The status page (GET /): one self-contained HTML document — inline CSS and
// script, no external assets (the Content-Security-Policy in admin_http.cpp
// allows nothing else). The script fetches /api/v1/status every 2 s and
// builds the tables with DOM calls (textContent only: client ids and names
// are never parsed as HTML). With a token, the page is opened as /?token=T
// and sends T as a Bearer header (docs/admin-api.md "The status page").
#include "lb/admin_http.hpp"

namespace lb {

namespace {

const char kPage[] = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>mqttlb status</title>
<style>
:root { --up:#1a7f37; --down:#cf222e; --drain:#bf8700; --maint:#6e7781; --bg:#f6f8fa;
        --card:#fff; --line:#d0d7de; --text:#1f2328; --muted:#656d76; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       background:var(--bg); color:var(--text); }
header { display:flex; flex-wrap:wrap; gap:16px; align-items:center; padding:12px 20px;
         background:#24292f; color:#fff; }
header h1 { font-size:18px; margin:0 8px 0 0; }
header .kv { color:#d0d7de; } header .kv b { color:#fff; font-weight:600; }
main { padding:16px 20px; display:grid; gap:16px; }
section { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:12px 16px; }
section h2 { font-size:15px; margin:0 0 8px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:5px 10px 5px 0; border-bottom:1px solid var(--line);
         vertical-align:top; white-space:nowrap; }
th { color:var(--muted); font-weight:600; font-size:12px; text-transform:uppercase; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
tr:last-child td { border-bottom:none; }
.badge { display:inline-block; min-width:52px; text-align:center; padding:1px 8px;
         border-radius:10px; color:#fff; font-weight:600; font-size:12px; }
.up { background:var(--up); } .down { background:var(--down); }
.drain { background:var(--drain); } .maint { background:var(--maint); }
.pass { color:var(--up); } .fail { color:var(--down); }
.ready-yes { background:var(--up); } .ready-no { background:var(--down); }
.bar { position:relative; width:160px; height:14px; background:#eaeef2; border-radius:7px;
       overflow:hidden; display:inline-block; vertical-align:middle; }
.bar > span { position:absolute; left:0; top:0; bottom:0; background:#0969da; }
.muted { color:var(--muted); }
.empty { color:var(--muted); font-style:italic; }
#error { display:none; background:#ffebe9; border:1px solid #ff818266; color:var(--down);
         padding:8px 12px; border-radius:6px; }
td.wrap { white-space:normal; }
</style>
</head>
<body>
<header>
  <h1>mqttlb</h1>
  <span class="kv">version <b id="version">…</b></span>
  <span class="kv">up <b id="uptime">…</b></span>
  <span class="badge" id="ready">…</span>
  <span class="kv"><b id="connections">…</b> connections</span>
  <span class="kv muted" id="updated"></span>
</header>
<main>
  <div id="error"></div>
  <section><h2>Backends</h2>
    <table id="backends"><thead><tr><th>Name</th><th>Address</th><th>State</th><th>Admin</th>
      <th>Weight</th><th>Sessions</th><th>Last check</th><th>Latency</th><th>Evacuation</th>
    </tr></thead><tbody></tbody></table></section>
  <section><h2>Listeners</h2>
    <table id="listeners"><thead><tr><th>Name</th><th>Bind</th><th>TLS</th></tr></thead>
    <tbody></tbody></table></section>
  <section><h2>Evacuations</h2>
    <table id="evacuations"><thead><tr><th>Backend</th><th>State</th><th>Progress</th>
      <th>Rate</th><th>Deadline</th><th>Reason</th><th>Started</th></tr></thead>
    <tbody></tbody></table></section>
  <section><h2>Recent reloads</h2>
    <table id="reloads"><thead><tr><th>Time</th><th>Trigger</th><th>Result</th><th>Changes / errors</th>
    </tr></thead><tbody></tbody></table></section>
</main>
<script>
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function badge(text, cls) { return el("span", text, "badge " + cls); }
function bar(done, total) {
  const b = el("span", null, "bar");
  const fill = el("span");
  fill.style.width = (total > 0 ? Math.min(100, 100 * done / total) : 100) + "%";
  b.appendChild(fill);
  return b;
}
function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + sec + "s";
}
function fill(tableId, rows, emptyText, columns) {
  const tbody = $(tableId).tBodies[0];
  tbody.replaceChildren();
  if (!rows.length) {
    const tr = el("tr"), td = el("td", emptyText, "empty");
    td.colSpan = columns;
    tr.appendChild(td);
    tbody.appendChild(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el("tr");
    if (cells.key) tr.dataset[cells.key[0]] = cells.key[1];
    for (const c of cells) {
      if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
      else if (c && typeof c === "object") { const td = el("td", c.text, c.cls); if (c.node) td.appendChild(c.node); tr.appendChild(td); }
      else tr.appendChild(el("td", c));
    }
    tbody.appendChild(tr);
  }
}
function evacText(ev) {
  return ev.state + " " + ev.moved + "/" + ev.sessions;
}
function evacNode(ev) {
  const span = el("span");
  span.appendChild(bar(ev.moved, ev.sessions));
  span.appendChild(el("span", " " + evacText(ev), "evac-text"));
  return span;
}

let renders = 0;
function render(s) {
  $("version").textContent = s.version;
  $("uptime").textContent = duration(s.uptime_s);
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "not ready";
  ready.className = "badge " + (s.ready ? "ready-yes" : "ready-no");
  $("connections").textContent = s.connections;
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();

  fill("backends", s.backends.map((b) => {
    const c = b.last_check;
    const row = [
      b.name, b.address,
      {node: badge(b.state, b.state), cls: "state"},
      {text: b.admin, cls: "admin"},
      {text: b.weight + (b.effective_weight !== b.weight ? " (" + (+b.effective_weight).toFixed(2) + ")" : ""), cls: "num"},
      {text: b.sessions, cls: "num sessions"},
      c ? {text: c.result + (c.reason ? ": " + c.reason : ""), cls: "check " + c.result} : {text: "–", cls: "check"},
      c ? {text: (c.latency_s * 1000).toFixed(1) + " ms", cls: "num latency"} : {text: "–", cls: "latency"},
      b.evacuation ? {node: evacNode(b.evacuation), cls: "evacuation"} : {text: "–", cls: "evacuation"},
    ];
    row.key = ["backend", b.name];
    return row;
  }), "no backends", 9);

  fill("listeners", s.listeners.map((l) => {
    const row = [l.name, l.bind, l.tls ? "yes" : "no"];
    row.key = ["listener", l.name];
    return row;
  }), "no listeners", 3);

  fill("evacuations", s.evacuations.map((e) => {
    const row = [
      e.backend || "(all backends)", {text: e.state, cls: "state"},
      evacNode(e), e.rate_per_s + "/s", e.deadline_s + " s",
      e.reason + (e.server_reference ? " → " + e.server_reference : ""), e.started,
    ];
    row.key = ["backend", e.backend];
    return row;
  }), "no evacuation", 7);

  fill("reloads", s.reloads.map((r) => [
    r.time, r.trigger, {node: badge(r.ok ? "ok" : "failed", r.ok ? "up" : "down")},
    {text: (r.ok ? r.changed : r.errors).join("; ") || "nothing changed", cls: "wrap"},
  ]), "no reload since the start", 4);
  document.body.dataset.renders = ++renders;  // how many refreshes landed (tests read it)
}

async function refresh() {
  try {
    const resp = await fetch("/api/v1/status", {
      headers: token ? {"Authorization": "Bearer " + token} : {},
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer"});
    const body = await resp.json();
    if (!resp.ok) throw new Error("HTTP " + resp.status + ": " + (body.error || ""));
    render(body);
    $("error").style.display = "none";
  } catch (e) {
    const box = $("error");
    box.textContent = "cannot read /api/v1/status: " + e.message +
        (String(e.message).includes("401") ? " (open this page as /?token=TOKEN)" : "");
    box.style.display = "block";
  } finally {
    setTimeout(refresh, 2000);
  }
}
refresh();
</script>
</body>
</html>
)html";

}  // namespace

const char* admin_status_page() {
  return kPage;
}

}  // namespace lb
