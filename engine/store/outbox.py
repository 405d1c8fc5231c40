"""The outbox: due rows handed to the queue, claimed by one worker, and finished.

States of a notification row:
  scheduled -> queued (handed to the queue) -> sending (claimed by one worker) -> sent
                                                                              -> scheduled (retry later)
                                                                              -> failed
  scheduled | queued -> cancelled (a cancel or reschedule; a row already `sending` is too late)
  any due row -> skipped (preferences, throttle, rate limit at send time)
  sent -> delivered | opened | clicked | undeliverable are recorded in `delivery_status`.
A row's `due_at` is when it first fell due: a retry or a pause moves `send_at` (when it is
handed out next), never `due_at`; a reschedule is a new row, due at its new time.
A claim's `attempts` is its fencing token: a worker's outcome is recorded only while the row is
still its claim. A row is its own record of creation; `notification_history` keeps every change
after it (`Store.history` gives both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..core.decide import Send
from ..delivery.message import scheduled_record
from . import receipts
from .codec import Codec
from .statements import Statements
from .transactions import Transactions

PENDING = ("scheduled", "queued")
PAUSED = "paused"  # the reason of a send put back because the provider refused the credentials


def send_row(sql: Statements, codec: Codec, s: Send, at: Any) -> tuple[Any, ...]:
    """The row of a send, in `statements.SEND_COLUMNS` order; `at` is now, as `Statements.time` binds it."""
    message = scheduled_record(s.recipient, s.template, s.data, s.channels) if s.template else None
    return (s.notification, s.recipient_id, s.event_id or None, s.key, s.category, sql.channels(s.channels),
            s.template_key, s.template, s.variant, s.idempotency_key, s.throttle_key,
            codec.dumps(message) if message else None, sql.time(s.send_at), sql.time(s.due), s.status, s.reason, 0,
            at, at)


def insert_sends(cur: Any, sql: Statements, rows: Sequence[tuple[Any, ...]]) -> int:
    """Put sends in the outbox; returns how many rows were inserted.

    A send whose idempotency key already belongs to a live or sent row is the same send, and
    so is a second send of one key within `rows` (two events or rules giving one key): the
    unique index on live keys refuses it, and nothing is inserted."""
    if not rows:
        return 0
    cur.executemany(sql.insert_send, rows)
    return int(cur.rowcount)


def _finish_params(sql: Statements, status: str, at: Any, reason: str | None, request_id: str | None,
                   error: str | None, retry_at: datetime | None) -> list[Any]:
    """The binds of `Statements.finish` before the row's id and attempts."""
    params: list[Any] = [status, reason, at]
    if status == "sent":
        params += [at, request_id]
    if error is not None:
        params.append(error[:1000])
    if retry_at is not None:
        params.append(sql.time(retry_at))
    return params


def _finish_noting_early(sql: Statements, shape: tuple[bool, bool, bool]) -> str:
    """SQLite: `Statements.finish`, whose RETURNING of a send recorded sent also says whether an
    early status waits for its request id (`receipts.EARLY_WAITING`): one statement fewer per send
    when none does, as nearly always. The one writer at a time keeps it exact, as the read after it was."""
    if not shape[0]:
        return sql.finish(*shape)
    return sql.composed(("finish_noting_early", *shape), lambda: f"{sql.finish(*shape)}, {receipts.EARLY_WAITING}")


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
    send_at: datetime  # when this attempt fell due (a retry's or a pause's time, after the first)
    due_at: datetime  # when the send first fell due: its rule's `expires_after` counts from here
    claimed_at: datetime | None = None
    template_key: str | None = None
    template: str | None = None  # the template id it was scheduled with (the verdict gives the one in force)


@dataclass(frozen=True)
class Reads:
    """What a send-time verdict read of the store (None: not asked for)."""

    sent: int | None  # of this notification, to this recipient, with its throttle key, within the window
    recent: int | None  # to this recipient, in the categories asked for, within the window
    preferences: dict[str, bool]  # the recipient's ({} when not asked for)


