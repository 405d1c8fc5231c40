"""Receipts: Courier's delivery statuses (webhooks), and the signatures of signed requests.

A delivery status is applied to its send, or kept until the send is recorded.

A status webhook can overtake the commit of the send it reports on (Courier answers the send, then
calls the webhook, before the worker has written the request id). Courier retries a webhook only
after a network error, a timeout, 408, 429 or 5xx, so such a status is kept in `early_receipts`
and applied in the transaction that records the send (`on_sent`), or dropped after `KEEP_EARLY`.

On PostgreSQL both sides take one advisory lock per request id: without it, a webhook that finds
no send and a send that finds no early status could commit at the same moment and miss each other.
(SQLite runs one writer at a time.)

The functions here run on the driver's cursor of a write transaction (`Transactions._write`), with
the store's `Statements` (`sql`) for the dialect's placeholders and times.

A signed request's signature is recorded once within the replay window, with the request it was
used for and, once it has one, the answer it got: a retry of that request gets the answer again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from .statements import Statements
from .tables import signature_receipts
from .transactions import Transactions

# An inbox message is read where an email is opened: the same step of engagement.
DELIVERY_RANK = {"delivered": 1, "opened": 2, "read": 2, "clicked": 3, "undeliverable": 4}
# Courier retries a webhook for about a day: a status older than that has no send coming.
KEEP_EARLY = timedelta(hours=24)

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(?, 7))"  # seed 7: not the recipients' locks (seed 0)
_ROW = "SELECT id, delivery_status FROM notifications WHERE request_id = ?"
_RECEIPT = ("INSERT INTO webhook_receipts (message_id, status, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING message_id")
_DELIVERED = "UPDATE notifications SET delivery_status = ?, updated_at = ? WHERE id = ?"
_HISTORY = "INSERT INTO notification_history (notification_id, status, reason, at) VALUES (?, ?, ?, ?)"
_EXPIRE = "DELETE FROM early_receipts WHERE received_at < ?"
_KEEP = "INSERT INTO early_receipts (message_id, status, received_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_EARLY = "SELECT status FROM early_receipts WHERE message_id = ?"
# Whether a status waits for the send whose `notifications` row is being changed (in a RETURNING).
EARLY_WAITING = "EXISTS (SELECT 1 FROM early_receipts WHERE message_id = notifications.request_id)"
_FORGET = "DELETE FROM early_receipts WHERE message_id = ?"

_SIGNATURES_EXPIRE = "DELETE FROM signature_receipts WHERE seen_at < ?"
_SIGNATURE_NEW = ("INSERT INTO signature_receipts (signature, seen_at, request) VALUES (?, ?, ?) "
                  "ON CONFLICT DO NOTHING RETURNING signature")
_SIGNATURE = "SELECT request, answer FROM signature_receipts WHERE signature = ?"
_SIGNATURE_ANSWER = "UPDATE signature_receipts SET answer = ? WHERE signature = ?"
_SIGNATURE_FORGET = "DELETE FROM signature_receipts WHERE signature = ?"


def _run(cur: Any, sql: Statements, statement: str, params: tuple[Any, ...]) -> None:
    cur.execute(sql.native(statement), params)


def _lock(cur: Any, sql: Statements, request_id: str) -> None:
    if sql.pg:
        _run(cur, sql, _LOCK, (request_id,))


def record(cur: Any, sql: Statements, request_id: str, status: str, now: datetime) -> str:
    """Apply a status to the send with this request id: 'applied', 'duplicate', 'stale', or
    'pending' when no send has it yet (the status is kept, and applied when the send is recorded)."""
    _lock(cur, sql, request_id)
    _run(cur, sql, _ROW, (request_id,))
    row = cur.fetchone()
    if row is None:
        _run(cur, sql, _EXPIRE, (sql.time(now - KEEP_EARLY),))
        _run(cur, sql, _KEEP, (request_id, status, sql.time(now)))
        return "pending"
    return _apply(cur, sql, int(row[0]), row[1], request_id, status, now)


def on_sent(cur: Any, sql: Statements, row_id: int, request_id: str, now: datetime) -> int:
    """In the transaction that records a send with `request_id`: apply the statuses that came
    before it (furthest last); returns how many there were. On SQLite the statement recording the
    send tells whether there are any (`EARLY_WAITING`), and this runs only when there are."""
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


def _apply(cur: Any, sql: Statements, row_id: int, current: str | None, request_id: str, status: str,
           now: datetime) -> str:
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


@dataclass(frozen=True)
class Receipt:
    """A signature recorded before: the request it was used for, and its answer (None while that
    request is still being stored)."""

    request: str | None
    answer: str | None


class Receipts(Transactions):
    """Delivery statuses from Courier, and the signatures of signed requests."""

    def record_delivery(self, request_id: str, status: str, now: datetime) -> str:
        """Apply a delivery status from Courier: 'applied', 'duplicate', 'stale', or 'pending' when no
        send has that request id yet (the webhook overtook the commit of its send): the status is
        kept and applied when the send is recorded, or dropped after a day (`KEEP_EARLY`)."""
        return self._write(lambda cur: record(cur, self.sql, request_id, status, now))

    def signature_seen(self, signature: str, now: datetime, window: timedelta) -> bool:
        """Whether a request signature was used within `window`."""
        s = signature_receipts.c
        with self.reader.connect() as conn:
            found = conn.scalar(select(s.signature).where(s.signature == signature[:128], s.seen_at >= now - window))
        return found is not None

    def remember_signature(self, signature: str, now: datetime, window: timedelta) -> bool:
        """Record a request signature; False when it was seen within `window` (a replay)."""
        return self._write(lambda cur: self._record_signature(cur, signature, None, now, window))

    def claim_signature(self, signature: str, request: str, now: datetime, window: timedelta) -> Receipt | None:
        """Record a signature for a request (a digest of its body); None when this call recorded it,
        else the receipt recorded within `window`. The insert is the check: of concurrent copies,
        exactly one records it, on every store and across processes."""
        def op(cur: Any) -> Receipt | None:
            if self._record_signature(cur, signature, request, now, window):
                return None
            _run(cur, self.sql, _SIGNATURE, (signature[:128],))
            found = cur.fetchone()
            # Gone between the two statements: its request failed and released it; the caller claims again.
            return Receipt(found[0], found[1]) if found is not None else Receipt(request, None)

        return self._write(op)

    def _record_signature(self, cur: Any, signature: str, request: str | None, now: datetime,
                          window: timedelta) -> bool:
        """Forget the signatures older than `window`, then record this one: False when it is there already."""
        _run(cur, self.sql, _SIGNATURES_EXPIRE, (self.sql.time(now - window),))
        _run(cur, self.sql, _SIGNATURE_NEW, (signature[:128], self.sql.time(now), request))
        return cur.fetchone() is not None

    def signature_receipt(self, signature: str) -> Receipt | None:
        s = signature_receipts.c
        with self.reader.connect() as conn:
            found = conn.execute(select(s.request, s.answer).where(s.signature == signature[:128])).first()
        return Receipt(found[0], found[1]) if found is not None else None

    def answer_signature(self, signature: str, answer: str) -> None:
        """Keep the answer a signed request got, for its retries."""
        self._write(lambda cur: _run(cur, self.sql, _SIGNATURE_ANSWER, (answer, signature[:128])))

    def forget_signature(self, signature: str) -> None:
        """Forget a recorded signature (the request that recorded it failed): its retry may go through."""
        self._write(lambda cur: _run(cur, self.sql, _SIGNATURE_FORGET, (signature[:128],)))
