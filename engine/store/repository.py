"""What the runtime does with the database. Each method is one transaction and says what it promises.

States of a notification row:
  scheduled -> queued (handed to the queue) -> sending (claimed by one worker) -> sent
                                                                              -> scheduled (retry later)
                                                                              -> failed
  scheduled | queued -> cancelled (a cancel or reschedule; a row already `sending` is too late)
  any due row -> skipped (preferences, throttle, rate limit at send time)
  sent -> delivered | opened | clicked | undeliverable are recorded in `delivery_status`.
A row is its own record of creation; `notification_history` keeps every change after it
(`Store.history` gives both).
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from ..core.decide import CANCELLED_BY, Cancel, Decision, DigestItem, Send
from ..core.events import Event
from ..core.rendering import courier_message
from . import receipts
from .codec import Codec
from .groupcommit import GroupCommit, each_in_savepoint
from .statements import Statements, like_prefix
from .tables import (digests, events, history, metadata, notifications, preferences, recipients,
                     signature_receipts, webhook_receipts)

PENDING = ("scheduled", "queued")
PAUSED = "paused"  # the reason of a send put back because the provider refused the credentials
_PAUSE = ("UPDATE notifications SET status = CASE WHEN cancel_reason IS NULL THEN 'scheduled' ELSE 'cancelled' END, "
          "reason = CASE WHEN cancel_reason IS NULL THEN ? ELSE cancel_reason END, last_error = ?, send_at = ?, "
          "attempts = attempts - 1, updated_at = ? WHERE id = ? AND status = 'sending' AND attempts = ? "
          "RETURNING status, reason")
_ENDED_BY_CANCEL = like_prefix(CANCELLED_BY)
T = TypeVar("T")


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


@dataclass(frozen=True)
class IngestResult:
    accepted: list[str]
    duplicates: list[str]
    scheduled: int
    cancelled: int


@dataclass(frozen=True)
class Receipt:
    """A signature recorded before: the request it was used for, and its answer (None while that
    request is still being stored)."""

    request: str | None
    answer: str | None


@dataclass(frozen=True)
class Claimed:
    """A row one worker now owns (status `sending`); `attempts` is its fencing token."""

    id: int
    notification: str
    recipient_id: str
    category: str
    channels: tuple[str, ...]
    throttle_key: str | None
    idempotency_key: str
    message: dict[str, Any]
    attempts: int
    send_at: datetime
    claimed_at: datetime | None = None
    template_key: str | None = None
    template: str | None = None  # the template id it was scheduled with (the verdict gives the one in force)


class Counts:
    """Counts made inside a claim's transaction: what was sent within a window, plus what other
    workers are sending right now (their claims committed before this one, in order)."""

    def __init__(self, store: "Store", cur: Any, claimed: Claimed):
        self.sql, self.cur, self.claimed = store.sql, cur, claimed

    def _count(self, statement: str, params: Sequence[Any]) -> int:
        self.cur.execute(statement, params)
        return self.cur.fetchone()[0] or 0

    def sent(self, throttle_key: str | None, since: datetime) -> int:
        """Of this notification, to this recipient, with this throttle key."""
        c, taken = self.claimed, (self.sql.time(since), self.claimed.id)
        if throttle_key is None:
            return self._count(self.sql.sent_without_key, (c.notification, c.recipient_id, *taken))
        return self._count(self.sql.sent_with_key, (c.notification, c.recipient_id, throttle_key, *taken))

    def preferences(self) -> dict[str, bool]:
        """The recipient's preferences, read in the same transaction (a second connection would
        wait on this transaction's lock on SQLite)."""
        self.cur.execute(self.sql.preferences, (self.claimed.recipient_id,))
        return {k: bool(v) for k, v in self.cur.fetchall()}

    def recent(self, since: datetime, categories: Sequence[str]) -> int:
        """To this recipient, in these categories."""
        if not categories:
            return 0
        return self._count(self.sql.recent(len(categories)),
                           (self.claimed.recipient_id, *categories, self.sql.time(since), self.claimed.id))


