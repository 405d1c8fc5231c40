"""Ingest: new events stored, and the decisions made for each applied, in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.decide import CANCELLED_BY, Cancel, Decision, DigestItem, Send
from ..core.events import Event
from .digests import collect
from .groupcommit import each_in_savepoint
from .outbox import insert_sends, send_row
from .people import upsert_recipients
from .statements import like_prefix
from .transactions import Transactions

_ENDED_BY_CANCEL = like_prefix(CANCELLED_BY)


@dataclass(frozen=True)
class IngestResult:
    accepted: list[str]
    duplicates: list[str]
    scheduled: int
    cancelled: int


class _Pending:
    """The sends and cancels of an ingest, written in bulk.

    Runs of sends and runs of cancels are written together: a send with cancels pending writes
    those first, and a cancel with sends pending writes those first, so each decision sees what
    the decisions before it wrote, as applying them one by one would. Within a run, sends of
    one idempotency key are one send (`outbox.insert_sends`), and cancels commute: each ends the
    pending rows of its own (notification, key), and a second cancel of a key finds nothing.
    """

    def __init__(self, store: Transactions, cur: Any, now: datetime):
        self.store, self.cur = store, cur
        self.at = store.sql.time(now)
        self.sends: list[tuple[Any, ...]] = []
        self.cancels: dict[tuple[str, str | None], Cancel] = {}
        self.scheduled = self.cancelled = 0

    def send(self, s: Send) -> None:
        if self.cancels:
            self.flush()
        self.sends.append(send_row(self.store.sql, self.store.codec, s, self.at))

    def cancel(self, c: Cancel) -> None:
        if self.sends:
            self.flush()
        self.cancels.setdefault((c.notification, c.key), c)

    def ended_by_cancel(self, sends: Sequence[Send]) -> set[tuple[str, str | None]]:
        """The (notification, key) pairs of `sends` that a cancel_on event ended: a reschedule does
        not revive those (as `engine preview`). One query for all of an event's reschedules."""
        if self.cancels:
            self.flush()
        pairs = list(dict.fromkeys((s.notification, s.key) for s in sends))
        binds = [v for n, k in pairs for v in (n, k, _ENDED_BY_CANCEL, _ENDED_BY_CANCEL)]
        self.cur.execute(self.store.sql.ended_by_cancel(len(pairs)), binds)
        return {(n, k) for n, k in self.cur.fetchall()}

    def flush(self) -> None:
        if self.cancels:
            params = [(c.reason, self.at, c.notification, c.key) for c in self.cancels.values()]
            if self.store.sql.pg:  # in a sorted order, so that two cancels of the same keys cannot deadlock
                keys = sorted((c.notification, c.key) for c in self.cancels.values())
                self.cur.executemany(self.store.sql.lock_cancelled, keys)
            self.cur.executemany(self.store.sql.cancel_history, params)
            self.cur.executemany(self.store.sql.cancel, params)
            self.cancelled += self.cur.rowcount
            self.cur.executemany(self.store.sql.cancel_in_flight, params)
            self.cancels = {}
        if self.sends:
            self.scheduled += insert_sends(self.cur, self.store.sql, self.sends)
            self.sends = []


def _duplicates(batch: Sequence[tuple[Event, Sequence[Decision]]], inserted: set[str]) -> list[str]:
    """Every submission of `batch` but the one accepted occurrence of each id."""
    duplicates: list[str] = []
    counted: set[str] = set()
    for event, _ in batch:
        if event.id in inserted and event.id not in counted:
            counted.add(event.id)
        else:
            duplicates.append(event.id)
    return duplicates


