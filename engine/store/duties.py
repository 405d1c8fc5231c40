"""Duties toward the people in the store: erase one person, redact what retention keeps, and
re-encrypt every stored payload under the newest key.

Personal data lives in the stored JSON (events' envelopes, the rendered Courier messages, digest
items and recipients, profiles) and, for a person's id, in a few text columns (a notification's
recipient, keys built from ids, an event id that names a person). Erasing walks all of them: a
person object with that id becomes `{"id": <pseudonym>}`, and any text holding the id, the email
address or the phone number has it replaced by the pseudonym (`erased-<random>`, one per erasure,
so that rows stay distinct and counts stay right).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from .codec import PREFIX, Codec
from .repository import Store
from .statements import Statements, like_prefix

Run = Callable[[str, Sequence[Any]], Any]  # runs a statement written with `?` placeholders; returns the cursor

BATCH = 500
ERASED = "recipient erased"
# The stored JSON, each with its table's primary key: what erasure scrubs and reencrypt rewrites.
PAYLOADS: tuple[tuple[str, str, str], ...] = (
    ("events", "id", "payload"), ("recipients", "id", "profile"), ("notifications", "id", "payload"),
    ("digests", "bucket", "recipient"), ("digest_items", "id", "item"))


def _runner(cur: Any, sql: Statements) -> Run:
    def run(statement: str, params: Sequence[Any]) -> Any:
        cur.execute(sql.native(statement), tuple(params))
        return cur

    return run


def _page(run: Run, table: str, key: str, column: str, last: Any, extra: str = "", lock: bool = False) -> list[Any]:
    """(primary key, value[, extra]) of up to BATCH rows with a value, in key order after `last`
    (keyset pagination: a rewritten row is never read twice); `lock`: locked as they are read."""
    after = f" AND {key} > ?" if last is not None else ""
    statement = (f"SELECT {key}, {column}{', ' + extra if extra else ''} FROM {table} WHERE {column} IS NOT NULL"
                 f"{after} ORDER BY {key} LIMIT {BATCH}{' FOR UPDATE' if lock else ''}")
    return list(run(statement, () if last is None else (last,)).fetchall())


def _pages(run: Run, table: str, key: str, column: str, extra: str = "") -> Iterator[list[Any]]:
    """Every row with a value, a page at a time (`_page`)."""
    last = None
    while rows := _page(run, table, key, column, last, extra):
        yield rows
        last = rows[-1][0]


# -- erasing one person ----------------------------------------------------------------------------
class Scrubber:
    """Replaces one person's identifiers in text and in JSON values."""

    def __init__(self, person_id: str, profile: Mapping[str, Any] | None):
        self.person_id = person_id
        self.pseudonym = f"erased-{secrets.token_hex(6)}"
        profile = profile or {}
        needles = [person_id] + [str(profile[k]) for k in ("email", "phone") if profile.get(k)]
        self.needles = [n for n in needles if n]
        self._pattern = re.compile("|".join(re.escape(n) for n in sorted(self.needles, key=len, reverse=True)), re.I)
        self.name = str(profile.get("name") or "")

    def text(self, value: str) -> str:
        return self._pattern.sub(self.pseudonym, value)

    def value(self, value: Any, names: bool = False) -> Any:
        """`value` without the person: their person objects, and text holding their identifiers.
        With `names` (a payload rendered from an event that held the person) a text that is exactly
        their name goes too, outside other people's objects: a namesake keeps theirs."""
        if isinstance(value, dict):
            if value.get("id") == self.person_id:
                return {"id": self.pseudonym}
            names = names and "id" not in value
            return {k: self.value(v, names) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, names) for v in value]
        if isinstance(value, str):
            return self.pseudonym if names and self.name and value == self.name else self.text(value)
        return value

    def like(self, columns: Sequence[str]) -> tuple[str, list[str]]:
        """SQL, and its binds: one of the columns holds one of the identifiers (any case)."""
        condition = " OR ".join(f"lower({c}) LIKE ? ESCAPE '/'" for c in columns for _ in self.needles)
        return condition, ["%" + like_prefix(n.lower()) for _ in columns for n in self.needles]