class _Pending:
    """The sends and cancels of an ingest, written in bulk.

    Runs of sends and runs of cancels are written together: a send with cancels pending writes
    those first, and a cancel with sends pending writes those first, so each decision sees what
    the decisions before it wrote, as applying them one by one would. Within a run, sends of
    one idempotency key are one send (`Store._insert_sends`), and cancels commute: each ends the
    pending rows of its own (notification, key), and a second cancel of a key finds nothing.
    """

    def __init__(self, store: "Store", cur: Any, now: datetime):
        self.store, self.cur = store, cur
        self.at = store.sql.time(now)
        self.sends: list[tuple[Any, ...]] = []
        self.cancels: dict[tuple[str, str | None], Cancel] = {}
        self.scheduled = self.cancelled = 0

    def send(self, s: Send) -> None:
        if self.cancels:
            self.flush()
        self.sends.append(self.store._send_row(s, self.at))

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
        self.cur.execute(self.store.sql.ended_by_cancel(len(pairs)), [v for n, k in pairs for v in (n, k, _ENDED_BY_CANCEL, _ENDED_BY_CANCEL)])
        return {(n, k) for n, k in self.cur.fetchall()}

    def flush(self) -> None:
        if self.cancels:
            params = [(c.reason, self.at, c.notification, c.key) for c in self.cancels.values()]
            if self.store.sql.pg:  # in a sorted order, so that two cancels of the same keys cannot deadlock
                self.cur.executemany(self.store.sql.lock_cancelled, sorted((c.notification, c.key) for c in self.cancels.values()))
            self.cur.executemany(self.store.sql.cancel_history, params)
            self.cur.executemany(self.store.sql.cancel, params)
            self.cancelled += self.cur.rowcount
            self.cur.executemany(self.store.sql.cancel_in_flight, params)
            self.cancels = {}
        if self.sends:
            self.scheduled += self.store._insert_sends(self.cur, self.sends)
            self.sends = []


