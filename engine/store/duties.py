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
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Mapping, Sequence

from sqlalchemy import Table, and_, delete, exists, func, or_, select, update

from .codec import PREFIX, Codec
from .repository import PENDING, Store
from .tables import (digest_items, digests, early_receipts, events, history, notifications, preferences,
                     recipients, webhook_receipts)

BATCH = 500
ERASED = "recipient erased"
# The stored JSON, each with its table's primary key: what erasure scrubs and reencrypt rewrites.
PAYLOADS: tuple[tuple[Table, str, str], ...] = (
    (events, "id", "payload"), (recipients, "id", "profile"), (notifications, "id", "payload"),
    (digests, "bucket", "recipient"), (digest_items, "id", "item"))
_N = notifications.c
_FINISHED = _N.status.notin_(PENDING + ("sending",))


def _pages(conn: Any, table: Table, key: str, column: str, extra: Sequence[Any] = ()) -> Iterator[list[Any]]:
    """(primary key, value, *extra) of every row with a value, BATCH at a time in key order
    (keyset pagination: a rewritten row is never read twice)."""
    pk, col, last = table.c[key], table.c[column], None
    while True:
        stmt = select(pk, col, *extra).where(col.is_not(None)).order_by(pk).limit(BATCH)
        if last is not None:
            stmt = stmt.where(pk > last)
        rows = conn.execute(stmt).all()
        if not rows:
            return
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

    def like(self, column: Any) -> Any:
        """SQL: the column holds one of the identifiers (any case)."""
        return or_(*[func.lower(column).contains(n.lower(), autoescape=True) for n in self.needles])


def erase(store: Store, person_id: str, now: datetime) -> dict[str, int]:
    """Remove or redact everything the store holds about one person, in one transaction; returns
    how many rows of each table were removed or redacted. Sends still to go to them are cancelled
    (`recipient erased`); sent ones stay as rows, for the statistics, without anything that names
    the person."""
    scrub = Scrubber(person_id, store.recipient(person_id))
    touched: dict[str, set[Any]] = {t.name: set() for t in (events, notifications, history, digests, digest_items)}
    removed: dict[str, int] = {}
    with store._tx() as conn:
        theirs = _N.recipient_id == person_id
        rows = conn.execute(select(_N.id, _N.request_id).where(theirs)).all()
        request_ids = [r for _, r in rows if r]
        conn.execute(update(notifications).where(theirs, _N.status.in_(PENDING))
                     .values(status="cancelled", reason=ERASED, updated_at=now))
        conn.execute(update(notifications).where(theirs, _N.status == "sending").values(cancel_reason=ERASED))
        conn.execute(update(notifications).where(theirs).values(recipient_id=scrub.pseudonym, payload=None,
                                                                last_error=None, updated_at=now))
        touched["notifications"].update(i for i, _ in rows)
        removed["preferences"] = conn.execute(delete(preferences).where(preferences.c.recipient_id == person_id)).rowcount
        removed["recipients"] = conn.execute(delete(recipients).where(recipients.c.id == person_id)).rowcount
        removed["digests"] = conn.execute(delete(digests).where(digests.c.recipient_id == person_id)).rowcount
        for table in (early_receipts, webhook_receipts):
            removed[table.name] = conn.execute(delete(table).where(table.c.message_id.in_(request_ids))).rowcount if request_ids else 0
        touched["events"] |= _scrub_payloads(conn, store.codec, events, "id", "payload", scrub)
        named = touched["events"]  # the events that held the person: what was rendered from them may name them
        touched["notifications"] |= _scrub_payloads(conn, store.codec, notifications, "id", "payload", scrub,
                                                    lambda r: r.event_id in named)
        touched["digests"] |= _scrub_payloads(conn, store.codec, digests, "bucket", "recipient", scrub)
        touched["digest_items"] |= _scrub_payloads(conn, store.codec, digest_items, "id", "item", scrub,
                                                   lambda r: r.event_id in named)
        touched["notifications"] |= _scrub_columns(conn, notifications, "id", scrub, (
            "recipient_id", "event_id", "key", "idempotency_key", "throttle_key", "reason", "last_error", "cancel_reason"))
        touched["notification_history"] = _scrub_columns(conn, history, "id", scrub, ("reason",))
        touched["events"] |= _scrub_columns(conn, events, "id", scrub, ("id",))
        touched["digest_items"] |= _scrub_columns(conn, digest_items, "id", scrub, ("event_id",))
    return {**{f"{name} removed": n for name, n in removed.items()},
            **{f"{name} redacted": len(keys) for name, keys in touched.items()}}


