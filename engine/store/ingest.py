"""Ingest: new events stored, and the decisions made for each applied, in one transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..core.decide import CANCELLED_BY, Cancel, Decision, DigestItem, Send
from ..core.events import Event
from .digests import collect
from .groupcommit import attempt, each_in_savepoint
from .outbox import insert_sends, send_row
from .people import upsert_recipients
from .transactions import Transactions


@dataclass(frozen=True)
class IngestResult:
    accepted: list[str]
    duplicates: list[str]
    scheduled: int
    cancelled: int


class _Unattributed(Exception):
    """The sends of several requests, written together, collided on idempotency keys: which
    request's send was the one stored is not known, so the group is written request by request."""


class _Pending:
    """The sends, cancels and digest items of an ingest, written in bulk.

    Runs of sends and runs of cancels are written together: a send with cancels pending writes
    those first, and a cancel with sends pending writes those first, so each decision sees what
    the decisions before it wrote, as applying them one by one would. Within a run, sends of
    one idempotency key are one send (`outbox.insert_sends`), and cancels commute: each ends the
    pending rows of its own (notification, key), and a second cancel of a key finds nothing.
    Several requests written together (`owner`: the one whose decisions are being applied) share
    the runs; each request's counts are its own.
    """

    def __init__(self, store: Transactions, cur: Any, now: datetime, requests: int = 1):
        self.store, self.cur = store, cur
        self.at = store.sql.time(now)
        self.owner = 0
        self.sends: list[tuple[Any, ...]] = []
        self.owners: list[int] = []
        self.cancels: dict[tuple[str, str | None], tuple[int, Cancel]] = {}
        self.digests: list[tuple[DigestItem, Event]] = []
        self.scheduled, self.cancelled = [0] * requests, [0] * requests

    def send(self, s: Send) -> None:
        if self.cancels:
            self.flush()
        self.sends.append(send_row(self.store.sql, self.store.codec, s, self.at))
        self.owners.append(self.owner)

    def cancel(self, c: Cancel) -> None:
        if self.sends:
            self.flush()
        self.cancels.setdefault((c.notification, c.key), (self.owner, c))

    def ended_by_cancel(self, sends: Sequence[Send]) -> set[tuple[str, str | None]]:
        """The (notification, key) pairs of `sends` that a cancel_on event ended: a reschedule does
        not revive those (as `engine preview`). One query for all of an event's reschedules."""
        if self.cancels:
            self.flush()
        pairs = list(dict.fromkeys((s.notification, s.key) for s in sends))
        binds = [v for n, k in pairs for v in (n, k, CANCELLED_BY, CANCELLED_BY)]
        self.cur.execute(self.store.sql.ended_by_cancel(len(pairs)), binds)
        return {(n, k) for n, k in self.cur.fetchall()}

    def flush(self) -> None:
        if self.cancels:
            self._write_cancels()
        if self.sends:
            self._write_sends()

    def finish(self) -> None:
        self.flush()
        collect(self.cur, self.store.sql, self.store.codec, self.digests)

    def _write_cancels(self) -> None:
        sql, cur = self.store.sql, self.cur
        if sql.pg:  # in a sorted order, so that two cancels of the same keys cannot deadlock
            cur.executemany(sql.lock_cancelled, sorted(self.cancels))
        found = self._cancellable(list(self.cancels))
        by_owner: dict[int, list[tuple[Any, ...]]] = {}
        for pair, (owner, c) in self.cancels.items():
            if pair in found:
                by_owner.setdefault(owner, []).append((c.reason, self.at, c.notification, c.key))
        for owner, params in by_owner.items():
            cur.executemany(sql.cancel_history, params)
            cur.executemany(sql.cancel, params)
            self.cancelled[owner] += cur.rowcount
            cur.executemany(sql.cancel_in_flight, params)
        self.cancels = {}

    def _cancellable(self, pairs: Sequence[tuple[str, str | None]]) -> set[tuple[str, str | None]]:
        """The pairs of `pairs` with rows their cancel would end or reach: asked in one query, as
        most cancels find none (each would run its three statements for nothing)."""
        sql, found = self.store.sql, set[tuple[str, str | None]]()
        for chunk in sql.chunks(pairs, sql.UNION_PARTS):
            self.cur.execute(sql.cancellable(len(chunk)), [v for pair in chunk for v in pair])
            found.update((n, k) for n, k in self.cur.fetchall())
        return found

    def _write_sends(self) -> None:
        inserted = insert_sends(self.cur, self.store.sql, self.sends)
        owners = set(self.owners)
        if len(owners) == 1:
            self.scheduled[self.owners[0]] += inserted
        elif inserted == len(self.sends):  # every row stored: each request's own count
            for owner in self.owners:
                self.scheduled[owner] += 1
        else:
            raise _Unattributed
        self.sends, self.owners = [], []


