"""`engine retry`: send failed (or paused) notifications again, once each, with their idempotency keys."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import click

from ..clock import utcnow
from .common import Instant, config_option, runtime


def _line(row: dict[str, Any]) -> str:
    return (f"#{row['id']} {row['notification']} to {row['recipient_id']}: {row['status']} "
            f"{row['updated_at']:%Y-%m-%d %H:%M:%S}Z ({row['reason'] or 'no reason'}), key {row['idempotency_key']}")


@click.command("retry")
@click.option("--notification", "names", multiple=True, help="Only this notification (repeatable).")
@click.option("--since", type=Instant(ago=True), default=None,
              help="Failed or paused since: a duration back from now (1d) or a time.")
@click.option("--until", type=Instant(ago=True), default=None,
              help="Failed or paused until: a duration back from now or a time.")
@click.option("--id", "ids", multiple=True, type=click.IntRange(min=1), help="Only this row id (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every failed or paused notification.")
@click.option("--dry-run", is_flag=True, help="List what would be retried; change nothing.")
@config_option
def command(names: tuple[str, ...], since: datetime | None, until: datetime | None, ids: tuple[int, ...],
            everything: bool, dry_run: bool, config_path: str | None) -> None:
    """Send failed notifications (and those paused because Courier refused the credentials) again:
    once each, as the same send, with its original idempotency key."""
    from ..store.retries import Selection, retryable

    if not (names or since or until or ids or everything):
        raise click.UsageError("say what to retry: --notification, --since/--until, --id, or --all")
    selection = Selection(names, ids, since, until)
    rt = runtime(config_path, migrate=False)
    _refuse_unknown(names, rt.config.notifications)
    rows = retryable(rt.store, selection)
    _say_not_retried(rt, set(ids) - {r["id"] for r in rows})
    if not rows:
        click.echo("nothing to retry")
        return
    _list(rows, dry_run)
    if not dry_run:
        click.echo(_summary(_deliver(rt, [r["id"] for r in rows])))


def _list(rows: list[dict[str, Any]], dry_run: bool) -> None:
    for row in rows:
        click.echo(("would retry " if dry_run else "retrying ") + _line(row))
    if dry_run:
        click.echo(f"{len(rows)} notification(s) would be sent again (dry run: nothing changed)")


def _refuse_unknown(names: tuple[str, ...], notifications: Iterable[str]) -> None:
    unknown = sorted(set(names) - set(notifications))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)}: not a notification of the rules in force",
                                 param_hint="--notification")


def _say_not_retried(rt: Any, ids: set[int]) -> None:
    """Why each id asked for is not retried: its status."""
    for missing in sorted(ids):
        click.echo(f"#{missing}: not retried: {rt.store.status(missing)} (only failed or paused sends are)", err=True)


def _deliver(rt: Any, row_ids: list[int]) -> Counter[str]:
    """Reschedule, then deliver each row here (a running engine may take one first: that is fine)."""
    from ..store.retries import reschedule

    done: Counter[str] = Counter()
    for row_id, state in reschedule(rt.store, row_ids, utcnow()).items():
        if state != "scheduled":
            click.echo(f"#{row_id}: {state}", err=True)
            done[state] += 1
            continue
        queued = not rt.store.queue_due(utcnow(), ids=[row_id])
        result = "handed to a running engine" if queued else rt.deliver(row_id)
        click.echo(f"#{row_id}: {result}")
        done[result] += 1
    return done


def _summary(done: Counter[str]) -> str:
    return "retried: " + ", ".join(f"{count} {state}" for state, count in sorted(done.items()))