class Counts:
    """What a claim's verdict reads, inside the claim's transaction: what was sent within a window,
    plus what other workers are sending right now (their claims committed before this one, in
    order), and the recipient's preferences (a second connection would wait on this transaction's
    lock on SQLite). All of it in one statement: each statement in a write transaction is a turn of
    the write lock, and of the GIL, that every other sender waits for."""

    def __init__(self, store: Transactions, cur: Any, claimed: Claimed):
        self.sql, self.cur, self.claimed = store.sql, cur, claimed

    def read(self, throttle: tuple[str | None, datetime] | None = None,
             rate: tuple[datetime, Sequence[str]] | None = None, preferences: bool = False) -> Reads:
        """`throttle`: (throttle key, since) to count this notification's sends with that key;
        `rate`: (since, categories) to count the recipient's sends in those categories;
        `preferences`: whether to read the recipient's preferences."""
        c, sql = self.claimed, self.sql
        categories = tuple(rate[1]) if rate is not None else ()
        shape = (None if throttle is None else throttle[0] is not None,
                 len(categories) if rate is not None and categories else None, preferences)
        params: list[Any] = []
        if throttle is not None:
            key = (throttle[0],) if throttle[0] is not None else ()
            params += [c.notification, c.recipient_id, *key, sql.time(throttle[1]), c.id]
        if shape[1] is not None and rate is not None:
            params += [c.recipient_id, *categories, sql.time(rate[0]), c.id]
        if preferences:
            params.append(c.recipient_id)
        if params:
            self.cur.execute(sql.composed(("counts", *shape), lambda: self._build(shape)), params)
            return self._reads(self.cur.fetchall(), throttle is not None, rate is not None)
        return Reads(None if throttle is None else 0, None if rate is None else 0, {})

    def _build(self, shape: tuple[Any, ...]) -> str:
        """A row of counts (its key NULL) and a row per preference, as one UNION ALL."""
        sql, (keyed, categories, preferences) = self.sql, shape
        counts = []
        if keyed is not None:
            counts.append(f"({sql.sent_with_key if keyed else sql.sent_without_key})")
        if categories is not None:
            counts.append(f"({sql.recent(categories)})")
        parts = []
        if counts:
            parts.append(f"SELECT NULL, NULL, {counts[0] if keyed is not None else 'NULL'}, "
                         f"{counts[-1] if categories is not None else 'NULL'}")
        if preferences:
            parts.append(sql.native("SELECT key, enabled, NULL, NULL FROM preferences WHERE recipient_id = ?"))
        return " UNION ALL ".join(parts)

    @staticmethod
    def _reads(rows: list[Any], sent: bool, recent: bool) -> Reads:
        counted = next((row for row in rows if row[0] is None), (None, None, 0, 0))
        return Reads(int(counted[2] or 0) if sent else None, int(counted[3] or 0) if recent else None,
                     {key: bool(enabled) for key, enabled, _, _ in rows if key is not None})


