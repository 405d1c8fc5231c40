"""Sending failed or paused notifications again (`engine retry`), once each, as the same send.

A retried row is the row itself, set `scheduled` and due now: its idempotency key, message and
history stay, so Courier sees the Idempotency-Key of the first attempt, and a row that went out
after all (a failure recorded after Courier accepted it) is not sent twice. Its attempts are not
reset: they are the claim's fencing token (`repository.Claimed`), and `engine retry` promises one
more try, not a new budget of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from .repository import PAUSED, Store, utc
from .statements import like_prefix
from .tables import notifications

RETRIED = "retry requested (engine retry)"
_n = notifications.c
RETRYABLE = or_(_n.status == "failed", and_(_n.status == "scheduled", _n.reason.like(f"{PAUSED}:%")))
# RETRYABLE in SQL (binds: the reason's LIKE pattern, `_PAUSED_LIKE`)
_RESCHEDULE = ("UPDATE notifications SET status = 'scheduled', send_at = ?, reason = ?, cancel_reason = NULL, "
               "updated_at = ? WHERE id = ? "
               "AND (status = 'failed' OR (status = 'scheduled' AND reason LIKE ? ESCAPE '/'))")
_PAUSED_LIKE = like_prefix(f"{PAUSED}:")


@dataclass(frozen=True)
class Selection:
    """Which rows to retry: every condition given must hold (`notifications` and `ids`: any of them).
    The window is on the time the row failed or was paused (its last change)."""

    notifications: Sequence[str] = ()
    ids: Sequence[int] = ()
    since: datetime | None = None
    until: datetime | None = None

    def where(self) -> Any:
        conditions = [RETRYABLE]
        if self.notifications:
            conditions.append(_n.notification.in_(list(self.notifications)))
        if self.ids:
            conditions.append(_n.id.in_(list(self.ids)))
        if self.since is not None:
            conditions.append(_n.updated_at >= self.since)
        if self.until is not None:
            conditions.append(_n.updated_at <= self.until)
        return and_(*conditions)


def retryable(store: Store, selection: Selection, limit: int = 100_000) -> list[dict[str, Any]]:
    """The failed and paused rows the selection names, oldest change first."""
    stmt = (select(_n.id, _n.notification, _n.recipient_id, _n.status, _n.reason, _n.attempts, _n.idempotency_key,
                   _n.updated_at).where(selection.where()).order_by(_n.updated_at, _n.id).limit(limit))
    with store.reader.connect() as conn:
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
    for r in rows:
        r["updated_at"] = utc(r["updated_at"])
    return rows


def reschedule(store: Store, row_ids: Sequence[int], now: datetime) -> dict[int, str]:
    """Make each row due now, if it is still failed or paused: 'scheduled'; 'key taken' when another
    live row has its idempotency key now (retrying would be a second send); 'not retryable' when it
    changed meanwhile (another retry, a worker). One transaction, a savepoint per row."""
    return store._write(lambda cur: {row_id: _reschedule(store, cur, row_id, now) for row_id in row_ids})


def _reschedule(store: Store, cur: Any, row_id: int, now: datetime) -> str:
    sql, at = store.sql, store.sql.time(now)
    cur.execute("SAVEPOINT retry_row")
    try:
        cur.execute(sql.native(_RESCHEDULE), (at, RETRIED, at, row_id, _PAUSED_LIKE))
        done = cur.rowcount
        if done:
            cur.execute(sql.add_history, (row_id, "scheduled", RETRIED, at))
    except store.engine.dialect.loaded_dbapi.IntegrityError:  # the unique index of live idempotency keys
        cur.execute("ROLLBACK TO retry_row")
        found = "key taken"
    else:
        found = "scheduled" if done else "not retryable"
    cur.execute("RELEASE retry_row")
    return found
