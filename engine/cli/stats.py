"""`engine stats`: counts by notification and status, delivery and failure rates."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterable

import click

from ..clock import utcnow
from .common import Duration, Span, config_option, runtime
from .tables import Column, format_option, local_time, output_format, print_rows, rate, tz_option

DELIVERED = ("delivered", "opened", "clicked")
COUNTED = ("scheduled", "sent", "delivered", "failed", "cancelled", "skipped")
COLUMNS = [Column("notification"), Column("variant"), *(Column(c, numeric=True) for c in COUNTED),
           Column("delivery", numeric=True), Column("failure", numeric=True)]


@click.command("stats")
@click.option("--since", type=Duration(), default="7d", show_default=True, help="A duration back from now.")
@format_option
@tz_option
@config_option
def command(since: Span, fmt: str | None, tz: str | None, config_path: str | None) -> None:
    """Counts by notification type and status, with delivery and failure rates.

    A rate is n/a when there is nothing to measure it on: no send yet, or (for delivery) no
    delivery status reported by Courier's webhooks for any of its sends."""
    rt = runtime(config_path, migrate=False)  # only `serve`, `worker` and `db upgrade` change the schema
    start = utcnow() - since.length
    summary = summarise(rt.store.stats(start))
    fmt = output_format(fmt)
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    print_rows(COLUMNS, table_rows(summary), fmt, f"Notifications since {local_time(start.replace(microsecond=0), tz)} ({since.text} ago)")


def table_rows(summary: list[dict[str, Any]]) -> list[list[str]]:
    return [[s["notification"], s["variant"] or "", *(str(s.get(c, 0)) for c in COUNTED),
             rate(s["delivery_rate"]), rate(s["failure_rate"])] for s in summary]


def summarise(stats: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per notification, and per A/B variant where a rule declares variants."""
    per: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reported: dict[tuple[str, str], int] = defaultdict(int)  # sends with a delivery status from a webhook
    for row in stats:
        line = (row["notification"], row.get("variant") or "")
        per[line][row["status"]] += row["count"]
        if row["delivery_status"]:
            per[line][row["delivery_status"]] += row["count"]
            reported[line] += row["count"]
    summary = []
    for name, variant in sorted(per):
        c = per[(name, variant)]
        attempted = c["sent"] + c["failed"]
        summary.append({
            "notification": name, "variant": variant or None, **dict(c),
            # A row keeps only its furthest delivery status: an opened or clicked message was delivered too.
            "delivery_rate": round(sum(c[d] for d in DELIVERED) / c["sent"], 4)
            if c["sent"] and reported[(name, variant)] else None,
            "failure_rate": round(c["failed"] / attempted, 4) if attempted else None,
        })
    return summary
