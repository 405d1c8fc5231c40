"""The event envelope `{"id", "type", "occurred_at", "data"}`: defaults filled in, and its JSON.

The engine checks each event against its type's schema and answers 422 with JSON paths; the
client only fills in what it can (an id, the time) and writes the body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from .ids import new_event_id

Event = Mapping[str, Any]
MAX_BATCH = 1000  # the engine's limit on events per request


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(event: Event) -> dict[str, Any]:
    """A copy of `event` with an `id` (sortable, new) and `occurred_at` (now) when it has none."""
    if not isinstance(event, Mapping):
        raise TypeError(
            f"an event is a mapping with type, data and optionally id and occurred_at, not {type(event).__name__}"
        )
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise ValueError("an event needs a `type`, such as \"booking.confirmed\"")
    if "id" in event and (not isinstance(event["id"], str) or not event["id"]):
        raise ValueError("an event `id` is non-empty text (leave it out to get a new one)")
    out = dict(event)
    out.setdefault("id", new_event_id())
    out.setdefault("occurred_at", now_rfc3339())
    return out


class EventEncoder(json.JSONEncoder):
    """JSON for event data: aware datetimes as RFC 3339, dates, UUIDs; naive times and Decimals are
    refused (the engine needs an offset; amounts are integers in minor units)."""

    def default(self, o: Any) -> Any:
        if isinstance(o, dt.datetime):
            if o.tzinfo is None or o.utcoffset() is None:
                raise TypeError(f"a datetime in an event needs a time zone (got the naive {o.isoformat()})")
            return o.isoformat()
        if isinstance(o, dt.date):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, Decimal):
            raise TypeError(f"amounts are integers in minor units; convert the Decimal {o} first")
        return super().default(o)


def dumps(value: Any) -> str:
    """Compact JSON text; NaN and infinities are refused, as the engine refuses them."""
    return json.dumps(value, cls=EventEncoder, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(value: Any) -> bytes:
    return dumps(value).encode("utf-8")


def message_id(body: bytes) -> str:
    """The same for every attempt of one body: what a receiver recognises a retried request by."""
    return "msg_" + hashlib.sha256(body).hexdigest()[:32]
