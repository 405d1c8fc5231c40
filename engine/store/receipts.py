"""Courier's delivery statuses (webhooks): applied to their send, or kept until the send is recorded.

A status webhook can overtake the commit of the send it reports on (Courier answers the send, then
calls the webhook, before the worker has written the request id). Courier retries a webhook only
after a network error, a timeout, 408, 429 or 5xx, so such a status is kept in `early_receipts`
and applied in the transaction that records the send (`on_sent`), or dropped after `KEEP_EARLY`.

On PostgreSQL both sides take one advisory lock per request id: without it, a webhook that finds
no send and a send that finds no early status could commit at the same moment and miss each other.
(SQLite runs one writer at a time.)

Everything here runs on the driver's cursor of a write transaction (`Store._write`), with the
store's `Statements` (`sql`) for the dialect's placeholders and times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

DELIVERY_RANK = {"delivered": 1, "opened": 2, "clicked": 3, "undeliverable": 4}
KEEP_EARLY = timedelta(hours=24)  # Courier retries a webhook for about a day: a status older than that has no send coming

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(?, 7))"  # seed 7: not the recipients' locks (seed 0)
_ROW = "SELECT id, delivery_status FROM notifications WHERE request_id = ?"
_RECEIPT = ("INSERT INTO webhook_receipts (message_id, status, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING message_id")
_DELIVERED = "UPDATE notifications SET delivery_status = ?, updated_at = ? WHERE id = ?"
_HISTORY = "INSERT INTO notification_history (notification_id, status, reason, at) VALUES (?, ?, ?, ?)"
_EXPIRE = "DELETE FROM early_receipts WHERE received_at < ?"
_KEEP = "INSERT INTO early_receipts (message_id, status, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_EARLY = "SELECT status FROM early_receipts WHERE message_id = ?"
_FORGET = "DELETE FROM early_receipts WHERE message_id = ?"


def _run(cur: Any, sql: Any, statement: str, params: tuple[Any, ...]) -> None:
    cur.execute(sql._text(statement), params)


def _lock(cur: Any, sql: Any, request_id: str) -> None:
    if sql.pg:
        _run(cur, sql, _LOCK, (request_id,))


def record(cur: Any, sql: Any, request_id: str, status: str, now: datetime) -> str:
    """Apply a status to the send with this request id: 'applied', 'duplicate', 'stale', or
    'pending' when no send has it yet (the status is kept, and applied when the send is recorded)."""
    _lock(cur, sql, request_id)
    _run(cur, sql, _ROW, (request_id,))
    row = cur.fetchone()
    if row is None:
        _run(cur, sql, _EXPIRE, (sql.time(now - KEEP_EARLY),))
        _run(cur, sql, _KEEP, (request_id, status, sql.time(now)))
        return "pending"
    return _apply(cur, sql, row[0], row[1], request_id, status, now)


def on_sent(cur: Any, sql: Any, row_id: int, request_id: str, now: datetime) -> int:
    """In the transaction that records a send with `request_id`: apply the statuses that came
    before it (furthest last); returns how many there were."""
    _lock(cur, sql, request_id)
    _run(cur, sql, _EARLY, (request_id,))
    early = sorted((s for (s,) in cur.fetchall()), key=lambda s: DELIVERY_RANK.get(s, 0))
    if not early:
        return 0
    current: str | None = None
    for status in early:
        if _apply(cur, sql, row_id, current, request_id, status, now) == "applied":
            current = status
    _run(cur, sql, _FORGET, (request_id,))
    return len(early)


def _apply(cur: Any, sql: Any, row_id: int, current: str | None, request_id: str, status: str, now: datetime) -> str:
    at = sql.time(now)
    _run(cur, sql, _RECEIPT, (request_id, status, at))
    if cur.fetchone() is None:
        return "duplicate"
    # Statuses may arrive out of order (OPENED before DELIVERED): a delivery never moves backwards.
    if DELIVERY_RANK.get(current or "", 0) >= DELIVERY_RANK[status] and status != "undeliverable":
        _run(cur, sql, _HISTORY, (row_id, status, "out of order", at))
        return "stale"
    _run(cur, sql, _DELIVERED, (status, at, row_id))
    _run(cur, sql, _HISTORY, (row_id, status, None, at))
    return "applied"
