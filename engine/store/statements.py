"""SQL for the hot write paths, written once and run on the driver's cursor.

SQLAlchemy Core builds a statement, looks up its cache key and processes every bound value on
each call: about 0.1 ms a statement, and an event batch runs thousands. The statements here
skip that. They are plain SQL that both databases accept (`?` placeholders become `%s` for
PostgreSQL's driver), and they take values already in the driver's form: `time()` and
`channels()` turn a value into exactly what the Core tables of `tables.py` store, so rows
written either way read and compare the same (SQLite compares times as text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, overload

from .tables import LIVE_ROW

PENDING = "status IN ('scheduled', 'queued')"
TAKEN = "((status = 'sent' AND sent_at > ?) OR (status = 'sending' AND id <> ?))"  # binds: since, the claimed row's id

SEND_COLUMNS = ("notification", "recipient_id", "event_id", "key", "category", "channels", "template_key", "template",
                "variant", "idempotency_key", "throttle_key", "payload", "send_at", "due_at", "status", "reason",
                "attempts", "created_at", "updated_at")
EVENT_COLUMNS = ("id", "type", "occurred_at", "received_at", "payload")


class Sql:
    """A statement written once with `?` placeholders and read from a `Statements` in its driver's
    placeholders: converted on the first read, it is then a plain attribute of that `Statements`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Sql: ...
    @overload
    def __get__(self, obj: Statements, owner: type | None = None) -> str: ...
    def __get__(self, obj: Statements | None, owner: type | None = None) -> Sql | str:
        if obj is None:
            return self
        text: str = obj.native(self.text)
        obj.__dict__[self.name] = text  # an instance attribute: later reads do not come here
        return text


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (with ESCAPE '/') matching text that starts with `prefix`."""
    return prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def prefix_end(prefix: str) -> str:
    """The least text after every text that starts with `prefix`, in code point order (the order
    of SQLite's BINARY and PostgreSQL's "C" collation): text starts with `prefix` exactly when it
    is in [prefix, prefix_end(prefix)). `prefix` has a character below U+10FFFF."""
    head = prefix.rstrip("\U0010ffff")
    last = ord(head[-1]) + 1
    return head[:-1] + chr(0xE000 if last == 0xD800 else last)  # no surrogates in stored text


class Statements:
    """The statements of one dialect, and the conversions to its driver's values."""

    CHUNK = 500  # rows per multi-row statement: far under both databases' limits on parameters
    UNION_PARTS = 100  # SELECTs per UNION: SQLite takes 500 at most

    # A send whose idempotency key a live or sent row holds is that send: nothing is inserted.
    insert_send = Sql(f"INSERT INTO notifications ({', '.join(SEND_COLUMNS)}) "
                      f"VALUES ({', '.join('?' * len(SEND_COLUMNS))}) "
                      f"ON CONFLICT (idempotency_key) WHERE {LIVE_ROW} DO NOTHING")
    insert_send_returning_id = Sql(insert_send.text + " RETURNING id")
    # A cancel writes its history rows first (they select the rows the update then changes).
    cancel_history = Sql("INSERT INTO notification_history (notification_id, status, reason, at) "
                         "SELECT id, 'cancelled', ?, ? FROM notifications "
                         f"WHERE notification = ? AND key = ? AND {PENDING}")
    cancel = Sql(f"UPDATE notifications SET status = 'cancelled', reason = ?, updated_at = ? "
                 f"WHERE notification = ? AND key = ? AND {PENDING}")
    # PostgreSQL: a cancel first locks the rows it may change, so that an attempt's outcome cannot
    # move one from `sending` to `scheduled` between the statements below (each reads anew).
    lock_cancelled = Sql("SELECT id FROM notifications WHERE notification = ? AND key = ? "
                         "AND status IN ('scheduled', 'queued', 'sending') ORDER BY id FOR UPDATE")
    # A row being sent is not ended (Courier may yet accept it): its attempt, if it fails, ends it.
    cancel_in_flight = Sql("UPDATE notifications SET cancel_reason = ?, updated_at = ? "
                           "WHERE notification = ? AND key = ? AND status = 'sending'")
    upsert_recipient = Sql("INSERT INTO recipients (id, profile, timezone, updated_at) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (id) DO UPDATE SET profile = excluded.profile, timezone = excluded.timezone, "
                           "updated_at = excluded.updated_at WHERE recipients.profile <> excluded.profile "
                           "OR recipients.timezone IS DISTINCT FROM excluded.timezone")
    open_digest = Sql("INSERT INTO digests (bucket, notification, recipient_id, recipient, period_start, period_end, "
                      "send_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'collecting') ON CONFLICT (bucket) DO NOTHING")
    digest_status = Sql("SELECT status FROM digests WHERE bucket = ?")
    add_digest_item = Sql("INSERT INTO digest_items (bucket, event_id, item, occurred_at) VALUES (?, ?, ?, ?)")
    claim = Sql("UPDATE notifications SET status = 'sending', claimed_at = ?, attempts = attempts + 1, updated_at = ? "
                "WHERE id = ? AND status = 'queued' RETURNING id, notification, recipient_id, category, channels, "
                "throttle_key, idempotency_key, payload, attempts, send_at, COALESCE(due_at, send_at), template_key, "
                "template")
    lock_recipient = Sql("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))")
    # PostgreSQL: the claim that also takes its recipient's lock, in the same round trip (as the
    # claim and then `lock_recipient` would: the statements after it see every claim committed first).
    claim_locking = Sql(claim.text + ", pg_advisory_xact_lock(hashtextextended(recipient_id, 0))")
    skip = Sql("UPDATE notifications SET status = 'skipped', reason = ?, updated_at = ? WHERE id = ?")
    # What a claim's verdict settled on at send time: the template id in force and the channels kept.
    settle = Sql("UPDATE notifications SET template = ?, channels = ? WHERE id = ?")
    # A send put back without counting its attempt (binds: reason, last_error, send_at, updated_at, id, attempts).
    pause = Sql("UPDATE notifications "
                "SET status = CASE WHEN cancel_reason IS NULL THEN 'scheduled' ELSE 'cancelled' END, "
                "reason = CASE WHEN cancel_reason IS NULL THEN ? ELSE cancel_reason END, last_error = ?, send_at = ?, "
                "attempts = attempts - 1, updated_at = ? WHERE id = ? AND status = 'sending' AND attempts = ? "
                "RETURNING status, reason")
    add_history = Sql("INSERT INTO notification_history (notification_id, status, reason, at) VALUES (?, ?, ?, ?)")
    preferences = Sql("SELECT key, enabled FROM preferences WHERE recipient_id = ?")
    # Claims whose worker died (binds: updated_at, claimed before): ended by a cancel that reached them...
    end_cancelled_claims = Sql("UPDATE notifications SET status = 'cancelled', reason = cancel_reason, updated_at = ? "
                               "WHERE status = 'sending' AND claimed_at < ? AND cancel_reason IS NOT NULL "
                               "RETURNING id, reason")
    # ...or failed when they used up their attempts (binds: reason, updated_at, claimed before, attempts).
    end_spent_claims = Sql("UPDATE notifications SET status = 'failed', reason = ?, updated_at = ? "
                           "WHERE status = 'sending' AND claimed_at < ? AND attempts >= ? RETURNING id")
    all_rows = Sql("SELECT id, notification, recipient_id, event_id, key, category, channels, template_key, template, "
                   "variant, idempotency_key, send_at, status, reason, payload, COALESCE(due_at, send_at) "
                   "FROM notifications ORDER BY id")
    next_send = Sql("SELECT min(send_at) FROM notifications WHERE status = 'scheduled'")
    next_digest = Sql("SELECT min(send_at) FROM digests WHERE status = 'collecting'")
    due_digests = Sql("SELECT bucket, notification, recipient_id, recipient, period_start, period_end, send_at "
                      "FROM digests "
                      "WHERE status = 'collecting' AND send_at <= ? ORDER BY send_at LIMIT ?")
    digest_items = Sql("SELECT item FROM digest_items WHERE bucket = ? ORDER BY occurred_at, id")
    count_digest_items = Sql("SELECT count(*) FROM digest_items WHERE bucket = ?")
    close_digest = Sql("UPDATE digests SET status = 'closed' WHERE bucket = ? AND status = 'collecting'")
    # What counts against a throttle or rate limit: sent within the window, or being sent by another worker.
    sent_with_key = Sql("SELECT count(*) FROM notifications WHERE notification = ? AND recipient_id = ? "
                        f"AND throttle_key = ? AND {TAKEN}")
    sent_without_key = Sql("SELECT count(*) FROM notifications WHERE notification = ? AND recipient_id = ? "
                           f"AND throttle_key IS NULL AND {TAKEN}")

    def __init__(self, dialect: str):
        self.pg = dialect == "postgresql"
        self._channels: dict[tuple[str, ...], Any] = {}
        self._read_channels: dict[str, tuple[str, ...]] = {}
        self._built: dict[tuple[Any, ...], str] = {}  # statements whose text depends on their arguments
        self._times: dict[datetime, Any] = {}
        if self.pg:
            from psycopg.types.json import Json

            self._json = Json

    def native(self, sql: str) -> str:
        """A statement written with `?` placeholders, in the driver's."""
        return sql.replace("?", "%s") if self.pg else sql

    def _once(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        return self.composed(key, lambda: self.native(build()))

    def composed(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        """The statement `build` makes of others already in the driver's placeholders, built once
        for `key` (a name and the shape it depends on)."""
        found = self._built.get(key)
        if found is None:
            found = self._built[key] = build()
        return found

    @staticmethod
    def cursor(conn: Any) -> Any:
        """The driver's cursor, inside the transaction `conn` (a SQLAlchemy Connection) holds."""
        return conn.connection.cursor()

    def begin(self, cur: Any) -> None:
        """Start a write transaction on a pooled driver connection (PostgreSQL's driver starts one
        by itself); on SQLite, take the write lock up front, as `db.connect` has SQLAlchemy do."""
        if not self.pg:
            cur.execute("BEGIN IMMEDIATE")

    def time(self, value: datetime | None) -> Any:
        """As `tables.UTCDateTime` binds it: UTC; on SQLite the text SQLAlchemy's DATETIME stores.
        Each UTC time is written once: a batch's times repeat (its now, a send's due and send
        time, the events of one moment). (A time of another zone is keyed by its UTC time: two
        equal times of one zone may be different instants, in the hour its clocks go back.)"""
        if value is None:
            return None
        if value.tzinfo is not UTC and value.tzinfo is not None:
            value = value.astimezone(UTC)
        found = self._times.get(value)
        if found is None:
            if len(self._times) >= 4096:
                self._times.clear()
            found = self._times[value] = value if self.pg else value.isoformat(" ", "microseconds")[:26]
        return found

    def channels(self, channels: tuple[str, ...]) -> Any:
        """A tuple of channels as the JSON column `notifications.channels` binds it (a rule's
        channels are few and repeat: each is encoded once)."""
        found = self._channels.get(channels)
        if found is None:
            found = self._channels[channels] = self._json(list(channels)) if self.pg else json.dumps(list(channels))
        return found

    def insert_events(self, n: int) -> str:
        """Insert `n` events at once; RETURNING the ids that were new (a stored id is a duplicate)."""
        return self._once(("insert_events", n), lambda: f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES "
                          + ", ".join(["(?, ?, ?, ?, ?)"] * n) + " ON CONFLICT (id) DO NOTHING RETURNING id")

    def digest_statuses(self, n: int) -> str:
        """The status of each of `n` digest buckets that exist (by their key: a condition on the
        status would have SQLite scan the due index, every digest collecting)."""
        return self._once(("digest_statuses", n), lambda: "SELECT bucket, status FROM digests "
                          f"WHERE bucket IN ({', '.join('?' * n)})")

    @property
    def collecting_batch(self) -> str:
        """The batch of a recipient and key still collecting at an item's time, the one due first
        (binds: `batch_binds`). A batch's buckets are a range of the digests' key (a LIKE of the
        prefix would not do: SQLite's ignores case), among the recipient's digests of the
        notification (`ix_digests_recipient`; SQLite may search the key's range instead), where the
        due index would scan every digest collecting."""
        def build() -> str:
            status, collate = ("status", ' COLLATE "C"') if self.pg else ("+status", "")
            return (f"SELECT bucket FROM digests WHERE notification = ? AND recipient_id = ? AND {status} = "
                    f"'collecting' AND bucket >= ?{collate} AND bucket < ?{collate} AND send_at > ? "
                    "ORDER BY send_at LIMIT 1")

        return self._once(("collecting_batch",), build)

    def batch_binds(self, notification: str, recipient_id: str, prefix: str, at: datetime) -> tuple[Any, ...]:
        """The binds of `collecting_batch`: a batch's buckets start with `prefix`; the one still collecting at `at`."""
        return notification, recipient_id, prefix, prefix_end(prefix), self.time(at)

    def ended_by_cancel(self, n: int) -> str:
        """Which of `n` (notification, key) pairs have a row a cancel_on event ended, or reached
        while it was being sent (binds: each pair, then the reason's prefix twice). A UNION:
        each part is a search of the match index, where an OR of the pairs would have the planner
        scan every cancelled row. The prefix is found by position, not by a LIKE: SQLite prepares
        a statement again whenever the pattern of a LIKE is bound (0.1 ms for this one)."""
        starts = "strpos({}, ?) = 1" if self.pg else "instr({}, ?) = 1"
        return self._once(("ended_by_cancel", n), lambda: " UNION ".join(
            ["SELECT notification, key FROM notifications WHERE notification = ? AND key = ? AND ((status = "
             f"'cancelled' AND {starts.format('reason')}) OR {starts.format('cancel_reason')})"] * n))

    def cancellable(self, n: int) -> str:
        """Which of `n` (notification, key) pairs have rows a cancel ends or reaches: pending, or
        being sent (binds: each pair). A UNION, as `ended_by_cancel` (`UNION_PARTS` at most)."""
        return self._once(("cancellable", n), lambda: " UNION ".join(
            ["SELECT notification, key FROM notifications WHERE notification = ? AND key = ? "
             "AND status IN ('scheduled', 'queued', 'sending')"] * n))

    def recent(self, n: int) -> str:
        """Sent or being sent to a recipient in `n` categories (binds: recipient, categories, TAKEN's)."""
        return self._once(("recent", n), lambda: f"SELECT count(*) FROM notifications WHERE recipient_id = ? "
                          f"AND category IN ({', '.join('?' * n)}) AND {TAKEN}")

    def finish(self, sent: bool, error: bool, retry: bool) -> str:
        """Record an attempt's outcome on a row still claimed by that attempt (binds: status, reason,
        updated_at, [sent_at, request_id], [last_error], [send_at], id, attempts)."""
        def build() -> str:
            sets = ["status = ?", "reason = ?", "updated_at = ?"]
            if sent:
                sets += ["sent_at = ?", "request_id = ?"] + ([] if error else ["last_error = NULL"])
            if error:
                sets.append("last_error = ?")
            if retry:
                sets.append("send_at = ?")
                # A cancel that came during the attempt ends the row instead of arming a retry.
                sets[:2] = ["status = CASE WHEN cancel_reason IS NULL THEN ? ELSE 'cancelled' END",
                            "reason = CASE WHEN cancel_reason IS NULL THEN ? ELSE cancel_reason END"]
            return (f"UPDATE notifications SET {', '.join(sets)} WHERE id = ? AND status = 'sending' AND attempts = ? "
                    "RETURNING status, reason")

        return self._once(("finish", sent, error, retry), build)

    def finish_recorded(self, sent: bool, error: bool, retry: bool) -> str:
        """`finish`, and the history row of the status it recorded, whose reason is the row's when
        that status is not the one asked for (a cancel came during the attempt), else the one
        given (binds: finish's, then the status asked for, the reason given, the time). RETURNING
        the status recorded. On PostgreSQL one statement; SQLite, which has no writes in a WITH,
        runs `finish` and then this history row of the row it just changed (binds: the three, id)."""
        def build() -> str:
            history = ("INSERT INTO notification_history (notification_id, status, reason, at) "
                       "SELECT id, status, CASE WHEN status = ? THEN ? ELSE reason END, ? FROM ")
            if not self.pg:
                return history + "notifications WHERE id = ?"
            returning = self.finish(sent, error, retry).replace("%s", "?").replace("RETURNING status, reason",
                                                                                   "RETURNING id, status, reason")
            return f"WITH f AS ({returning}) {history}f RETURNING status"

        return self._once(("finish_recorded", sent, error, retry), build)

    def queue_due(self, ids: int) -> str:
        """Hand out up to a limit of due rows, earliest first (binds: queued_at, updated_at, then DUE's
        binds, then `ids` row ids when given, then the limit, then DUE's binds again). RETURNING id, send_at."""
        def build() -> str:
            due = ("((status = 'scheduled' AND send_at <= ?) OR (status = 'queued' AND queued_at < ?) "
                   "OR (status = 'sending' AND claimed_at < ? AND cancel_reason IS NULL))")
            among = f" AND id IN ({', '.join('?' * ids)})" if ids else ""
            lock = " FOR UPDATE SKIP LOCKED" if self.pg else ""
            return (f"UPDATE notifications SET status = 'queued', queued_at = ?, updated_at = ? WHERE id IN "
                    f"(SELECT id FROM notifications WHERE {due}{among} ORDER BY send_at LIMIT ?{lock}) AND {due} "
                    "RETURNING id, send_at")

        return self._once(("queue_due", ids), build)

    def read_time(self, value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime (as `tables.UTCDateTime` reads it)."""
        if value is None:
            return None
        found: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)

    def read_channels(self, value: Any) -> tuple[str, ...]:
        """`notifications.channels` as a tuple (the few stored spellings are decoded once each)."""
        if self.pg:
            return tuple(value)
        found = self._read_channels.get(value)
        if found is None:
            found = tuple(json.loads(value))
            if len(self._read_channels) < 256:
                self._read_channels[value] = found
        return found

    def chunks(self, items: Sequence[Any], size: int = CHUNK) -> list[Sequence[Any]]:
        return [items[i:i + size] for i in range(0, len(items), size)]
