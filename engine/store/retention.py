"""Retention: finished rows and old events deleted after their periods, and what is kept past the
events' period stripped of personal data."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .statements import Statements
from .transactions import Transactions

_FINISHED = "status NOT IN ('scheduled', 'queued', 'sending')"
_DELETE_NOTIFICATIONS = f"DELETE FROM notifications WHERE {_FINISHED} AND updated_at < ?"
_DELETE_WEBHOOK_RECEIPTS = "DELETE FROM webhook_receipts WHERE received_at < ?"
_DELETE_DIGESTS = "DELETE FROM digests WHERE status = 'closed' AND send_at < ?"
_DELETE_EVENTS = "DELETE FROM events WHERE received_at < ?"

_REDACT_NOTIFICATIONS = ("UPDATE notifications SET payload = NULL, last_error = NULL "
                         f"WHERE {_FINISHED} AND updated_at < ? AND (payload IS NOT NULL OR last_error IS NOT NULL)")
_DELETE_DIGEST_ITEMS = ("DELETE FROM digest_items WHERE bucket IN "
                        "(SELECT bucket FROM digests WHERE status = 'closed' AND send_at < ?)")
# A recipient no longer named (binds: their row's cutoff, the sends' cutoff): no send to them is
# pending, in flight or changed since the cutoff, and no digest of theirs is collecting.
_GONE = ("SELECT r.id FROM recipients r WHERE r.updated_at < ? AND NOT ("
         "EXISTS (SELECT 1 FROM notifications n WHERE n.recipient_id = r.id "
         "AND (n.status IN ('scheduled', 'queued', 'sending') OR n.updated_at >= ?)) "
         "OR EXISTS (SELECT 1 FROM digests d WHERE d.recipient_id = r.id AND d.status = 'collecting'))")
_DELETE_DEFAULT_PREFERENCES = f"DELETE FROM preferences WHERE recipient_id IN ({_GONE}) AND enabled = ?"
_DELETE_RECIPIENTS = f"DELETE FROM recipients WHERE id IN ({_GONE})"
_DELETE_EARLY_RECEIPTS = "DELETE FROM early_receipts WHERE received_at < ?"


def _count(cur: Any, sql: Statements, statement: str, params: tuple[Any, ...]) -> int:
    cur.execute(sql.native(statement), params)
    return int(cur.rowcount)


def redact_kept(cur: Any, sql: Statements, now: datetime, keep_personal: timedelta) -> dict[str, int]:
    """What retention keeps past `keep_personal` (the events' period) loses its personal data:
    finished sends keep their row (status, times, ids: the statistics) without the rendered message
    or the provider's error text; closed digests keep their row without the items or the recipient;
    a recipient no send, digest or event of that period names is removed, with the preferences
    that only restate a default. Opt-outs stay: honouring them is the law in most places, and they
    hold no contact data."""
    cutoff = sql.time(now - keep_personal)
    return {"notifications redacted": _count(cur, sql, _REDACT_NOTIFICATIONS, (cutoff,)),
            "digest_items": _count(cur, sql, _DELETE_DIGEST_ITEMS, (cutoff,)),
            "preferences": _count(cur, sql, _DELETE_DEFAULT_PREFERENCES, (cutoff, cutoff, True)),
            "recipients": _count(cur, sql, _DELETE_RECIPIENTS, (cutoff, cutoff)),
            "early_receipts": _count(cur, sql, _DELETE_EARLY_RECEIPTS, (cutoff,))}


class Retention(Transactions):
    """Deleting what is past its retention period."""

    def cleanup(self, now: datetime, keep_notifications: timedelta | None,
                keep_events: timedelta | None) -> dict[str, int]:
        """Apply retention: delete finished notifications and events older than their periods; past the
        events' period, what is kept loses its personal data (`redact_kept`)."""
        return self._write(lambda cur: self._clean(cur, now, keep_notifications, keep_events))

    def _clean(self, cur: Any, now: datetime, keep_notifications: timedelta | None,
               keep_events: timedelta | None) -> dict[str, int]:
        sql = self.sql
        removed = {"notifications": 0, "events": 0, "webhook_receipts": 0, "digests": 0}
        if keep_notifications:
            cutoff = (sql.time(now - keep_notifications),)
            removed["notifications"] = _count(cur, sql, _DELETE_NOTIFICATIONS, cutoff)
            removed["webhook_receipts"] = _count(cur, sql, _DELETE_WEBHOOK_RECEIPTS, cutoff)
            removed["digests"] = _count(cur, sql, _DELETE_DIGESTS, cutoff)
        if keep_events:
            removed["events"] = _count(cur, sql, _DELETE_EVENTS, (sql.time(now - keep_events),))
            removed.update(redact_kept(cur, sql, now, keep_events))
        return removed