def erase(store: Store, person_id: str, now: datetime) -> dict[str, int]:
    """Remove or redact everything the store holds about one person, in one transaction; returns
    how many rows of each table were removed or redacted. Sends still to go to them are cancelled
    (`recipient erased`); sent ones stay as rows, for the statistics, without anything that names
    the person."""
    scrub = Scrubber(person_id, store.recipient(person_id))
    return store._write(lambda cur: _erase(_runner(cur, store.sql), store.sql.time(now), store.codec, scrub))


def _erase(run: Run, at: Any, codec: Codec, scrub: Scrubber) -> dict[str, int]:
    touched: dict[str, set[Any]] = {t: set() for t in ("events", "notifications", "notification_history", "digests",
                                                       "digest_items")}
    removed, notified = _remove(run, at, scrub)
    touched["notifications"] |= notified
    touched["events"] |= _scrub_payloads(run, codec, "events", "id", "payload", scrub)
    named = touched["events"]  # the events that held the person: what was rendered from them may name them
    touched["notifications"] |= _scrub_payloads(run, codec, "notifications", "id", "payload", scrub,
                                                lambda event_id: event_id in named)
    touched["digests"] |= _scrub_payloads(run, codec, "digests", "bucket", "recipient", scrub)
    touched["digest_items"] |= _scrub_payloads(run, codec, "digest_items", "id", "item", scrub,
                                               lambda event_id: event_id in named)
    touched["notifications"] |= _scrub_columns(run, "notifications", "id", scrub, (
        "recipient_id", "event_id", "key", "idempotency_key", "throttle_key", "reason", "last_error", "cancel_reason"))
    touched["notification_history"] = _scrub_columns(run, "notification_history", "id", scrub, ("reason",))
    touched["events"] |= _scrub_columns(run, "events", "id", scrub, ("id",))
    touched["digest_items"] |= _scrub_columns(run, "digest_items", "id", scrub, ("event_id",))
    return {**{f"{name} removed": n for name, n in removed.items()},
            **{f"{name} redacted": len(keys) for name, keys in touched.items()}}


def _remove(run: Run, at: Any, scrub: Scrubber) -> tuple[dict[str, int], set[Any]]:
    """Their sends cancelled (or, in flight, marked to end cancelled) and given the pseudonym, and
    the rows that are theirs alone deleted: how many of each table, and the ids of their sends."""
    person_id = scrub.person_id
    rows = run("SELECT id, request_id FROM notifications WHERE recipient_id = ?", (person_id,)).fetchall()
    run("UPDATE notifications SET status = 'cancelled', reason = ?, updated_at = ? "
        "WHERE recipient_id = ? AND status IN ('scheduled', 'queued')", (ERASED, at, person_id))
    run("UPDATE notifications SET cancel_reason = ? WHERE recipient_id = ? AND status = 'sending'", (ERASED, person_id))
    run("UPDATE notifications SET recipient_id = ?, payload = NULL, last_error = NULL, updated_at = ? "
        "WHERE recipient_id = ?", (scrub.pseudonym, at, person_id))
    theirs = (("preferences", "recipient_id"), ("recipients", "id"), ("digests", "recipient_id"))
    removed = {table: run(f"DELETE FROM {table} WHERE {column} = ?", (person_id,)).rowcount for table, column in theirs}
    request_ids = [r for _, r in rows if r]
    chunks = [request_ids[i:i + BATCH] for i in range(0, len(request_ids), BATCH)]
    for table in ("early_receipts", "webhook_receipts"):
        removed[table] = sum(run(f"DELETE FROM {table} WHERE message_id IN ({', '.join('?' * len(chunk))})",
                                 chunk).rowcount for chunk in chunks)
    return removed, {i for i, _ in rows}


