"""`engine preview --format html`: one self-contained page showing the preview on a time axis.

One lane per recipient; sends, cancellations and skips as marks; details on hover and click;
times shown in a chosen time zone. No network: the data, styles and script are in the file.
"""

from __future__ import annotations

import html
import json
from typing import Any

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1d2430; }
  h1 { font-size: 18px; margin: 0 0 8px; }
  .bar { display: flex; gap: 16px; align-items: center; margin-bottom: 8px; flex-wrap: wrap; }
  .legend span { margin-right: 12px; }
  .dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px; vertical-align: middle; }
  svg { border: 1px solid #d6dbe3; background: #fbfcfe; }
  .lane-label { font-size: 12px; fill: #1d2430; }
  .tick { font-size: 11px; fill: #5b6472; }
  .mark { cursor: pointer; stroke: #1d2430; stroke-width: .5; }
  .mark:hover, .mark.selected { stroke-width: 2.5; }
  #details { white-space: pre-wrap; font: 12px/1.4 ui-monospace, monospace; background: #f3f5f9;
             border: 1px solid #d6dbe3; padding: 8px; min-height: 3em; margin-top: 8px; }
</style></head>
<body>
<h1>__TITLE__</h1>
<div class="bar">
  <label>Time zone <select id="tz"></select></label>
  <div class="legend">
    <span><i class="dot" style="background:#2e9d57"></i>sent</span>
    <span><i class="dot" style="background:#3a78d8"></i>pending</span>
    <span><i class="dot" style="background:#e0a800"></i>cancelled</span>
    <span><i class="dot" style="background:#d64545"></i>skipped</span>
  </div>
  <span id="count"></span>
</div>
<svg id="chart" role="img" aria-label="timeline"></svg>
<div id="details">Click a mark for its details.</div>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
window.addEventListener("error", e => { document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + ";"; });
const rows = JSON.parse(document.getElementById("data").textContent);
const colors = {sent: "#2e9d57", pending: "#3a78d8", cancelled: "#e0a800", skipped: "#d64545"};
const zones = ["UTC", ...new Set(rows.map(r => r.timezone).filter(Boolean))];
const tzSelect = document.getElementById("tz");
for (const z of zones) { const o = document.createElement("option"); o.value = o.textContent = z; tzSelect.appendChild(o); }
tzSelect.value = __TZ__ && zones.includes(__TZ__) ? __TZ__ : "UTC";
const recipients = [...new Set(rows.map(r => r.recipient))].sort();
document.getElementById("count").textContent = rows.length + " sends, " + recipients.length + " recipients";
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmt(ms, tz) {
  return new Intl.DateTimeFormat("en-GB", {timeZone: tz, month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit"}).format(new Date(ms));
}
function draw() {
  const tz = tzSelect.value;
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const left = 190, right = 30, top = 30, lane = 34;
  const width = Math.max(900, window.innerWidth - 40);
  const height = top + lane * Math.max(recipients.length, 1) + 30;
  svg.setAttribute("width", width); svg.setAttribute("height", height);
  const times = rows.map(r => Date.parse(r.send_at));
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (!rows.length) { t0 = Date.now(); t1 = t0 + 3600e3; }
  if (t1 - t0 < 3600e3) { t0 -= 1800e3; t1 += 1800e3; }
  const x = t => left + (t - t0) / (t1 - t0) * (width - left - right);
  for (let i = 0; i <= 6; i++) {
    const t = t0 + (t1 - t0) * i / 6;
    svg.appendChild(el("line", {x1: x(t), x2: x(t), y1: top - 8, y2: height - 24, stroke: "#e3e7ee"}));
    const anchor = i === 0 ? "start" : i === 6 ? "end" : "middle";
    svg.appendChild(el("text", {x: x(t), y: height - 8, "text-anchor": anchor, class: "tick"}, fmt(t, tz)));
  }
  recipients.forEach((rid, i) => {
    const y = top + i * lane + lane / 2;
    const g = el("g", {class: "lane", "data-recipient": rid});
    g.appendChild(el("line", {x1: left, x2: width - right, y1: y, y2: y, stroke: "#c9d0db"}));
    g.appendChild(el("text", {x: 8, y: y + 4, class: "lane-label"}, rid));
    svg.appendChild(g);
  });
  rows.forEach((r, i) => {
    const y = top + recipients.indexOf(r.recipient) * lane + lane / 2;
    const m = el("circle", {cx: x(Date.parse(r.send_at)), cy: y, r: 7, fill: colors[r.status] || "#888",
                            class: "mark " + r.status, "data-index": i});
    m.appendChild(el("title", {}, r.notification + " · " + r.status + " · " + fmt(Date.parse(r.send_at), tz)));
    m.addEventListener("click", () => {
      document.querySelectorAll(".mark.selected").forEach(e => e.classList.remove("selected"));
      m.classList.add("selected");
      const shown = Object.assign({local_time: fmt(Date.parse(r.send_at), tz) + " (" + tz + ")"}, r);
      document.getElementById("details").textContent = JSON.stringify(shown, null, 2);
    });
    svg.appendChild(m);
  });
  document.body.dataset.drawn = String(rows.length);
}
tzSelect.addEventListener("change", draw);
window.addEventListener("resize", draw);
draw();
</script>
</body></html>
"""


def render_html(rows: list[dict[str, Any]], timezones: dict[str, str], title: str, tz: str | None = None) -> str:
    """The page for preview rows (the JSON form); `timezones` maps recipient id to its zone."""
    data = [{**row, "timezone": timezones.get(row["recipient"])} for row in rows]
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return (PAGE.replace("__TITLE__", html.escape(title))
                .replace("__TZ__", json.dumps(tz or "UTC"))
                .replace("__DATA__", payload))
