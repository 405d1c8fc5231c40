"""`engine preview --format html`: one self-contained page showing the preview on a time axis.

One lane per recipient (its name beside its id, when the events gave one); sends, pending sends,
cancellations and skips as marks; marks at the same instant stacked, with a count badge past three;
filters by notification, recipient and status; zoom and pan; ticks at round times of the chosen
zone; a summary of counts by notification and status. Drawn on a canvas, only the lanes in view,
so that thousands of recipients stay fast. No network: the data, styles and script are in the file.

The page keeps its view in the address's fragment (`#tz=Asia/Tokyo&status=sent,cancelled&...`),
so a view can be shared, and it reports its state on `<body data-*>` (for tests and scripts):
`data-shown-sends` and `data-shown-recipients` (what the filters let through), `data-in-window`
(of those, the sends inside the time window), `data-drawn` (marks drawn in the lanes on screen),
`data-badges`, `data-tz`, `data-errors`; the axis its ticks, the plot the lanes on screen.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any, Mapping

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  * { box-sizing: border-box; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 12px 16px; color: #1d2430; }
  h1 { font-size: 18px; margin: 0 0 8px; overflow-wrap: anywhere; }
  .bar { display: flex; gap: 10px 18px; align-items: center; margin-bottom: 8px; flex-wrap: wrap; }
  .bar label { white-space: nowrap; }
  .dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin: 0 3px 0 2px; vertical-align: middle; }
  button { font: inherit; padding: 1px 9px; }
  input[type=search] { width: 16em; }
  #notification { max-width: 22em; }
  #chartbox { border: 1px solid #d6dbe3; background: #fbfcfe; position: relative; user-select: none; }
  #axis { display: block; cursor: ew-resize; border-bottom: 1px solid #d6dbe3; }
  #lanes { height: max(320px, calc(100vh - 330px)); overflow-y: auto; position: relative; }
  #plot { display: block; position: sticky; top: 0; cursor: grab; }
  #plot.dragging { cursor: grabbing; }
  #tip { position: fixed; pointer-events: none; background: #1d2430; color: #fff; font-size: 12px; padding: 6px 8px;
         border-radius: 4px; max-width: 420px; white-space: pre-wrap; display: none; z-index: 5; }
  #details { white-space: pre-wrap; font: 12px/1.4 ui-monospace, monospace; background: #f3f5f9;
             border: 1px solid #d6dbe3; padding: 8px; min-height: 3em; margin-top: 8px; max-height: 40vh; overflow: auto; }
  .hint { color: #5b6472; font-size: 12px; }
  table.summary { border-collapse: collapse; margin-top: 10px; font-size: 13px; }
  table.summary th, table.summary td { border: 1px solid #d6dbe3; padding: 2px 8px; text-align: right; }
  table.summary th:first-child, table.summary td:first-child { text-align: left; }
  table.summary tr.chosen td { background: #e8f0fd; }
  table.summary a { color: inherit; cursor: pointer; text-decoration: underline dotted; }
</style></head>
<body>
<h1>__TITLE__</h1>
<div class="bar">
  <label>Time zone <select id="tz"></select></label>
  <label>Notification <select id="notification"><option value="">all notifications</option></select></label>
  <label>Recipient <input id="recipient" type="search" placeholder="id or name contains..."></label>
  <span id="statuses"></span>
</div>
<div class="bar">
  <button id="zoom-out" title="Zoom out">&minus;</button>
  <label>Zoom <input id="zoom" type="range" min="0" max="1000" value="0"></label>
  <button id="zoom-in" title="Zoom in">+</button>
  <label>Pan <input id="pan" type="range" min="0" max="1000" value="500"></label>
  <button id="fit">Fit</button>
  <span id="count"></span>
  <span class="hint">Drag to pan; Ctrl+wheel (or the wheel over the time axis) zooms; click a mark for its details.</span>
</div>
<div id="chartbox">
  <canvas id="axis" role="img" aria-label="time axis"></canvas>
  <div id="lanes"><canvas id="plot" role="img" aria-label="timeline"></canvas><div id="spacer"></div></div>
</div>
<div id="tip"></div>
<div id="details">Click a mark for its details.</div>
<table class="summary" id="summary"></table>
<script type="application/json" id="data">__DATA__</script>
<script type="application/json" id="people">__PEOPLE__</script>
<script>
"use strict";
window.addEventListener("error", e => { document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + ";"; });
const rows = JSON.parse(document.getElementById("data").textContent);
const people = JSON.parse(document.getElementById("people").textContent);
const CHOSEN_TZ = __TZ__;
const STATUSES = ["sent", "pending", "cancelled", "skipped"];
const COLORS = {sent: "#2e9d57", pending: "#3a78d8", cancelled: "#e0a800", skipped: "#d64545"};
const LANE = 26, GUTTER = 300, AXIS = 46, RIGHT = 24, MIN_SPAN = 10 * 60e3, STACK = 3;
const $ = id => document.getElementById(id);

rows.forEach((r, i) => { r.i = i; r.t = Date.parse(r.send_at); });
const notifications = [...new Set(rows.map(r => r.notification))].sort();
const recipients = [...new Set(rows.map(r => r.recipient))].sort();
const state = {tz: CHOSEN_TZ, notification: "", query: "", statuses: new Set(STATUSES), t0: 0, t1: 1};
const label = id => people[id] && people[id].name ? people[id].name : "";

// --- the time zone: local parts of an instant, and the instant of a local wall time ---------
const fmtCache = new Map();
function formatter(tz, opts) {
  const key = tz + JSON.stringify(opts);
  if (!fmtCache.has(key)) fmtCache.set(key, new Intl.DateTimeFormat("en-GB", Object.assign({timeZone: tz}, opts)));
  return fmtCache.get(key);
}
function parts(ms, tz) {
  const o = {};
  for (const p of formatter(tz, {hourCycle: "h23", year: "numeric", month: "numeric", day: "numeric", hour: "numeric",
                                 minute: "numeric", second: "numeric", weekday: "short"}).formatToParts(ms)) o[p.type] = p.value;
  return {y: +o.year, mo: +o.month, d: +o.day, h: +o.hour % 24, mi: +o.minute, s: +o.second, wd: o.weekday};
}
function offsetAt(ms, tz) {
  const p = parts(ms, tz);
  return Date.UTC(p.y, p.mo - 1, p.d, p.h, p.mi, p.s) - Math.floor(ms / 1000) * 1000;
}
function fromLocal(y, mo, d, h, mi, tz) {  // null when that wall time does not exist there (a DST gap)
  const wall = Date.UTC(y, mo - 1, d, h, mi);
  let t = wall - offsetAt(wall, tz);
  t = wall - offsetAt(t, tz);
  const p = parts(t, tz), back = new Date(wall);
  return p.h === back.getUTCHours() && p.mi === back.getUTCMinutes() && p.d === back.getUTCDate() ? t : null;
}
function offsetText(ms, tz) {
  const off = Math.round(offsetAt(ms, tz) / 60000), a = Math.abs(off);
  return (off < 0 ? "-" : "+") + String(Math.floor(a / 60)).padStart(2, "0") + ":" + String(a % 60).padStart(2, "0");
}
function localISO(ms, tz) {
  const p = parts(ms, tz), z = n => String(n).padStart(2, "0");
  return `${p.y}-${z(p.mo)}-${z(p.d)}T${z(p.h)}:${z(p.mi)}:${z(p.s)}${offsetText(ms, tz)}`;
}
const shortTime = (ms, tz) => formatter(tz, {weekday: "short", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23"}).format(ms);

// --- ticks at round local times --------------------------------------------------------------
const STEPS = [[1, "mi"], [5, "mi"], [15, "mi"], [30, "mi"], [1, "h"], [3, "h"], [6, "h"], [12, "h"], [1, "d"], [2, "d"], [7, "d"], [1, "mo"], [3, "mo"]];
const UNIT = {mi: 60e3, h: 3600e3, d: 86400e3, mo: 30 * 86400e3};
function ticks(t0, t1, px, tz) {
  const [step, unit] = STEPS.find(([n, u]) => n * UNIT[u] / (t1 - t0) * px >= 80) || STEPS[STEPS.length - 1];
  const p = parts(t0, tz);
  let y = p.y, mo = p.mo, d = p.d, h = unit === "h" ? p.h - p.h % step : 0, mi = unit === "mi" ? p.mi - p.mi % step : 0;
  if (unit === "mi") h = p.h;
  if (unit === "d" && step === 7) d -= (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].indexOf(p.wd) + 7) % 7;
  if (unit === "mo") { d = 1; mo -= (mo - 1) % step; }
  const out = [];
  for (let k = 0; out.length < 400 && k < 2000; k++) {
    const w = new Date(Date.UTC(y, mo - 1 + (unit === "mo" ? k * step : 0), d + (unit === "d" ? k * step : 0),
                                h + (unit === "h" ? k * step : 0), mi + (unit === "mi" ? k * step : 0)));
    const t = fromLocal(w.getUTCFullYear(), w.getUTCMonth() + 1, w.getUTCDate(), w.getUTCHours(), w.getUTCMinutes(), tz);
    if (t === null) continue;
    if (t > t1) break;
    if (t < t0) continue;
    const day = w.getUTCHours() === 0 && w.getUTCMinutes() === 0;
    const text = unit === "mo" ? formatter(tz, {month: "short", year: "numeric"}).format(t)
      : day ? formatter(tz, {weekday: "short", day: "numeric", month: "short"}).format(t)
      : String(w.getUTCHours()).padStart(2, "0") + ":" + String(w.getUTCMinutes()).padStart(2, "0");
    out.push({t, text, major: day});
  }
  return out;
}

// --- filters ---------------------------------------------------------------------------------
let shown = rows, lanes = recipients, groupsByLane = new Map();
function applyFilters() {
  const q = state.query.trim().toLowerCase();
  const matchPerson = id => !q || id.toLowerCase().includes(q) || label(id).toLowerCase().includes(q);
  shown = rows.filter(r => state.statuses.has(r.status) && (!state.notification || r.notification === state.notification)
                           && matchPerson(r.recipient));
  lanes = [...new Set(shown.map(r => r.recipient))].sort();
  groupsByLane = new Map(lanes.map(id => [id, []]));
  const order = (a, b) => a.t - b.t || STATUSES.indexOf(a.status) - STATUSES.indexOf(b.status) || a.notification.localeCompare(b.notification) || a.i - b.i;
  for (const r of [...shown].sort(order)) {  // marks at the same instant of one lane form one group
    const g = groupsByLane.get(r.recipient), last = g[g.length - 1];
    if (last && last.t === r.t) last.rows.push(r); else g.push({t: r.t, rows: [r]});
  }
  $("spacer").style.height = Math.max(0, lanes.length * LANE - $("plot").clientHeight) + "px";
  document.body.dataset.shownSends = String(shown.length);
  document.body.dataset.shownRecipients = String(lanes.length);
  $("count").textContent = `${shown.length} of ${rows.length} sends, ${lanes.length} of ${recipients.length} recipients`;
  summary();
  saveHash();
  draw();
}

// --- the view: zoom and pan ------------------------------------------------------------------
const times = rows.map(r => r.t);
let full0 = times.length ? Math.min(...times) : Date.now(), full1 = times.length ? Math.max(...times) : full0 + 86400e3;
if (full1 - full0 < 2 * 3600e3) { full0 -= 3600e3; full1 += 3600e3; }
const pad = (full1 - full0) * 0.03; full0 -= pad; full1 += pad;
const fullSpan = full1 - full0;
function setView(t0, t1) {
  let span = Math.min(Math.max(t1 - t0, MIN_SPAN), fullSpan);
  t0 = Math.min(Math.max(t0, full0), full1 - span);
  state.t0 = t0; state.t1 = t0 + span;
  $("zoom").value = String(Math.round(1000 * Math.log(fullSpan / span) / Math.log(fullSpan / MIN_SPAN)) || 0);
  $("pan").value = String(fullSpan > span ? Math.round(1000 * (t0 - full0) / (fullSpan - span)) : 500);
  saveHash();
  draw();
}
function zoomBy(factor, at) {
  const anchor = at === undefined ? (state.t0 + state.t1) / 2 : at;
  setView(anchor - (anchor - state.t0) * factor, anchor + (state.t1 - anchor) * factor);
}
const plotWidth = () => $("plot").clientWidth - GUTTER - RIGHT;
const xOf = t => GUTTER + (t - state.t0) / (state.t1 - state.t0) * plotWidth();
const tOf = x => state.t0 + (x - GUTTER) / plotWidth() * (state.t1 - state.t0);

// --- drawing ---------------------------------------------------------------------------------
let hits = [], badges = 0;
function canvas(el, w, h) {
  const dpr = window.devicePixelRatio || 1;
  if (el.width !== Math.round(w * dpr) || el.height !== Math.round(h * dpr)) {
    el.width = Math.round(w * dpr); el.height = Math.round(h * dpr);
    el.style.width = w + "px"; el.style.height = h + "px";
  }
  const c = el.getContext("2d");
  c.setTransform(dpr, 0, 0, dpr, 0, 0);
  c.clearRect(0, 0, w, h);
  return c;
}
function fitText(c, text, width) {
  if (c.measureText(text).width <= width) return text;
  let lo = 0, hi = text.length;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (c.measureText(text.slice(0, mid) + "…").width <= width) lo = mid; else hi = mid - 1; }
  return text.slice(0, lo) + "…";
}
let pending = false;
function draw() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; paint(); }); } }
function paint() {
  const tz = state.tz, box = $("lanes"), width = box.clientWidth;
  const height = Math.max(100, box.clientHeight);
  const tickList = ticks(state.t0, state.t1, width - GUTTER - RIGHT, tz);
  const a = canvas($("axis"), width, AXIS);
  a.font = "12px system-ui, sans-serif"; a.textBaseline = "middle"; a.fillStyle = "#5b6472";
  a.fillText("times in " + tz + " (" + offsetText((state.t0 + state.t1) / 2, tz) + ")", 8, 14);
  a.fillText(shortTime(state.t0, tz) + " – " + shortTime(state.t1, tz), 8, 32);
  a.save(); a.beginPath(); a.rect(GUTTER - 40, 0, width - GUTTER + 40, AXIS); a.clip();
  for (const k of tickList) {
    a.fillStyle = k.major ? "#1d2430" : "#5b6472"; a.font = (k.major ? "bold " : "") + "12px system-ui, sans-serif";
    a.textAlign = "center"; a.fillText(k.text, xOf(k.t), k.major ? 14 : 32);
    a.fillRect(Math.round(xOf(k.t)), AXIS - 6, 1, 6);
  }
  a.restore();
  $("axis").dataset.ticks = JSON.stringify(tickList.map(k => [new Date(k.t).toISOString(), k.text]));
  const c = canvas($("plot"), width, height);
  hits = [];
  const first = Math.floor(box.scrollTop / LANE), offset = box.scrollTop - first * LANE;
  c.save(); c.beginPath(); c.rect(GUTTER, 0, width - GUTTER, height); c.clip();
  for (const k of tickList) { c.fillStyle = k.major ? "#c9d0db" : "#e8ebf1"; c.fillRect(Math.round(xOf(k.t)), 0, 1, height); }
  c.restore();
  let inView = 0;
  badges = 0;
  for (let i = first; i < lanes.length && (i - first) * LANE - offset < height; i++) {
    const id = lanes[i], y = (i - first) * LANE - offset + LANE / 2;
    if (i % 2) { c.fillStyle = "#f1f4f8"; c.fillRect(0, y - LANE / 2, width, LANE); }
    c.font = "bold 12px system-ui, sans-serif"; c.textAlign = "left"; c.textBaseline = "middle"; c.fillStyle = "#1d2430";
    const idText = fitText(c, id, GUTTER - 16);
    c.fillText(idText, 8, y);
    const name = label(id);
    if (name) {
      const used = c.measureText(idText + "  ").width;
      c.font = "12px system-ui, sans-serif"; c.fillStyle = "#5b6472";
      c.fillText(fitText(c, name, GUTTER - 16 - used), 8 + used, y);
    }
    c.save(); c.beginPath(); c.rect(GUTTER - 8, y - LANE / 2, width - GUTTER + 8, LANE); c.clip();
    for (const g of groupsByLane.get(id)) {
      if (g.t < state.t0 - (state.t1 - state.t0) * 0.01 || g.t > state.t1 + (state.t1 - state.t0) * 0.01) continue;
      inView += g.rows.length;
      drawGroup(c, g, xOf(g.t), y);
    }
    c.restore();
  }
  document.body.dataset.inWindow = String(shown.filter(r => r.t >= state.t0 && r.t <= state.t1).length);
  document.body.dataset.drawn = String(inView);
  document.body.dataset.badges = String(badges);
  $("plot").dataset.lanes = JSON.stringify(lanes.slice(first, first + Math.ceil(height / LANE) + 1).map(id => [id, label(id)]));
  document.body.dataset.tz = tz;
}
function drawGroup(c, g, x, y) {
  const n = g.rows.length, k = Math.min(n, STACK), r = k === 1 ? 6 : 5;
  for (let j = 0; j < k; j++) {  // stacked across the lane, in a fixed order: never on top of each other
    const cy = y + (j - (k - 1) / 2) * 7;
    c.beginPath(); c.arc(x, cy, r, 0, 2 * Math.PI);
    c.fillStyle = COLORS[g.rows[j].status] || "#888"; c.fill();
    c.lineWidth = 0.75; c.strokeStyle = "#1d2430"; c.stroke();
  }
  if (n > STACK) {
    badges++;
    const text = String(n);
    c.font = "bold 10px system-ui, sans-serif";
    const w = c.measureText(text).width + 6;
    c.fillStyle = "#1d2430"; c.fillRect(x + 6, y - 12, w, 12);
    c.fillStyle = "#fff"; c.textAlign = "left"; c.textBaseline = "middle"; c.fillText(text, x + 9, y - 6);
  }
  hits.push({x, y, r: Math.max(9, (k - 1) * 3.5 + 8), g});
}

// --- hover, click, drag, wheel -----------------------------------------------------------------
function hitAt(ev) {
  const rect = $("plot").getBoundingClientRect(), x = ev.clientX - rect.left, y = ev.clientY - rect.top;
  let best = null, bestD = Infinity;
  for (const h of hits) { const d = Math.hypot(h.x - x, h.y - y); if (d <= h.r && d < bestD) { best = h; bestD = d; } }
  return best;
}
function describe(r, tz) {
  return `${r.notification} · ${r.status}${r.reason ? " (" + r.reason + ")" : ""}\\n  ${localISO(r.t, tz)} · ${r.recipient}${label(r.recipient) ? " (" + label(r.recipient) + ")" : ""}`;
}
let drag = null;
$("plot").addEventListener("mousedown", ev => { drag = {x: ev.clientX, t0: state.t0, t1: state.t1, moved: false}; $("plot").classList.add("dragging"); });
window.addEventListener("mouseup", () => { $("plot").classList.remove("dragging"); setTimeout(() => { drag = null; }, 0); });
window.addEventListener("mousemove", ev => {
  if (drag && ev.buttons) {
    const dx = ev.clientX - drag.x;
    if (Math.abs(dx) > 2) drag.moved = true;
    const dt = dx / plotWidth() * (drag.t1 - drag.t0);
    setView(drag.t0 - dt, drag.t1 - dt);
    return;
  }
  const tip = $("tip"), h = ev.target === $("plot") ? hitAt(ev) : null;
  if (!h) { tip.style.display = "none"; return; }
  const list = h.g.rows.slice(0, 12).map(r => describe(r, state.tz));
  if (h.g.rows.length > 12) list.push(`... and ${h.g.rows.length - 12} more (click)`);
  tip.textContent = (h.g.rows.length > 1 ? h.g.rows.length + " sends at this instant\\n" : "") + list.join("\\n");
  tip.style.display = "block";
  tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 430) + "px"; tip.style.top = (ev.clientY + 14) + "px";
});
$("plot").addEventListener("click", ev => {
  if (drag && drag.moved) return;
  const h = hitAt(ev);
  if (!h) return;
  const tz = state.tz;
  $("details").textContent = h.g.rows.map(r => {
    const {i, t, ...row} = r;
    return JSON.stringify(Object.assign({local_time: localISO(t, tz) + " (" + tz + ")", recipient_name: label(r.recipient) || null}, row), null, 2);
  }).join("\\n\\n");
});
function onWheel(ev, always) {
  if (!always && !ev.ctrlKey && Math.abs(ev.deltaX) <= Math.abs(ev.deltaY) && !ev.shiftKey) return;  // scrolls the lanes
  ev.preventDefault();
  const rect = ev.currentTarget.getBoundingClientRect();
  const at = tOf(ev.clientX - rect.left);
  if (ev.ctrlKey || always && !ev.shiftKey && Math.abs(ev.deltaY) >= Math.abs(ev.deltaX)) zoomBy(Math.exp(ev.deltaY * 0.002), at);
  else { const dt = (ev.deltaX || ev.deltaY) / plotWidth() * (state.t1 - state.t0); setView(state.t0 + dt, state.t1 + dt); }
}
$("plot").addEventListener("wheel", ev => onWheel(ev, false), {passive: false});
$("axis").addEventListener("wheel", ev => onWheel(ev, true), {passive: false});
$("lanes").addEventListener("scroll", draw);
window.addEventListener("resize", () => { $("plot").style.height = $("lanes").clientHeight + "px"; applyFilters(); });
$("zoom-in").addEventListener("click", () => zoomBy(0.5));
$("zoom-out").addEventListener("click", () => zoomBy(2));
$("fit").addEventListener("click", () => setView(full0, full1));
$("zoom").addEventListener("input", () => {
  const span = fullSpan * Math.pow(MIN_SPAN / fullSpan, +$("zoom").value / 1000), mid = (state.t0 + state.t1) / 2;
  setView(mid - span / 2, mid + span / 2);
});
$("pan").addEventListener("input", () => {
  const span = state.t1 - state.t0, t0 = full0 + (fullSpan - span) * +$("pan").value / 1000;
  setView(t0, t0 + span);
});

// --- controls, the summary, the address -----------------------------------------------------
function summary() {
  const count = new Map(notifications.map(n => [n, Object.fromEntries(STATUSES.map(s => [s, 0]))]));
  for (const r of rows) if (count.get(r.notification)[r.status] !== undefined) count.get(r.notification)[r.status]++;
  const inFilter = new Map(notifications.map(n => [n, 0]));
  for (const r of shown) inFilter.set(r.notification, inFilter.get(r.notification) + 1);
  const head = "<tr><th>notification</th>" + STATUSES.map(s => `<th><i class="dot" style="background:${COLORS[s]}"></i>${s}</th>`).join("") + "<th>total</th><th>shown</th></tr>";
  const esc = s => s.replace(/[&<>"]/g, ch => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[ch]);
  const body = notifications.map(n => {
    const c = count.get(n), total = STATUSES.reduce((a, s) => a + c[s], 0);
    return `<tr data-notification="${esc(n)}"${n === state.notification ? ' class="chosen"' : ""}><td><a>${esc(n)}</a></td>` +
           STATUSES.map(s => `<td>${c[s]}</td>`).join("") + `<td>${total}</td><td>${inFilter.get(n)}</td></tr>`;
  }).join("");
  const totals = STATUSES.map(s => rows.filter(r => r.status === s).length);
  $("summary").innerHTML = head + body + `<tr><th>all</th>${totals.map(t => `<th>${t}</th>`).join("")}<th>${rows.length}</th><th>${shown.length}</th></tr>`;
}
$("summary").addEventListener("click", ev => {
  const tr = ev.target.closest("tr[data-notification]");
  if (!tr || ev.target.tagName !== "A") return;
  state.notification = state.notification === tr.dataset.notification ? "" : tr.dataset.notification;
  $("notification").value = state.notification;
  applyFilters();
});
function saveHash() {
  const p = new URLSearchParams();
  if (state.tz !== CHOSEN_TZ) p.set("tz", state.tz);
  if (state.notification) p.set("notification", state.notification);
  if (state.query) p.set("recipient", state.query);
  if (state.statuses.size !== STATUSES.length) p.set("status", [...state.statuses].join(","));
  if (state.t0 > full0 || state.t1 < full1) { p.set("from", new Date(state.t0).toISOString()); p.set("to", new Date(state.t1).toISOString()); }
  const text = p.toString();
  if (location.hash.slice(1) !== text) history.replaceState(null, "", text ? "#" + text : location.pathname + location.search);
}
function loadHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.get("tz") && zones.includes(p.get("tz"))) state.tz = p.get("tz");
  if (notifications.includes(p.get("notification"))) state.notification = p.get("notification");
  state.query = p.get("recipient") || "";
  if (p.get("status") !== null) state.statuses = new Set(p.get("status").split(",").filter(s => STATUSES.includes(s)));
  const from = Date.parse(p.get("from") || ""), to = Date.parse(p.get("to") || "");
  return isNaN(from) || isNaN(to) || to <= from ? [full0, full1] : [from, to];
}
const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const zones = [...new Set([CHOSEN_TZ, "UTC", browserZone, ...Object.values(people).map(p => p.timezone).sort()].filter(Boolean))]
  .filter(z => { try { formatter(z, {}); return true; } catch (e) { return false; } });
for (const z of zones) { const o = document.createElement("option"); o.value = o.textContent = z; $("tz").appendChild(o); }
for (const n of notifications) { const o = document.createElement("option"); o.value = o.textContent = n; $("notification").appendChild(o); }
for (const s of STATUSES) {
  const l = document.createElement("label"), box = document.createElement("input");
  box.type = "checkbox"; box.value = s; box.id = "status-" + s;
  box.addEventListener("change", () => { box.checked ? state.statuses.add(s) : state.statuses.delete(s); applyFilters(); });
  l.append(box, Object.assign(document.createElement("i"), {className: "dot", style: "background:" + COLORS[s]}), s + " ");
  $("statuses").appendChild(l);
}
$("tz").addEventListener("change", () => { state.tz = $("tz").value; saveHash(); draw(); });
$("notification").addEventListener("change", () => { state.notification = $("notification").value; applyFilters(); });
$("recipient").addEventListener("input", () => { state.query = $("recipient").value; applyFilters(); });
const [v0, v1] = loadHash();
$("tz").value = state.tz; $("notification").value = state.notification; $("recipient").value = state.query;
for (const s of STATUSES) $("status-" + s).checked = state.statuses.has(s);
$("plot").style.height = $("lanes").clientHeight + "px";
setView(v0, v1);
applyFilters();
</script>
</body></html>
"""


def render_html(rows: list[dict[str, Any]], people: Mapping[str, Mapping[str, Any]], title: str,
                tz: str | None = None) -> str:
    """The page for preview rows (their JSON form). `people` maps a recipient id to what the events
    said of that person (`name`, `timezone`); a name the events did not give is not shown."""
    known = {pid: {k: p[k] for k in ("name", "timezone") if isinstance(p.get(k), str) and p.get(k)}
             for pid, p in people.items()}
    values = {"__TITLE__": html.escape(title), "__TZ__": _script_json(tz or "UTC"),
              "__PEOPLE__": _script_json(known), "__DATA__": _script_json(rows)}
    return re.sub("__(TITLE|TZ|PEOPLE|DATA)__", lambda m: values[m.group(0)], PAGE)  # one pass: data is never re-read


def _script_json(value: Any) -> str:
    # Inside <script>, "</" could end the element and "<!--" open a comment; "<" only occurs in
    # JSON strings, where its escape means the same.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
