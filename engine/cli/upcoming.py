"""`engine upcoming`: scheduled sends within a window, rendered, without sending anything."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from ..clock import utcnow
from ..rules.timeparse import format_instant
from .common import Duration, Span, config_option, runtime
from .tables import Column, format_option, local_time, output_format, print_rows, tz_option

COLUMNS = [Column("send_at"), Column("notification"), Column("recipient"), Column("template"), Column("status"),
           Column("note", text=True)]


@click.command("upcoming")
@click.option("--within", type=Duration(), default="24h", show_default=True, help="A duration: 30m, 24h, 7d...")
@format_option
@tz_option
@config_option
def command(within: Span, fmt: str | None, tz: str | None, config_path: str | None) -> None:
    """List the sends due within the window, with their rendered payloads (in json)."""
    rt = runtime(config_path, migrate=False)  # only `serve`, `worker` and `db upgrade` change the schema
    now = utcnow()
    rows = rt.upcoming(now + within.length, now)
    fmt = output_format(fmt)
    if fmt == "json":  # for programs: UTC, whatever --tz says
        for r in rows:
            click.echo(json.dumps(_json_entry(r), ensure_ascii=False))
        return
    zone = f" (times in {tz})" if tz else " (times in UTC)"
    print_rows(COLUMNS, [_table_row(r, tz) for r in rows], fmt, f"Sends due within {within.text}{zone}")


def _json_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": r["id"], "notification": r["notification"], "recipient": r["recipient_id"],
        "channels": r["channels"], "template": r["template"], "send_at": format_instant(r["send_at"]),
        "status": r["status"], "idempotency_key": r["idempotency_key"], "will_skip": r["will_skip"],
        "digest_items": r["digest_items"], "data": r["data"],
    }


def _table_row(r: Mapping[str, Any], tz: str | None) -> list[str]:
    return [local_time(r["send_at"], tz), r["notification"], r["recipient_id"], r["template"] or "-", r["status"],
            _note(r)]


def _note(r: Mapping[str, Any]) -> str:
    """Why it will be skipped, or what a digest holds so far."""
    if r["will_skip"]:
        return f"will be skipped: {r['will_skip']}"
    return f"{r['digest_items']} item(s) so far" if r["digest_items"] is not None else ""
