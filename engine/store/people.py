"""People: the recipients' profiles (as the latest event gave them) and their preferences."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from .codec import Codec
from .statements import Statements
from .tables import preferences, recipients
from .transactions import Transactions

_FORGET_PREFERENCE = "DELETE FROM preferences WHERE recipient_id = ? AND key = ?"
_SET_PREFERENCE = "INSERT INTO preferences (recipient_id, key, enabled, updated_at) VALUES (?, ?, ?, ?)"
_IS_OFF = "SELECT 1 FROM preferences WHERE recipient_id = ? AND key = ? AND enabled = ?"
_COUNT_UNSUBSCRIBE = "INSERT INTO unsubscribes (scope, at) VALUES (?, ?)"


def upsert_recipients(cur: Any, sql: Statements, codec: Codec, people: Mapping[str, Mapping[str, Any]],
                      now: datetime) -> None:
    """Store each person's profile; a profile that did not change leaves its row as it was."""
    if people:
        at = sql.time(now)
        cur.executemany(sql.upsert_recipient, [(rid, codec.dumps(dict(p)), p.get("timezone"), at)
                                               for rid, p in sorted(people.items())])


class People(Transactions):
    """Recipients and their preferences."""

    def import_recipients(self, people: Iterable[Mapping[str, Any]], now: datetime) -> int:
        """Store the profiles of `people` (each with an `id`); returns how many people there were."""
        found = {str(p["id"]): p for p in people}
        self._write(lambda cur: upsert_recipients(cur, self.sql, self.codec, found, now))
        return len(found)

    def recipient(self, recipient_id: str) -> dict[str, Any] | None:
        with self.reader.connect() as conn:
            stored = conn.scalar(select(recipients.c.profile).where(recipients.c.id == recipient_id))
        return self._profile(stored) if stored else None

    def people(self) -> dict[str, dict[str, Any]]:
        """Every recipient's profile, by id."""
        with self.reader.connect() as conn:
            return {rid: self._profile(p) for rid, p in conn.execute(select(recipients.c.id, recipients.c.profile))}

    def recipient_by_email(self, email: str) -> dict[str, Any] | None:
        with self.reader.connect() as conn:
            for stored in conn.scalars(select(recipients.c.profile)):
                person = self._profile(stored)
                if person.get("email", "").lower() == email.lower():
                    return person
        return None

    def _profile(self, stored: str) -> dict[str, Any]:
        found: dict[str, Any] = self.codec.loads(stored)
        return found

    def preferences(self, recipient_id: str) -> dict[str, bool]:
        with self.reader.connect() as conn:
            p = preferences.c
            rows = conn.execute(select(p.key, p.enabled).where(p.recipient_id == recipient_id))
            return {k: bool(v) for k, v in rows}

    def set_preferences(self, recipient_id: str, values: Mapping[str, bool | None], now: datetime) -> dict[str, bool]:
        """Set (True/False) or clear (None) preference keys; returns the recipient's preferences."""
        sql, at = self.sql, self.sql.time(now)

        def op(cur: Any) -> None:
            for key, enabled in values.items():
                cur.execute(sql.native(_FORGET_PREFERENCE), (recipient_id, key))
                if enabled is not None:
                    cur.execute(sql.native(_SET_PREFERENCE), (recipient_id, key, bool(enabled), at))

        self._write(op)
        return self.preferences(recipient_id)

    def unsubscribe(self, recipient_id: str, scope: str, now: datetime) -> bool:
        """Turn off `scope` (a notification id, or `category:<name>`) for a recipient, and count the
        unsubscribe at `now`; False (nothing counted) when it was off already (a second click)."""
        sql, at, key = self.sql, self.sql.time(now), scope.removeprefix("category:")

        def op(cur: Any) -> bool:
            cur.execute(sql.native(_IS_OFF), (recipient_id, key, False))
            if cur.fetchone() is not None:
                return False
            cur.execute(sql.native(_FORGET_PREFERENCE), (recipient_id, key))
            cur.execute(sql.native(_SET_PREFERENCE), (recipient_id, key, False, at))
            cur.execute(sql.native(_COUNT_UNSUBSCRIBE), (scope, at))
            return True

        return bool(self._write(op))