def _scrub_payloads(conn: Any, codec: Codec, table: Table, key: str, column: str, scrub: Scrubber,
                    names: Callable[[Any], bool] | None = None) -> set[Any]:
    """The rows whose stored JSON held the person, rewritten without them (`names(row)`: also
    without text that is exactly their name; the row has its `event_id`)."""
    changed = set()
    extra = [table.c.event_id] if names is not None else []
    for page in _pages(conn, table, key, column, extra):
        for row in page:
            pk, stored = row[0], row[1]
            value = codec.loads(stored)
            clean = scrub.value(value, names(row) if names is not None else False)
            if clean != value:
                conn.execute(update(table).where(table.c[key] == pk).values({column: codec.dumps(clean)}))
                changed.add(pk)
    return changed


def _scrub_columns(conn: Any, table: Table, key: str, scrub: Scrubber, columns: tuple[str, ...]) -> set[Any]:
    """Rows whose text columns hold an identifier: it is replaced (LIKE finds them; they are few)."""
    found = conn.execute(select(table.c[key], *[table.c[c] for c in columns])
                         .where(or_(*[scrub.like(table.c[c]) for c in columns]))).all()
    for row in found:
        values = {c: scrub.text(v) for c, v in zip(columns, row[1:]) if isinstance(v, str)}
        conn.execute(update(table).where(table.c[key] == row[0]).values(values))
    return {row[0] for row in found}


# -- retention -------------------------------------------------------------------------------------
def redact_kept(conn: Any, now: datetime, keep_personal: timedelta) -> dict[str, int]:
    """What retention keeps past `keep_personal` (the events' period) loses its personal data:
    finished sends keep their row (status, times, ids: the statistics) without the rendered message
    or the provider's error text; closed digests keep their row without the items or the recipient;
    a recipient no send, digest or event of that period names is removed, with the preferences
    that only restate a default. Opt-outs stay: honouring them is the law in most places, and they
    hold no contact data."""
    cutoff = now - keep_personal
    old = and_(_FINISHED, _N.updated_at < cutoff)
    redacted = {"notifications redacted": conn.execute(update(notifications).where(
        old, or_(_N.payload.is_not(None), _N.last_error.is_not(None))).values(payload=None, last_error=None)).rowcount}
    closed = select(digests.c.bucket).where(digests.c.status == "closed", digests.c.send_at < cutoff)
    redacted["digest_items"] = conn.execute(delete(digest_items).where(digest_items.c.bucket.in_(closed))).rowcount
    r = recipients.c
    still_named = or_(
        exists().where(_N.recipient_id == r.id, or_(_N.status.in_(PENDING + ("sending",)), _N.updated_at >= cutoff)),
        exists().where(digests.c.recipient_id == r.id, digests.c.status == "collecting"))
    gone = select(r.id).where(r.updated_at < cutoff, ~still_named)
    redacted["preferences"] = conn.execute(delete(preferences).where(
        preferences.c.recipient_id.in_(gone), preferences.c.enabled.is_(True))).rowcount
    redacted["recipients"] = conn.execute(delete(recipients).where(r.id.in_(gone))).rowcount
    redacted["early_receipts"] = conn.execute(delete(early_receipts).where(early_receipts.c.received_at < cutoff)).rowcount
    return redacted


# -- re-encrypting ---------------------------------------------------------------------------------
def reencrypt(store: Store, keys: tuple[str, ...], progress: Callable[[str, int], None] | None = None) -> dict[str, dict[str, int]]:
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

    report: dict[str, dict[str, int]] = {}
    for table, key, column in PAYLOADS:
        counts = report[table.name] = {"rewritten": 0, "encrypted": 0, "current": 0}
        last = None
        while True:
            with store._tx() as conn:  # one batch per transaction, locked as it is read
                stmt = select(table.c[key], table.c[column]).where(table.c[column].is_not(None)).order_by(table.c[key]).limit(BATCH)
                if last is not None:
                    stmt = stmt.where(table.c[key] > last)
                rows = conn.execute(stmt.with_for_update() if store.dialect == "postgresql" else stmt).all()
                for pk, stored in rows:
                    if current(stored):
                        counts["current"] += 1
                        continue
                    fresh = codec.rotate(stored) if stored.startswith(PREFIX) else codec.dumps(codec.loads(stored))
                    conn.execute(update(table).where(table.c[key] == pk).values({column: fresh}))
                    counts["rewritten" if stored.startswith(PREFIX) else "encrypted"] += 1
            if not rows:
                break
            last = rows[-1][0]
            if progress is not None:
                progress(table.name, sum(counts.values()))
    return report
