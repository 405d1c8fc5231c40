"""Reads: the rows as people page through them, a row's history, statistics, and what falls due next."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from . import tables
from .transactions import Transactions, utc

_n = tables.notifications.c
_LISTED = (_n.id, _n.notification, _n.recipient_id, _n.event_id, _n.key, _n.category, _n.channels, _n.template_key,
           _n.template, _n.variant, _n.idempotency_key, _n.send_at, _n.status, _n.reason, _n.attempts, _n.sent_at,
           _n.request_id, _n.delivery_status, _n.last_error, _n.created_at)


class Reads(Transactions):
    """What the store holds, read."""

    def notifications(self, *, status: Sequence[str] | None = None, since: datetime | None = None,
                      until: datetime | None = None, recipient_id: str | None = None, notification: str | None = None,
                      limit: int | None = 100, with_payload: bool = False,
                      newest_first: bool = False) -> list[dict[str, Any]]:
        """Notification rows that match every filter given (a send time from `since` to `until`),
        by send time (or newest first), at most `limit` (None: all); `with_payload` adds each row's
        Courier message (`message`)."""
        n = _n
        stmt = select(*_LISTED, *([n.payload] if with_payload else []))
        wanted = [n.recipient_id == recipient_id if recipient_id else None,
                  n.notification == notification if notification else None,
                  n.status.in_(list(status)) if status else None,
                  n.send_at >= since if since else None, n.send_at <= until if until else None]
        stmt = stmt.where(*[w for w in wanted if w is not None])
        order = (n.send_at.desc(), n.id.desc()) if newest_first else (n.send_at, n.notification, n.recipient_id, n.id)
        with self.reader.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt.order_by(*order).limit(limit)).mappings()]
        for r in rows:
            for k in ("send_at", "sent_at", "created_at"):
                r[k] = utc(r[k])
            if with_payload:
                r["message"] = self.codec.loads(r.pop("payload"))
        return rows

    def status(self, notification_id: int) -> str:
        """A row's status ('unknown' for an id that does not exist)."""
        with self.reader.connect() as conn:
            found = conn.scalar(select(_n.status).where(_n.id == notification_id))
        return str(found) if found is not None else "unknown"

    def next_due(self) -> datetime | None:
        """The earliest time a scheduled send or a collecting digest falls due (None: nothing waits)."""
        def op(cur: Any) -> datetime | None:
            found: list[datetime | None] = []
            for statement in (self.sql.next_send, self.sql.next_digest):
                cur.execute(statement)
                found.append(self.sql.read_time(cur.fetchone()[0]))
            return min((t for t in found if t is not None), default=None)

        return self._read(op)

    def rows(self) -> list[dict[str, Any]]:
        """Every notification row, oldest first, with its Courier message (`message`): what a whole
        run recorded, read in one pass (`notifications` pages through rows for people)."""
        sql, loads = self.sql, self.codec.loads
        names = ("id", "notification", "recipient_id", "event_id", "key", "category", "channels", "template_key",
                 "template", "variant", "idempotency_key", "send_at", "status", "reason", "message", "due_at")

        def op(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql.all_rows)
            out: list[dict[str, Any]] = []
            for row in cur.fetchall():
                found = dict(zip(names, row, strict=True))
                found["channels"] = sql.read_channels(found["channels"])
                found["send_at"] = sql.read_time(found["send_at"])
                found["due_at"] = sql.read_time(found["due_at"])
                found["message"] = loads(found["message"]) if found["message"] else None
                out.append(found)
            return out

        return self._read(op)

    def history(self, notification_id: int) -> list[dict[str, Any]]:
        """Every state of a row, oldest first; [] for an unknown id.

        The first entry is the row's creation, read from the row itself: `scheduled`, or `skipped`
        with its reason when it was created skipped (a row that is skipped and has no later
        change). The history table holds the changes after it."""
        n, h = _n, tables.history.c
        with self.reader.connect() as conn:
            row = conn.execute(select(n.status, n.reason, n.created_at).where(n.id == notification_id)).first()
            if row is None:
                return []
            changes = [{**r, "at": utc(r["at"])} for r in conn.execute(
                select(h.status, h.reason, h.at).where(h.notification_id == notification_id).order_by(h.id)).mappings()]
        created_skipped = row.status == "skipped" and not changes
        created = {"status": row.status if created_skipped else "scheduled",
                   "reason": row.reason if created_skipped else None, "at": utc(row.created_at)}
        return [created, *changes]

    def stats(self, since: datetime) -> list[dict[str, Any]]:
        n = _n
        with self.reader.connect() as conn:
            rows = conn.execute(select(n.notification, n.variant, n.status, n.delivery_status, func.count())
                                .where(n.created_at >= since)
                                .group_by(n.notification, n.variant, n.status, n.delivery_status)).all()
        return [{"notification": a, "variant": v, "status": b, "delivery_status": c, "count": d}
                for a, v, b, c, d in rows]

    def engagement(self, since: datetime) -> list[dict[str, Any]]:
        """Per notification, variant and engagement mark (opened, clicked, read): how many of the
        sends created since `since` Courier reported it for. Every reported status is in a send's
        history, even one that came after a further one (a read after a click), so each counts."""
        n, h = _n, tables.history.c
        marks = ("opened", "clicked", "read")
        with self.reader.connect() as conn:
            rows = conn.execute(select(n.notification, n.variant, h.status, func.count(func.distinct(n.id)))
                                .join(tables.history, h.notification_id == n.id)
                                .where(n.created_at >= since, h.status.in_(marks))
                                .group_by(n.notification, n.variant, h.status)).all()
        return [{"notification": a, "variant": v, "mark": m, "count": c} for a, v, m, c in rows]

    def unsubscribes(self, since: datetime) -> dict[str, int]:
        """How many unsubscribes turned each scope (a notification id, or category:<name>) off since `since`."""
        u = tables.unsubscribes.c
        with self.reader.connect() as conn:
            rows = conn.execute(select(u.scope, func.count()).where(u.at >= since).group_by(u.scope)).all()
        return {str(s): int(c) for s, c in rows}

    def counts_by_status(self) -> dict[str, int]:
        n = _n
        with self.reader.connect() as conn:
            return {str(s): int(c) for s, c in conn.execute(select(n.status, func.count()).group_by(n.status))}

    def event_count(self) -> int:
        with self.reader.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(tables.events)) or 0)
