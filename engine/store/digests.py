"""Digests: items collected per recipient and period, then closed into one send."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..core.decide import DigestItem, Send
from ..core.events import Event
from .codec import Codec
from .outbox import insert_sends, send_row
from .statements import Statements
from .transactions import Transactions


def collect(cur: Any, sql: Statements, codec: Codec, items: Sequence[tuple[DigestItem, Event]]) -> None:
    """Add each event's item to its period's digest (opened by the first item); an item for a
    period whose digest already went out is dropped. A batch's item joins the batch of its key
    still collecting at its time, or opens one. Items in order, written together, one statement
    per step, up to a second item of one batch key: that one looks for its batch after the
    items before it are written (the others' writes cannot change what an item finds: a batch
    key's buckets are its own)."""
    group: list[tuple[DigestItem, Event]] = []
    keys: set[str] = set()
    for d, event in items:
        if d.batch is not None:
            if d.batch in keys:
                _add_items(cur, sql, codec, [(_joined(cur, sql, item), e) for item, e in group])
                group, keys = [], set()
            keys.add(d.batch)
        group.append((d, event))
    _add_items(cur, sql, codec, [(_joined(cur, sql, item), e) for item, e in group])


def _joined(cur: Any, sql: Statements, d: DigestItem) -> DigestItem:
    """A batch's item in the bucket of its batch still collecting at its time, if there is one."""
    if d.batch is None:
        return d
    cur.execute(sql.collecting_batch, sql.batch_binds(d.notification, d.recipient_id, d.batch, d.period_start))
    found = cur.fetchone()
    return d if found is None else replace(d, bucket=found[0])


def _add_items(cur: Any, sql: Statements, codec: Codec, items: Sequence[tuple[DigestItem, Event]]) -> None:
    """Items whose bucket is known: each bucket opened unless it exists, the items of those still collecting added."""
    if not items:
        return
    first: dict[str, DigestItem] = {}
    for d, _ in items:
        first.setdefault(d.bucket, d)  # the first item of a bucket opens it
    cur.executemany(sql.open_digest, [(d.bucket, d.notification, d.recipient_id, codec.dumps(dict(d.recipient)),
                                       sql.time(d.period_start), sql.time(d.period_end), sql.time(d.send_at))
                                      for d in first.values()])
    collecting: set[str] = set()
    for chunk in sql.chunks(list(first)):
        cur.execute(sql.digest_statuses(len(chunk)), chunk)
        collecting.update(b for b, status in cur.fetchall() if status == "collecting")
    cur.executemany(sql.add_digest_item, [(d.bucket, d.event_id, codec.dumps(dict(d.item)), sql.time(e.occurred_at))
                                          for d, e in items if d.bucket in collecting])


class Digests(Transactions):
    """The digests due, and closing each into its send."""

    def due_digests(self, now: datetime, limit: int | None = 200) -> list[dict[str, Any]]:
        """The digests still collecting whose send time has come by `now`, earliest first, with their items."""
        sql = self.sql

        def op(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql.due_digests, (sql.time(now), 2 ** 62 if limit is None else limit))
            return [self._due(cur, *row) for row in cur.fetchall()]

        return self._read(op)

    def _due(self, cur: Any, bucket: str, notification: str, recipient_id: str, recipient: str, start: Any, end: Any,
             send_at: Any) -> dict[str, Any]:
        sql, loads = self.sql, self.codec.loads
        cur.execute(sql.digest_items, (bucket,))
        return {"bucket": bucket, "notification": notification, "recipient_id": recipient_id,
                "recipient": loads(recipient), "items": [loads(i) for (i,) in cur.fetchall()],
                "period_start": sql.read_time(start), "period_end": sql.read_time(end),
                "send_at": sql.read_time(send_at), "status": "collecting"}

    def close_digest(self, bucket: str, send: Send | None, now: datetime, items: int | None = None) -> bool:
        """Close a digest and schedule its one send (None: no send), atomically; False if another
        process did, or if items arrived since `send` was rendered from `items` of them (the next
        sweep renders again)."""
        sql = self.sql

        def op(cur: Any) -> bool:
            if items is not None:
                cur.execute(sql.count_digest_items, (bucket,))
                if cur.fetchone()[0] != items:
                    return False
            cur.execute(sql.close_digest, (bucket,))
            if not cur.rowcount:
                return False
            if send is not None:
                insert_sends(cur, sql, [send_row(sql, self.codec, send, sql.time(now))])
            return True

        return self._write(op)