Batch = Sequence[tuple[Event, Sequence[Decision]]]  # events with the decisions made for each


def _duplicates(batch: Batch, inserted: set[str]) -> list[str]:
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

    def ingest(self, batch: Batch, now: datetime) -> IngestResult:
        """Store new events and apply the decisions of each, all in one transaction.

        An event id seen before is a duplicate: its decisions are dropped and nothing changes.
        Sends and cancels are written together, in bulk (`_Pending`), in an order that gives the
        same rows as applying every decision one by one.
        """
        if not batch:
            return IngestResult([], [], 0, 0)
        return self._write(lambda cur: self._ingest(cur, [batch], now)[0])

    def ingest_many(self, batches: Sequence[Batch], now: datetime) -> list[IngestResult | Exception]:
        """`ingest` of several batches (the requests the hook has queued) in one transaction, each
        all or nothing: a batch that fails is rolled back alone and its error given in its place, as
        SQLAlchemy's. If the transaction itself fails, every batch fails: that is raised.

        The batches are written together, one statement per table (`_ingest`), as one batch of
        their decisions in order would be; only when that fails (a batch that the database
        refuses, sends of two batches colliding) is each written in a savepoint of its own."""
        if not batches:
            return []
        return self._write(lambda cur: self._ingest_each(cur, batches, now))

    def _ingest_each(self, cur: Any, batches: Sequence[Batch], now: datetime) -> list[IngestResult | Exception]:
        if len(batches) > 1:
            written, results = attempt(cur, lambda c: self._ingest(c, batches, now))
            if written and results is not None:
                return list(results)
        ops = [(lambda c, b=batch: self._ingest(c, [b], now)[0]) for batch in batches]
        return [result if error is None else error  # type: ignore[misc]
                for result, error in each_in_savepoint(cur, ops, self._wrap)]

    def _ingest(self, cur: Any, batches: Sequence[Batch], now: datetime) -> list[IngestResult]:
        """Every batch of `batches` written together: one statement per table and run of decisions."""
        fresh: dict[str, tuple[int, Event, Sequence[Decision]]] = {}
        for owner, batch in enumerate(batches):
            for event, decisions in batch:
                fresh.setdefault(event.id, (owner, event, decisions))
        inserted = self._insert_events(cur, [e for _, e, _ in fresh.values()], now)
        pending = _Pending(self, cur, now, len(batches))
        people: dict[str, Mapping[str, Any]] = {}
        accepted: list[list[str]] = [[] for _ in batches]
        for event_id, (owner, event, decisions) in fresh.items():
            if event_id in inserted:
                pending.owner = owner
                accepted[owner].append(event_id)
                self._apply(pending, people, event, decisions)
        pending.finish()
        upsert_recipients(cur, self.sql, self.codec, people, now)
        return [IngestResult(accepted[i], _duplicates(batch, set(accepted[i])), pending.scheduled[i],
                             pending.cancelled[i]) for i, batch in enumerate(batches)]

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

    @staticmethod
    def _apply(pending: _Pending, people: dict[str, Mapping[str, Any]], event: Event,
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
                pending.digests.append((d, event))
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