class Ingest(Transactions):
    """Events in, decisions applied."""

    def ingest(self, batch: Sequence[tuple[Event, Sequence[Decision]]], now: datetime) -> IngestResult:
        """Store new events and apply the decisions of each, all in one transaction.

        An event id seen before is a duplicate: its decisions are dropped and nothing changes.
        Sends and cancels are written together, in bulk (`_Pending`), in an order that gives the
        same rows as applying every decision one by one.
        """
        if not batch:
            return IngestResult([], [], 0, 0)
        return self._write(lambda cur: self._ingest(cur, batch, now))

    def ingest_many(self, batches: Sequence[Sequence[tuple[Event, Sequence[Decision]]]],
                    now: datetime) -> list[IngestResult | Exception]:
        """`ingest` of several batches (the requests the hook has queued) in one transaction, each
        in a savepoint of its own: a batch that fails is rolled back alone and its error given in its
        place, as SQLAlchemy's. If the transaction itself fails, every batch fails: that is raised."""
        def op(cur: Any) -> list[IngestResult | Exception]:
            ops = [(lambda c, b=batch: self._ingest(c, b, now) if b else IngestResult([], [], 0, 0))
                   for batch in batches]
            return [result if error is None else error  # type: ignore[misc]
                    for result, error in each_in_savepoint(cur, ops, self._wrap)]

        if not batches:
            return []
        return self._write(op)

    def _ingest(self, cur: Any, batch: Sequence[tuple[Event, Sequence[Decision]]], now: datetime) -> IngestResult:
        fresh: dict[str, tuple[Event, Sequence[Decision]]] = {}
        for event, decisions in batch:
            fresh.setdefault(event.id, (event, decisions))
        inserted = self._insert_events(cur, [e for e, _ in fresh.values()], now)
        pending = _Pending(self, cur, now)
        people: dict[str, Mapping[str, Any]] = {}
        for event, decisions in fresh.values():
            if event.id in inserted:
                self._apply(cur, pending, people, event, decisions)
        pending.flush()
        upsert_recipients(cur, self.sql, self.codec, people, now)
        accepted = [i for i in fresh if i in inserted]
        return IngestResult(accepted, _duplicates(batch, inserted), pending.scheduled, pending.cancelled)

    def _insert_events(self, cur: Any, fresh: Sequence[Event], now: datetime) -> set[str]:
        """The ids of `fresh` that were new. ON CONFLICT: an id stored before (or by a concurrent
        request a moment ago) is a duplicate."""
        sql, received, dumps = self.sql, self.sql.time(now), self.codec.dumps
        inserted: set[str] = set()
        for chunk in sql.chunks(fresh):
            cur.execute(sql.insert_events(len(chunk)), [
                v for e in chunk for v in (e.id, e.type, sql.time(e.occurred_at), received, dumps(e.envelope()))])
            inserted.update(r[0] for r in cur.fetchall())
        return inserted

    def _apply(self, cur: Any, pending: _Pending, people: dict[str, Mapping[str, Any]], event: Event,
               decisions: Sequence[Decision]) -> None:
        ended: set[tuple[str, str | None]] | None = None  # asked once for the event's reschedules...
        for d in decisions:
            if isinstance(d, Cancel):
                pending.cancel(d)
                ended = None  # ...and again should a cancel come after one of them
            elif isinstance(d, Send):
                if d.replan:
                    if ended is None:
                        ended = pending.ended_by_cancel([r for r in decisions if isinstance(r, Send) and r.replan])
                    if (d.notification, d.key) in ended:
                        continue
                pending.send(d)
                people[d.recipient_id] = d.recipient
            elif isinstance(d, DigestItem):
                collect(cur, self.sql, self.codec, d, event)
                people[d.recipient_id] = d.recipient

    def schedule_direct(self, send: Send, now: datetime) -> int | None:
        """Store one send made by code (not by an event); None when its idempotency key is taken."""
        def op(cur: Any) -> int | None:
            upsert_recipients(cur, self.sql, self.codec, {send.recipient_id: send.recipient}, now)
            # The id RETURNING gave, not max(id): another transaction may commit a higher id meanwhile.
            cur.execute(self.sql.insert_send_returning_id, send_row(self.sql, self.codec, send, self.sql.time(now)))
            found = cur.fetchone()
            return int(found[0]) if found else None

        return self._write(op)
