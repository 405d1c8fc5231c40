"""The database tables (SQLAlchemy Core: the hot paths insert and claim in bulk)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    text,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

LIVE_ROW = "status NOT IN ('cancelled', 'skipped', 'failed')"  # a row that holds its idempotency key
Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes are stored as UTC and come back aware in UTC, on every database.

    SQLite has no time zones: without this, an aware value in another zone (a digest period starts
    at the recipient's local midnight) would be stored as its wall time with the offset dropped.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value


def _ts(name: str, nullable: bool = True) -> Column[datetime]:
    return Column(name, UTCDateTime(), nullable=nullable)


events = Table(
    "events", metadata,
    Column("id", String(200), primary_key=True),
    Column("type", String(200), nullable=False),
    _ts("occurred_at", False),
    _ts("received_at", False),
    Column("payload", Text, nullable=False),  # the envelope, JSON (encrypted when a key is set)
    Index("ix_events_received_at", "received_at"),
)

recipients = Table(
    "recipients", metadata,
    Column("id", String(200), primary_key=True),
    Column("profile", Text, nullable=False),  # the person object, JSON (encrypted when a key is set)
    Column("timezone", String(64)),
    _ts("updated_at", False),
)

preferences = Table(
    "preferences", metadata,
    Column("recipient_id", String(200), primary_key=True),
    Column("key", String(300), primary_key=True),  # notification id, category, or notification:channel
    Column("enabled", Boolean, nullable=False),
    _ts("updated_at", False),
)

unsubscribes = Table(
    # Each unsubscribe that turned something off: its scope (a notification id, or category:<name>)
    # and when; no recipient, so the count is statistics, not personal data.
    "unsubscribes", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("scope", String(300), nullable=False),
    _ts("at", False),
    Index("ix_unsubscribes_at", "at"),
)

notifications = Table(
    "notifications", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("notification", String(200), nullable=False),
    Column("recipient_id", String(200), nullable=False),
    Column("event_id", String(200)),
    Column("key", String(300)),  # the correlation key cancel_on / reschedule_on match
    Column("category", String(100), nullable=False),
    Column("channels", JSON, nullable=False),
    Column("template_key", String(200)),
    Column("template", String(300)),
    Column("variant", String(100)),  # the A/B variant, for rules that declare variants
    Column("idempotency_key", String(500), nullable=False),
    Column("throttle_key", String(500)),
    Column("payload", Text),  # the Courier message, JSON (encrypted when a key is set)
    _ts("send_at", False),
    # The time the send first fell due: a retry or a pause moves `send_at`, never this, so the
    # deadline of the rule's `expires_after` stays where it was. Set at insert (NULL only in rows
    # an older engine wrote: they read as due at `send_at`).
    _ts("due_at"),
    Column("status", String(20), nullable=False),
    Column("reason", String(500)),
    # A cancel that came while the row was being sent: that attempt, if it fails, ends it cancelled.
    Column("cancel_reason", String(500)),
    Column("attempts", Integer, nullable=False, default=0),
    _ts("queued_at"),
    _ts("claimed_at"),
    _ts("sent_at"),
    Column("request_id", String(200)),
    Column("delivery_status", String(30)),
    Column("last_error", String(1000)),
    _ts("created_at", False),
    _ts("updated_at", False),
    Index("ix_notifications_due", "status", "send_at"),
    Index("ix_notifications_match", "notification", "key", "status"),
    Index("ix_notifications_recent", "recipient_id", "status", "sent_at"),
    # One live or sent row per idempotency key: the database refuses a second, whatever the race.
    Index("ix_notifications_live_idempotency", "idempotency_key", unique=True,
          sqlite_where=text(LIVE_ROW), postgresql_where=text(LIVE_ROW)),
    Index("ix_notifications_request", "request_id"),
)

history = Table(
    "notification_history", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("notification_id", Id, ForeignKey("notifications.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(30), nullable=False),
    Column("reason", String(1000)),
    _ts("at", False),
    Index("ix_notification_history_notification", "notification_id"),
)

digests = Table(
    "digests", metadata,
    Column("bucket", String(500), primary_key=True),
    Column("notification", String(200), nullable=False),
    Column("recipient_id", String(200), nullable=False),
    Column("recipient", Text, nullable=False),  # JSON (encrypted when a key is set)
    _ts("period_start", False),
    _ts("period_end", False),
    _ts("send_at", False),
    Column("status", String(20), nullable=False),  # collecting | closed
    Index("ix_digests_due", "status", "send_at"),
    Index("ix_digests_recipient", "recipient_id", "notification"),  # a batch's item finds its batch here
)

digest_items = Table(
    "digest_items", metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("bucket", String(500), ForeignKey("digests.bucket", ondelete="CASCADE"), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("item", Text, nullable=False),  # the event's data, JSON (encrypted when a key is set)
    _ts("occurred_at", False),
    Index("ix_digest_items_bucket", "bucket"),
)

signature_receipts = Table(
    # Signatures seen within the tolerance window: a replayed request is refused.
    "signature_receipts", metadata,
    Column("signature", String(128), primary_key=True),
    _ts("seen_at", False),
    # The request it was used for (SHA-256 of the body) and the answer it got, once it has one: a
    # retry of that request gets the answer again, another request under the same signature a 401.
    Column("request", String(64)),
    Column("answer", Text),
    Index("ix_signature_receipts_seen_at", "seen_at"),
)

webhook_receipts = Table(
    "webhook_receipts", metadata,
    Column("message_id", String(200), primary_key=True),
    Column("status", String(30), primary_key=True),
    _ts("received_at", False),
)

early_receipts = Table(
    # Delivery statuses that arrived before their send was committed: applied when it is, or
    # dropped after `receipts.KEEP_EARLY` (a status for a send that never comes).
    "early_receipts", metadata,
    Column("message_id", String(200), primary_key=True),
    Column("status", String(30), primary_key=True),
    _ts("received_at", False),
    Index("ix_early_receipts_received_at", "received_at"),
)