class Outbox(Transactions):
    """Handing due rows out, claiming them and recording what became of them."""

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
                      check: Callable[[Claimed, Counts], Any] | None = None) -> tuple[Claimed | None, Any]:
        """Atomically take a queued row for sending; (None, None) if it was cancelled or taken.

        `check(claimed, counts)` runs inside the same transaction, serialized per recipient, and
        returns a verdict; when `verdict.skip` is set the row is recorded as skipped with that
        reason instead. Counting and claiming together is what keeps rate limits and throttles
        exact when many workers deliver to one recipient at once.
        """
        return self._write(lambda cur: self._claim(cur, notification_id, now, check))

    def _claim(self, cur: Any, notification_id: int, now: datetime,
               check: Callable[[Claimed, Counts], Any] | None) -> tuple[Claimed | None, Any]:
        sql, at = self.sql, self.sql.time(now)
        # Counting under the recipient's lock keeps limits exact; on SQLite, BEGIN IMMEDIATE already
        # serializes writers.
        cur.execute(sql.claim_locking if sql.pg and check is not None else sql.claim, (at, at, notification_id))
        row = cur.fetchone()
        if row is None:
            return None, None
        claimed = self._claimed(row[:13], now)
        verdict = None
        if check is not None:
            verdict = check(claimed, Counts(self, cur, claimed))
        if verdict is not None and getattr(verdict, "skip", None):
            cur.execute(sql.skip, (verdict.skip, at, claimed.id))
            cur.execute(sql.add_history, (claimed.id, "skipped", verdict.skip, at))
        else:
            cur.execute(sql.add_history, (claimed.id, "sending", f"attempt {claimed.attempts}", at))
            self._settle(cur, claimed, verdict)
        return claimed, verdict

    def _claimed(self, row: Sequence[Any], now: datetime) -> Claimed:
        """The claim's row (`Statements.claim`'s RETURNING) as a Claimed made at `now`."""
        sql = self.sql
        (row_id, notification, recipient_id, category, channels, throttle_key, idempotency_key, payload, attempts,
         send_at, due_at, template_key, template) = row
        return Claimed(row_id, notification, recipient_id, category, sql.read_channels(channels), throttle_key,
                       idempotency_key, self.codec.loads(payload) or {}, attempts, sql.read_time(send_at),  # type: ignore[arg-type]
                       sql.read_time(due_at), now, template_key, template)  # type: ignore[arg-type]

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
        at = self.sql.time(now)
        shape = (status == "sent", error is not None, retry_at is not None)
        params = (*_finish_params(self.sql, status, at, reason, request_id, error, retry_at),
                  claimed.id, claimed.attempts)
        history = (status, reason or error, at)
        return self._write(lambda cur: self._finished(cur, claimed.id, shape, params, history, request_id, now))

    def _finished(self, cur: Any, row_id: int, shape: tuple[bool, bool, bool], params: tuple[Any, ...],
                  history: tuple[Any, ...], request_id: str | None, now: datetime) -> str | None:
        sql = self.sql
        if sql.pg:  # the outcome and its history row in one round trip; early statuses read under their lock
            cur.execute(sql.finish_recorded(*shape), (*params, *history))
            found, early = cur.fetchone(), True
        else:  # the outcome says whether early statuses wait for it; then its history row
            cur.execute(_finish_noting_early(sql, shape), params)
            found = cur.fetchone()
            if found is not None:
                cur.execute(sql.finish_recorded(*shape), (*history, row_id))
            early = found is not None and shape[0] and bool(found[2])
        if found is None:
            return None
        recorded = found[0]  # a retry is recorded cancelled when a cancel came meanwhile
        if recorded == "sent" and request_id and early:
            receipts.on_sent(cur, sql, row_id, request_id, now)
        return str(recorded)

    def pause(self, claimed: Claimed, now: datetime, retry_at: datetime, error: str) -> str | None:
        """Put a claimed send back (`scheduled` at `retry_at`, reason `paused: ...`) without counting
        its attempt: the provider refused the credentials, not the message. Returns the status
        recorded (`cancelled` when a cancel came during the attempt), or None if the claim was lost.

        Giving the attempt back keeps `attempts` a fencing token: a later claim takes it up again,
        never down to the value of a claim older than this one."""
        sql, at = self.sql, self.sql.time(now)
        reason = f"{PAUSED}: {error}"[:500]

        def op(cur: Any) -> str | None:
            cur.execute(sql.pause, (reason, error[:1000], sql.time(retry_at), at, claimed.id, claimed.attempts))
            found = cur.fetchone()
            if found is None:
                return None
            cur.execute(sql.add_history, (claimed.id, found[0], found[1], at))
            return str(found[0])

        return self._write(op)
