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
from collections.abc import Mapping
from importlib import resources
from typing import Any

# The page is a file of its own so that editors see HTML, CSS and JavaScript; read once, at import.
PAGE = (resources.files("engine") / "timeline.html").read_text(encoding="utf-8")


def render_html(rows: list[dict[str, Any]], people: Mapping[str, Mapping[str, Any]], title: str,
                tz: str | None = None) -> str:
    """The page for preview rows (their JSON form). `people` maps a recipient id to what the events
    said of that person (`name`, `timezone`); a name the events did not give is not shown."""
    values = {"__TITLE__": html.escape(title), "__TZ__": _script_json(tz or "UTC"),
              "__PEOPLE__": _script_json(_shown(people)), "__DATA__": _script_json(rows)}
    return re.sub("__(TITLE|TZ|PEOPLE|DATA)__", lambda m: values[m.group(0)], PAGE)  # one pass: data is never re-read


def _shown(people: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """What the page shows of each person: the name and zone the events gave, when text."""
    return {pid: {k: p[k] for k in ("name", "timezone") if isinstance(p.get(k), str) and p.get(k)}
            for pid, p in people.items()}


def _script_json(value: Any) -> str:
    # Inside <script>, "</" could end the element and "<!--" open a comment; "<" only occurs in
    # JSON strings, where its escape means the same.
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