class Store:
    def __init__(self, engine: Engine, codec: Codec | None = None):
        self.engine = engine
        self.reader = engine.execution_options(read_only=True)  # for transactions that only read
        # SQLite has one writer at a time: queue this process's writers on a lock instead of
        # letting them spin in SQLite's busy handler (which sleeps up to 100 ms between tries).
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._driver_error = engine.dialect.loaded_dbapi.Error
        self._group = GroupCommit(self._write_lock, self._cursor, self._wrap) if self._write_lock is not None else None
        self._writer: Any = None  # SQLite: the pooled connection the writes run on, kept out of the pool (`_cursor`)
        # An in-memory database lives in its one connection (`db.scratch`): everything runs on it.
        self._memory = self._write_lock is not None and engine.url.database in (None, "", ":memory:")
        self._shared: Any = engine.raw_connection().dbapi_connection if self._memory else None
        self.codec = codec or Codec()
        self.dialect = engine.dialect.name
        self.sql = Statements(self.dialect)

    # -- helpers ------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A write transaction (committed on success, rolled back on error). An error of the
        driver's own cursor (`Statements`) is raised as SQLAlchemy's, as every other one is."""
        try:
            with self._write_lock or nullcontext(), self.engine.begin() as conn:
                yield conn
        except self._driver_error as exc:
            raise self._wrap(exc) from exc

    def _wrap(self, exc: BaseException) -> BaseException:
        """A driver's error as SQLAlchemy's; any other error as it is."""
        if isinstance(exc, self._driver_error):
            return DBAPIError.instance(None, None, exc, self._driver_error)  # type: ignore[arg-type]
        return exc

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A write transaction on the driver's cursor, for the hot paths (`Statements`): no
        SQLAlchemy Connection to set up and tear down around it. Errors are raised as `_tx`'s.
        On SQLite the caller holds the write lock (`_write` sees to it)."""
        conn = None
        keep = self._write_lock is not None  # SQLite: one writer at a time, so one connection kept for it
        try:
            conn = self._writer if keep and self._writer is not None else self._connection(keep)
            cur = conn.cursor()
            self.sql.begin(cur)
            yield cur
            conn.commit()
        except BaseException as exc:
            if conn is not None:
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - a lost connection: the first error is the one to tell
                    try:
                        conn.close() if keep else conn.invalidate()
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                    conn = None
            wrapped = self._wrap(exc)
            if wrapped is not exc:
                raise wrapped from exc
            raise
        finally:
            if keep:
                self._writer = conn
            elif conn is not None:
                conn.close()  # back to the pool (or dropped, when invalidated)

    def _connection(self, keep: bool) -> Any:
        """A pooled connection (the pool's errors are the driver's own: `_cursor` wraps them); the one
        to keep is taken out of the pool, and closed when this store goes."""
        if self._shared is not None:
            return self._shared
        conn = self.engine.raw_connection()
        if not keep:
            return conn
        conn.detach()
        raw = conn.dbapi_connection
        weakref.finalize(self, raw.close)
        return raw

    def _write(self, op: Callable[[Any], T]) -> T:
        """op(cursor) in a write transaction of its own, or on SQLite in one shared with the
        writes other threads hand in at the same moment (`groupcommit`)."""
        if self._group is None:
            with self._cursor() as cur:
                return op(cur)
        return self._group.run(op)

    def _read(self, op: Callable[[Any], T]) -> T:
        """op(cursor) on a pooled connection, for reads on the hot paths (`Statements`)."""
        if self._shared is not None:
            return op(self._shared.cursor())
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                return op(cur)
            finally:
                cur.close()
                if self.sql.pg:
                    conn.rollback()  # psycopg opened a transaction for the reads: end it
        except self._driver_error as exc:
            raise self._wrap(exc) from exc
        finally:
            conn.close()

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table))

    def create_all(self) -> None:
        """For tests: the tables without migrations."""
        metadata.create_all(self.engine)

    # -- ingest ---------------------------------------------------------------------------------
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
            ops = [(lambda c, b=batch: self._ingest(c, b, now) if b else IngestResult([], [], 0, 0)) for batch in batches]
            return [result if error is None else error  # type: ignore[misc]
                    for result, error in each_in_savepoint(cur, ops, self._wrap)]

        if not batches:
            return []
        return self._write(op)

    def _ingest(self, cur: Any, batch: Sequence[tuple[Event, Sequence[Decision]]], now: datetime) -> IngestResult:
        sql, received = self.sql, self.sql.time(now)
        fresh: dict[str, tuple[Event, Sequence[Decision]]] = {}
        for event, decisions in batch:
            fresh.setdefault(event.id, (event, decisions))
        # ON CONFLICT: an id stored before (or by a concurrent request a moment ago) is a duplicate.
        inserted: set[str] = set()
        for chunk in sql.chunks(list(fresh.values())):
            cur.execute(sql.insert_events(len(chunk)), [
                v for e, _ in chunk for v in (e.id, e.type, sql.time(e.occurred_at), received, self.codec.dumps(e.envelope()))])
            inserted.update(r[0] for r in cur.fetchall())
        pending, people = _Pending(self, cur, now), {}
        for event, decisions in fresh.values():
            if event.id in inserted:
                self._apply(cur, pending, people, event, decisions)
        pending.flush()
        self._upsert_recipients(cur, people, now)
        accepted = [i for i in fresh if i in inserted]
        duplicates, counted = [], set()  # every submission but the one accepted occurrence of each id
        for event, _ in batch:
            if event.id in inserted and event.id not in counted:
                counted.add(event.id)
            else:
                duplicates.append(event.id)
        return IngestResult(accepted, duplicates, pending.scheduled, pending.cancelled)

    def _apply(self, cur: Any, pending: "_Pending", people: dict[str, Mapping[str, Any]], event: Event,
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
                self._collect(cur, d, event)
                people[d.recipient_id] = d.recipient

    def _send_row(self, s: Send, at: Any) -> tuple[Any, ...]:
        """The row of a send, in `statements.SEND_COLUMNS` order; `at` is now, as `Statements.time` binds it."""
        message = None
        if s.template:
            message = courier_message(s.recipient, s.template, s.data, s.channels)
        sql = self.sql
        return (s.notification, s.recipient_id, s.event_id or None, s.key, s.category, sql.channels(s.channels),
                s.template_key, s.template, s.variant, s.idempotency_key, s.throttle_key,
                self.codec.dumps(message) if message else None, sql.time(s.send_at), s.status, s.reason, 0, at, at)

    def _insert_sends(self, cur: Any, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert sends; returns how many rows were inserted.

        A send whose idempotency key already belongs to a live or sent row is the same send, and
        so is a second send of one key within `rows` (two events or rules giving one key): the
        unique index on live keys refuses it, and nothing is inserted."""
        if not rows:
            return 0
        cur.executemany(self.sql.insert_send, rows)
        return cur.rowcount

    def _collect(self, cur: Any, d: DigestItem, event: Event) -> None:
        sql = self.sql
        cur.execute(sql.open_digest, (d.bucket, d.notification, d.recipient_id, self.codec.dumps(dict(d.recipient)),
                                      sql.time(d.period_start), sql.time(d.period_end), sql.time(d.send_at)))
        cur.execute(sql.digest_status, (d.bucket,))
        if cur.fetchone()[0] != "collecting":
            return  # that period's digest already went out
        cur.execute(sql.add_digest_item, (d.bucket, d.event_id, self.codec.dumps(dict(d.item)), sql.time(event.occurred_at)))

    def _upsert_recipients(self, cur: Any, people: Mapping[str, Mapping[str, Any]], now: datetime) -> None:
        if people:
            at = self.sql.time(now)
            cur.executemany(self.sql.upsert_recipient, [(rid, self.codec.dumps(dict(p)), p.get("timezone"), at)
                                                        for rid, p in sorted(people.items())])

    def import_recipients(self, people: Iterable[Mapping[str, Any]], now: datetime) -> int:
        found = {str(p["id"]): p for p in people}
        self._write(lambda cur: self._upsert_recipients(cur, found, now))
        return len(found)

    def recipient(self, recipient_id: str) -> dict[str, Any] | None:
        with self.reader.connect() as conn:
            stored = conn.scalar(select(recipients.c.profile).where(recipients.c.id == recipient_id))
        return self.codec.loads(stored) if stored else None

    def people(self) -> dict[str, dict[str, Any]]:
        """Every recipient's profile, by id."""
        with self.reader.connect() as conn:
            return {rid: self.codec.loads(p) for rid, p in conn.execute(select(recipients.c.id, recipients.c.profile))}

    def recipient_by_email(self, email: str) -> dict[str, Any] | None:
        with self.reader.connect() as conn:
            for stored in conn.scalars(select(recipients.c.profile)):
                person = self.codec.loads(stored)
                if person.get("email", "").lower() == email.lower():
                    return person
        return None

    # -- scheduling -------------------------------------------------------------------------------
    def schedule_direct(self, send: Send, now: datetime) -> int | None:
        """Store one send made by code (not by an event); None when its idempotency key is taken."""
        def op(cur: Any) -> int | None:
            self._upsert_recipients(cur, {send.recipient_id: send.recipient}, now)
            # The id RETURNING gave, not max(id): another transaction may commit a higher id meanwhile.
            cur.execute(self.sql.insert_send_returning_id, self._send_row(send, self.sql.time(now)))
            found = cur.fetchone()
            return found[0] if found else None

        return self._write(op)

    def queue_due(self, now: datetime, limit: int = 500, requeue_after: timedelta = timedelta(seconds=30),
                  stale_sending: timedelta = timedelta(minutes=2), ids: Sequence[int] | None = None,
                  max_attempts: int | None = None) -> list[int]:
        """Move due rows to `queued` and return their ids (each id is returned to one caller).

        Rows `queued` for longer than `requeue_after` (their queue task was lost) and rows
        `sending` for longer than `stale_sending` (their worker died) are queued again; the
        retry carries the same Idempotency-Key, so Courier does not send twice. A dead claim that
        has used up `max_attempts` fails instead of being handed out forever, and one that a
        cancel reached while it was being sent ends cancelled. `ids` limits the hand-off to those rows.
        """
        return [i for i, _ in self.queue_due_times(now, limit, requeue_after, stale_sending, ids, max_attempts)]

    def queue_due_times(self, now: datetime, limit: int = 500, requeue_after: timedelta = timedelta(seconds=30),
                        stale_sending: timedelta = timedelta(minutes=2), ids: Sequence[int] | None = None,
                        max_attempts: int | None = None) -> list[tuple[int, datetime]]:
        """`queue_due`, with each row's due time: (id, send_at), earliest first."""
        sql, at = self.sql, self.sql.time(now)
        due = (at, sql.time(now - requeue_after), sql.time(now - stale_sending))
        among = tuple(ids or ())

        def op(cur: Any) -> list[tuple[int, datetime]]:
            if ids is None:
                self._end_dead_claims(cur, at, due[2], max_attempts)
            cur.execute(sql.queue_due(len(among)), (at, at, *due, *among, limit, *due))
            due_rows = [(int(i), sql.read_time(t) or now) for i, t in cur.fetchall()]
            return sorted(due_rows, key=lambda r: (r[1], r[0]))

        if ids is not None and not among:
            return []
        return self._write(op)

    def _end_dead_claims(self, cur: Any, at: Any, claimed_before: Any, max_attempts: int | None) -> None:
        """Claims whose worker died: cancelled when a cancel reached them meanwhile, failed when
        they used up their attempts (the others are handed out again)."""
        sql = self.sql
        cur.execute(sql.end_cancelled_claims, (at, claimed_before))
        ended = [(i, "cancelled", why, at) for i, why in cur.fetchall()]
        if max_attempts is not None:
            why = "the worker died on every attempt"
            cur.execute(sql.end_spent_claims, (why, at, claimed_before, max_attempts))
            ended += [(i, "failed", why, at) for (i,) in cur.fetchall()]
        if ended:
            cur.executemany(sql.add_history, ended)

    def claim(self, notification_id: int, now: datetime) -> Claimed | None:
        """Atomically take a queued row for sending; None if it was cancelled or taken."""
        return self.claim_checked(notification_id, now)[0]

    def claim_checked(self, notification_id: int, now: datetime,
                      check: Callable[[Claimed, "Counts"], Any] | None = None) -> tuple[Claimed | None, Any]:
        """Atomically take a queued row for sending; (None, None) if it was cancelled or taken.

        `check(claimed, counts)` runs inside the same transaction, serialized per recipient, and
        returns a verdict; when `verdict.skip` is set the row is recorded as skipped with that
        reason instead. Counting and claiming together is what keeps rate limits and throttles
        exact when many workers deliver to one recipient at once.
        """
        return self._write(lambda cur: self._claim(cur, notification_id, now, check))

    def _claim(self, cur: Any, notification_id: int, now: datetime,
               check: Callable[[Claimed, "Counts"], Any] | None) -> tuple[Claimed | None, Any]:
        sql, at = self.sql, self.sql.time(now)
        cur.execute(sql.claim, (at, at, notification_id))
        row = cur.fetchone()
        if row is None:
            return None, None
        (row_id, notification, recipient_id, category, channels, throttle_key, idempotency_key, payload, attempts,
         send_at, template_key, template) = row
        claimed = Claimed(row_id, notification, recipient_id, category, sql.read_channels(channels), throttle_key,
                          idempotency_key, self.codec.loads(payload) or {}, attempts, sql.read_time(send_at), now,  # type: ignore[arg-type]
                          template_key, template)
        verdict = None
        if check is not None:
            if sql.pg:  # SQLite's BEGIN IMMEDIATE already serializes writers
                cur.execute(sql.lock_recipient, (recipient_id,))
            verdict = check(claimed, Counts(self, cur, claimed))
        if verdict is not None and getattr(verdict, "skip", None):
            cur.execute(sql.skip, (verdict.skip, at, row_id))
            cur.execute(sql.add_history, (row_id, "skipped", verdict.skip, at))
        else:
            cur.execute(sql.add_history, (row_id, "sending", f"attempt {attempts}", at))
            self._settle(cur, claimed, verdict)
        return claimed, verdict

    def _settle(self, cur: Any, claimed: Claimed, verdict: Any) -> None:
        """The row records the template id and channels it goes out with, when the verdict changed them."""
        template = getattr(verdict, "template", None) or claimed.template
        channels = getattr(verdict, "channels", None) or claimed.channels
        if template != claimed.template or tuple(channels) != claimed.channels:
            cur.execute(self.sql.settle, (template, self.sql.channels(tuple(channels)), claimed.id))

    def finish(self, claimed: Claimed, status: str, now: datetime, *, reason: str | None = None,
               request_id: str | None = None, error: str | None = None, retry_at: datetime | None = None) -> str | None:
        """Record the outcome of a claimed send; returns the status recorded (`cancelled` for a retry
        when a cancel came during the attempt), or None if the claim was lost (another worker took over)."""
        sql, at = self.sql, self.sql.time(now)
        sent = status == "sent"
        params: list[Any] = [status, reason, at]
        if sent:
            params += [at, request_id]
        if error is not None:
            params.append(error[:1000])
        if retry_at is not None:
            params.append(sql.time(retry_at))
        def op(cur: Any) -> str | None:
            cur.execute(sql.finish(sent, error is not None, retry_at is not None), (*params, claimed.id, claimed.attempts))
            found = cur.fetchone()
            if found is not None:
                recorded, why = found  # a retry is recorded cancelled when a cancel came meanwhile
                cur.execute(sql.add_history, (claimed.id, recorded, why if recorded != status else reason or error, at))
                if recorded == "sent" and request_id:
                    receipts.on_sent(cur, sql, claimed.id, request_id, now)
                return str(recorded)
            return None

        return self._write(op)

    def pause(self, claimed: Claimed, now: datetime, retry_at: datetime, error: str) -> str | None:
        """Put a claimed send back (`scheduled` at `retry_at`, reason `paused: ...`) without counting
        its attempt: the provider refused the credentials, not the message. Returns the status
        recorded (`cancelled` when a cancel came during the attempt), or None if the claim was lost.

        Giving the attempt back keeps `attempts` a fencing token: a later claim takes it up again,
        never down to the value of a claim older than this one."""
        sql, at = self.sql, self.sql.time(now)
        reason = f"{PAUSED}: {error}"[:500]

        def op(cur: Any) -> str | None:
            cur.execute(sql._text(_PAUSE), (reason, error[:1000], sql.time(retry_at), at, claimed.id, claimed.attempts))
            found = cur.fetchone()
            if found is None:
                return None
            cur.execute(sql.add_history, (claimed.id, found[0], found[1], at))
            return str(found[0])

        return self._write(op)

    # -- send-time checks ---------------------------------------------------------------------------
    def signature_seen(self, signature: str, now: datetime, window: timedelta) -> bool:
        """Whether a request signature was used within `window`."""
        with self.reader.connect() as conn:
            return conn.scalar(select(signature_receipts.c.signature).where(
                signature_receipts.c.signature == signature[:128], signature_receipts.c.seen_at >= now - window)) is not None

    def remember_signature(self, signature: str, now: datetime, window: timedelta) -> bool:
        """Record a request signature; False when it was seen within `window` (a replay)."""
        with self._tx() as conn:
            conn.execute(delete(signature_receipts).where(signature_receipts.c.seen_at < now - window))
            new = conn.execute(self._insert(signature_receipts).values(signature=signature[:128], seen_at=now)
                               .on_conflict_do_nothing().returning(signature_receipts.c.signature)).first()
        return new is not None

    def claim_signature(self, signature: str, request: str, now: datetime, window: timedelta) -> Receipt | None:
        """Record a signature for a request (a digest of its body); None when this call recorded it,
        else the receipt recorded within `window`. The insert is the check: of concurrent copies,
        exactly one records it, on every store and across processes."""
        with self._tx() as conn:
            conn.execute(delete(signature_receipts).where(signature_receipts.c.seen_at < now - window))
            new = conn.execute(self._insert(signature_receipts).values(signature=signature[:128], seen_at=now, request=request)
                               .on_conflict_do_nothing().returning(signature_receipts.c.signature)).first()
            if new is not None:
                return None
            found = conn.execute(select(signature_receipts.c.request, signature_receipts.c.answer)
                                 .where(signature_receipts.c.signature == signature[:128])).first()
        # Gone between the two statements: its request failed and released it; the caller claims again.
        return Receipt(found[0], found[1]) if found is not None else Receipt(request, None)

    def signature_receipt(self, signature: str) -> Receipt | None:
        with self.reader.connect() as conn:
            found = conn.execute(select(signature_receipts.c.request, signature_receipts.c.answer)
                                 .where(signature_receipts.c.signature == signature[:128])).first()
        return Receipt(found[0], found[1]) if found is not None else None

    def answer_signature(self, signature: str, answer: str) -> None:
        """Keep the answer a signed request got, for its retries."""
        with self._tx() as conn:
            conn.execute(update(signature_receipts).where(signature_receipts.c.signature == signature[:128])
                         .values(answer=answer))

    def forget_signature(self, signature: str) -> None:
        """Forget a recorded signature (the request that recorded it failed): its retry may go through."""
        with self._tx() as conn:
            conn.execute(delete(signature_receipts).where(signature_receipts.c.signature == signature[:128]))

    def preferences(self, recipient_id: str) -> dict[str, bool]:
        with self.reader.connect() as conn:
            rows = conn.execute(select(preferences.c.key, preferences.c.enabled).where(preferences.c.recipient_id == recipient_id))
            return {k: bool(v) for k, v in rows}

    def set_preferences(self, recipient_id: str, values: Mapping[str, bool | None], now: datetime) -> dict[str, bool]:
        """Set (True/False) or clear (None) preference keys; returns the recipient's preferences."""
        with self._tx() as conn:
            for key, enabled in values.items():
                conn.execute(delete(preferences).where(preferences.c.recipient_id == recipient_id, preferences.c.key == key))
                if enabled is not None:
                    conn.execute(insert(preferences).values(recipient_id=recipient_id, key=key, enabled=bool(enabled), updated_at=now))
        return self.preferences(recipient_id)

    # -- digests ----------------------------------------------------------------------------------
    def due_digests(self, now: datetime, limit: int | None = 200) -> list[dict[str, Any]]:
        """The digests still collecting whose send time has come by `now`, earliest first, with their items."""
        sql = self.sql

        def op(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql.due_digests, (sql.time(now), 2 ** 62 if limit is None else limit))
            out = []
            for bucket, notification, recipient_id, recipient, start, end, send_at in cur.fetchall():
                cur.execute(sql.digest_items, (bucket,))
                out.append({"bucket": bucket, "notification": notification, "recipient_id": recipient_id,
                            "recipient": self.codec.loads(recipient), "items": [self.codec.loads(i) for (i,) in cur.fetchall()],
                            "period_start": sql.read_time(start), "period_end": sql.read_time(end),
                            "send_at": sql.read_time(send_at), "status": "collecting"})
            return out

        return self._read(op)

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
                self._insert_sends(cur, [self._send_row(send, sql.time(now))])
            return True

        return self._write(op)

    # -- webhooks ---------------------------------------------------------------------------------
    def record_delivery(self, request_id: str, status: str, now: datetime) -> str:
        """Apply a delivery status from Courier: 'applied', 'duplicate', 'stale', or 'pending' when no
        send has that request id yet (the webhook overtook the commit of its send): the status is
        kept and applied when the send is recorded, or dropped after a day (`receipts`)."""
        return self._write(lambda cur: receipts.record(cur, self.sql, request_id, status, now))

    # -- reading ------------------------------------------------------------------------------------
    def list(self, *, status: Sequence[str] | None = None, since: datetime | None = None, until: datetime | None = None,
             recipient_id: str | None = None, notification: str | None = None, limit: int | None = 100,
             with_payload: bool = False, newest_first: bool = False) -> list[dict[str, Any]]:
        n = notifications.c
        cols = [n.id, n.notification, n.recipient_id, n.event_id, n.key, n.category, n.channels, n.template_key,
                n.template, n.variant, n.idempotency_key, n.send_at, n.status, n.reason, n.attempts, n.sent_at,
                n.request_id, n.delivery_status, n.last_error, n.created_at]
        if with_payload:
            cols.append(n.payload)
        stmt = select(*cols)
        if status:
            stmt = stmt.where(n.status.in_(list(status)))
        if since:
            stmt = stmt.where(n.send_at >= since)
        if until:
            stmt = stmt.where(n.send_at <= until)
        if recipient_id:
            stmt = stmt.where(n.recipient_id == recipient_id)
        if notification:
            stmt = stmt.where(n.notification == notification)
        order = (n.send_at.desc(), n.id.desc()) if newest_first else (n.send_at, n.notification, n.recipient_id, n.id)
        stmt = stmt.order_by(*order).limit(limit)
        with self.reader.connect() as conn:
            rows = [dict(r) for r in conn.execute(stmt).mappings()]
        for r in rows:
            for k in ("send_at", "sent_at", "created_at"):
                r[k] = utc(r[k])
            if with_payload:
                r["message"] = self.codec.loads(r.pop("payload"))
        return rows

    def status(self, notification_id: int) -> str:
        """A row's status ('unknown' for an id that does not exist)."""
        with self.reader.connect() as conn:
            found = conn.scalar(select(notifications.c.status).where(notifications.c.id == notification_id))
        return str(found) if found is not None else "unknown"

    def next_due(self) -> datetime | None:
        """The earliest time a scheduled send or a collecting digest falls due (None: nothing waits)."""
        def op(cur: Any) -> datetime | None:
            found = []
            for statement in (self.sql.next_send, self.sql.next_digest):
                cur.execute(statement)
                found.append(self.sql.read_time(cur.fetchone()[0]))
            return min((t for t in found if t is not None), default=None)

        return self._read(op)

    def rows(self) -> list[dict[str, Any]]:
        """Every notification row, oldest first, with its Courier message (`message`): what a whole
        run recorded, read in one pass (`list` pages through rows for people)."""
        sql, loads = self.sql, self.codec.loads
        names = ("id", "notification", "recipient_id", "event_id", "key", "category", "channels", "template_key",
                 "template", "variant", "idempotency_key", "send_at", "status", "reason", "message")

        def op(cur: Any) -> list[dict[str, Any]]:
            cur.execute(sql.all_rows)
            out = []
            for row in cur.fetchall():
                found = dict(zip(names, row, strict=True))
                found["channels"] = sql.read_channels(found["channels"])
                found["send_at"] = sql.read_time(found["send_at"])
                found["message"] = loads(found["message"]) if found["message"] else None
                out.append(found)
            return out

        return self._read(op)

    def history(self, notification_id: int) -> list[dict[str, Any]]:
        """Every state of a row, oldest first; [] for an unknown id.

        The first entry is the row's creation, read from the row itself: `scheduled`, or `skipped`
        with its reason when it was created skipped (a row that is skipped and has no later
        change). The history table holds the changes after it."""
        n = notifications.c
        with self.reader.connect() as conn:
            row = conn.execute(select(n.status, n.reason, n.created_at).where(n.id == notification_id)).first()
            if row is None:
                return []
            changes = [{**r, "at": utc(r["at"])} for r in conn.execute(
                select(history.c.status, history.c.reason, history.c.at)
                .where(history.c.notification_id == notification_id).order_by(history.c.id)).mappings()]
        created_skipped = row.status == "skipped" and not changes
        created = {"status": row.status if created_skipped else "scheduled", "reason": row.reason if created_skipped else None,
                   "at": utc(row.created_at)}
        return [created, *changes]

    def stats(self, since: datetime) -> list[dict[str, Any]]:
        n = notifications.c
        with self.reader.connect() as conn:
            rows = conn.execute(select(n.notification, n.variant, n.status, n.delivery_status, func.count())
                                .where(n.created_at >= since)
                                .group_by(n.notification, n.variant, n.status, n.delivery_status)).all()
        return [{"notification": a, "variant": v, "status": b, "delivery_status": c, "count": d} for a, v, b, c, d in rows]

    def counts_by_status(self) -> dict[str, int]:
        n = notifications.c
        with self.reader.connect() as conn:
            return {s: c for s, c in conn.execute(select(n.status, func.count()).group_by(n.status))}

    def cleanup(self, now: datetime, keep_notifications: timedelta | None, keep_events: timedelta | None) -> dict[str, int]:
        """Apply retention: delete finished notifications and events older than their periods; past the
        events' period, what is kept loses its personal data (`duties.redact_kept`)."""
        removed = {"notifications": 0, "events": 0, "webhook_receipts": 0, "digests": 0}
        with self._tx() as conn:
            if keep_notifications:
                cutoff = now - keep_notifications
                removed["notifications"] = conn.execute(delete(notifications).where(
                    notifications.c.status.notin_(PENDING + ("sending",)), notifications.c.updated_at < cutoff)).rowcount
                removed["webhook_receipts"] = conn.execute(delete(webhook_receipts).where(webhook_receipts.c.received_at < cutoff)).rowcount
                removed["digests"] = conn.execute(delete(digests).where(digests.c.status == "closed", digests.c.send_at < cutoff)).rowcount
            if keep_events:
                removed["events"] = conn.execute(delete(events).where(events.c.received_at < now - keep_events)).rowcount
                from .duties import redact_kept  # duties builds on this module

                removed.update(redact_kept(conn, now, keep_events))
        return removed

    def event_count(self) -> int:
        with self.reader.connect() as conn:
            return conn.scalar(select(func.count()).select_from(events)) or 0

