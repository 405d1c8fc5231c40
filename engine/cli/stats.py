"""`engine stats`: counts by notification and status, delivery and failure rates."""

from __future__ import annotations

import json
from collections import defaultdict

import click

from ..rules.timeparse import parse_duration
from ..clock import utcnow
from .common import config_option, runtime

DELIVERED = ("delivered", "opened", "clicked")


@click.command("stats")
@click.option("--since", default="7d", show_default=True, help="A duration back from now.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@config_option
def command(since: str, fmt: str, config_path: str | None) -> None:
    """Counts by notification type and status, with delivery and failure rates."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    rt = runtime(config_path, migrate=False)  # only `serve`, `worker` and `db upgrade` change the schema
    # One line per notification, and per A/B variant where a rule declares variants.
    per: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rt.store.stats(utcnow() - window):
        counts = per[(row["notification"], row.get("variant") or "")]
        counts[row["status"]] += row["count"]
        if row["delivery_status"]:
            counts[row["delivery_status"]] += row["count"]
    summary = []
    for name, variant in sorted(per):
        c = per[(name, variant)]
        attempted = c["sent"] + c["failed"]
        summary.append({
            "notification": name, "variant": variant or None, **dict(c),
            # A row keeps only its furthest delivery status: an opened or clicked message was delivered too.
            "delivery_rate": round(sum(c[d] for d in DELIVERED) / c["sent"], 4) if c["sent"] else None,
            "failure_rate": round(c["failed"] / attempted, 4) if attempted else None,
        })
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    cols = ["scheduled", "sent", "delivered", "failed", "cancelled", "skipped"]
    table = Table(title=f"Notifications since {since} ago")
    table.add_column("notification")
    table.add_column("variant")
    for col in cols + ["delivery", "failure"]:
        table.add_column(col, justify="right")
    for s in summary:
        rate = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
        table.add_row(s["notification"], s["variant"] or "", *[str(s.get(c, 0)) for c in cols], rate(s["delivery_rate"]), rate(s["failure_rate"]))
    Console().print(table)