def _scrub_payloads(run: Run, codec: Codec, table: str, key: str, column: str, scrub: Scrubber,
                    names: Callable[[Any], bool] | None = None) -> set[Any]:
    """The rows whose stored JSON held the person, rewritten without them (`names(event_id)`: also
    without text that is exactly their name, for a row rendered from that event)."""
    changed = set()
    for page in _pages(run, table, key, column, "event_id" if names is not None else ""):
        for row in page:
            pk, stored = row[0], row[1]
            value = codec.loads(stored)
            clean = scrub.value(value, names(row[2]) if names is not None else False)
            if clean != value:
                run(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (codec.dumps(clean), pk))
                changed.add(pk)
    return changed


def _scrub_columns(run: Run, table: str, key: str, scrub: Scrubber, columns: tuple[str, ...]) -> set[Any]:
    """Rows whose text columns hold an identifier: it is replaced (LIKE finds them; they are few)."""
    condition, binds = scrub.like(columns)
    found = run(f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {condition}", binds).fetchall()
    for row in found:
        values = {c: scrub.text(v) for c, v in zip(columns, row[1:], strict=True) if isinstance(v, str)}
        run(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in values)} WHERE {key} = ?", (*values.values(), row[0]))
    return {row[0] for row in found}


# -- re-encrypting ---------------------------------------------------------------------------------
def reencrypt(store: Store, keys: tuple[str, ...],
              progress: Callable[[str, int], None] | None = None) -> dict[str, dict[str, int]]:
    """Rewrite every stored payload under the first of `keys` (ENGINE_ENCRYPTION_KEY): those under
    an older key are re-encrypted, plain ones (stored before encryption was on) encrypted; those
    already under it are left alone. A batch of rows per transaction: an interrupted run is
    started again and goes on where it was (the rows done are found current and skipped).
    Afterwards the older keys can be dropped from ENGINE_ENCRYPTION_KEY."""
    if not keys:
        raise ValueError("ENGINE_ENCRYPTION_KEY is not set: there is no key to encrypt with")
    from cryptography.fernet import Fernet, InvalidToken

    newest, codec = Fernet(keys[0].encode()), Codec(keys)

    def current(stored: str) -> bool:
        if not stored.startswith(PREFIX):
            return False
        try:
            newest.decrypt(stored[len(PREFIX):].encode())
            return True
        except InvalidToken:
            return False

    return {table: _reencrypt_table(store, codec, current, table, key, column, progress)
            for table, key, column in PAYLOADS}


def _reencrypt_table(store: Store, codec: Codec, current: Callable[[str], bool], table: str, key: str, column: str,
                     progress: Callable[[str, int], None] | None) -> dict[str, int]:
    counts = {"rewritten": 0, "encrypted": 0, "current": 0}
    last = None
    while done := store._write(partial(_reencrypt_page, sql=store.sql, codec=codec, current=current, table=table,
                                       key=key, column=column, last=last)):
        for outcome in done.values():
            counts[outcome] += 1
        last = list(done)[-1]
        if progress is not None:
            progress(table, sum(counts.values()))
    return counts


def _reencrypt_page(cur: Any, sql: Statements, codec: Codec, current: Callable[[str], bool], table: str, key: str,
                    column: str, last: Any) -> dict[Any, str]:
    """One page of rows, locked as it is read (PostgreSQL), rewritten under the newest key: each
    row's key, in order, with what was done ('current', 'rewritten', 'encrypted')."""
    run = _runner(cur, sql)
    done: dict[Any, str] = {}
    for pk, stored in _page(run, table, key, column, last, lock=sql.pg):
        if current(stored):
            done[pk] = "current"
            continue
        fresh = codec.rotate(stored) if stored.startswith(PREFIX) else codec.dumps(codec.loads(stored))
        run(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (fresh, pk))
        done[pk] = "rewritten" if stored.startswith(PREFIX) else "encrypted"
    return done
