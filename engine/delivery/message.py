"""The message a send makes, typed; the record a scheduled send keeps; and the one function that
turns a message into Courier's wire form.

A `Message` is decided when the send goes out: the recipient's address and the data rendered when
it was scheduled (the stored record), the template id, channels, routing, metadata and expiry that
the send-time verdict chose. `courier_body` is the only place Courier's JSON is written.

The record a scheduled send keeps (the `payload` of its `notifications` row, JSON, encrypted when
a key is set) is the engine's own, not Courier's:

    {"to": {"user_id": "usr_1", "email": "a@example.com", "phone_number": "+4420..."},
     "template": "COURIER_TEMPLATE_ID", "data": {...}, "channels": ["email", "inbox"]}

`to` holds `email` and `phone_number` only when known (the phone only for a send that may go by
SMS); `template` and `channels` are those it was scheduled with (the verdict gives the ones in
force when it goes out). Rows an older engine wrote hold Courier's body instead,
`{"message": {"to", "template", "data", "routing": {"method", "channels"}}}`, and an older replica
may still write them during a rolling upgrade: `scheduled` reads both, so such a send goes out
exactly as it would have.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..rules.model import Routing
from ..rules.timeparse import format_instant

if TYPE_CHECKING:
    from ..core.rendering import Delivery

MAX_TAG = 30  # Courier refuses a tag longer than this
MAX_TAGS = 9


@dataclass(frozen=True)
class Address:
    """Where Courier reaches the recipient: its user id, and the email and phone number it was given."""

    user_id: str
    email: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True)
class Metadata:
    """Courier's `metadata`, echoed in its logs and webhooks."""

    tags: tuple[str, ...] = ()
    event: str | None = None  # the notification id
    trace_id: str | None = None  # the send's idempotency key


@dataclass(frozen=True)
class Expiry:
    """The latest moment Courier may deliver, and the milliseconds left until it when handed over."""

    expires_at: datetime
    expires_in_ms: int


@dataclass(frozen=True)
class Message:
    to: Address
    template: str
    data: Mapping[str, Any]
    channels: tuple[str, ...]
    method: Routing = "single"
    metadata: Metadata | None = None  # None: a message as scheduled, before the send-time verdict
    expiry: Expiry | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # a Courier-shaped record's keys this engine does not write


def courier_body(message: Message) -> dict[str, Any]:
    """The body of Courier's POST /send for `message`."""
    body: dict[str, Any] = {"to": _to(message.to), "template": message.template, "data": dict(message.data),
                            "routing": {"method": message.method, "channels": list(message.channels)}, **message.extra}
    if message.metadata is not None:
        body["metadata"] = _metadata(message.metadata)
    if message.expiry is not None:
        body["expiry"] = {"expires_at": format_instant(message.expiry.expires_at.astimezone(UTC)),
                          "expires_in": message.expiry.expires_in_ms}
    return {"message": body}


def _to(address: Address) -> dict[str, Any]:
    """An address as Courier and the stored record both write it: the email and phone only when known."""
    to: dict[str, Any] = {"user_id": address.user_id}
    if address.email:
        to["email"] = address.email
    if address.phone_number:
        to["phone_number"] = address.phone_number
    return to


def _address(to: Mapping[str, Any]) -> Address:
    return Address(to.get("user_id", ""), to.get("email"), to.get("phone_number"))


def _metadata(metadata: Metadata) -> dict[str, Any]:
    found: dict[str, Any] = {"tags": list(metadata.tags)}
    if metadata.event:
        found["event"] = metadata.event
    if metadata.trace_id:
        found["trace_id"] = metadata.trace_id
    return found


def address(recipient: Mapping[str, Any], channels: tuple[str, ...]) -> Address:
    """A recipient's address: the phone number only for a send that may go by SMS."""
    phone = recipient.get("phone") if "sms" in channels else None
    return Address(str(recipient.get("id", "")), recipient.get("email") or None, phone or None)


def scheduled_record(recipient: Mapping[str, Any], template: str, data: Mapping[str, Any],
                     channels: tuple[str, ...]) -> dict[str, Any]:
    """The record a scheduled send keeps: its address, template id, data and channels as rendered,
    before the send-time verdict."""
    return {"to": _to(address(recipient, channels)), "template": template, "data": dict(data),
            "channels": list(channels)}


def scheduled(record: Mapping[str, Any]) -> Message:
    """A stored send's message as it was scheduled, from its record in either shape."""
    if "message" in record:
        return _from_courier(record["message"])
    return Message(_address(record.get("to", {})), record.get("template", ""), record.get("data", {}),
                   tuple(record.get("channels", ())))


def _from_courier(body: Mapping[str, Any]) -> Message:
    """A record written as Courier's body: keys this engine does not write go out as they were."""
    routing: Mapping[str, Any] = body.get("routing", {})
    return Message(_address(body.get("to", {})), body.get("template", ""), body.get("data", {}),
                   tuple(routing.get("channels", ())), routing.get("method", "single"),
                   extra={k: v for k, v in body.items() if k not in _WRITTEN})


@lru_cache(maxsize=4096)  # the texts are a configuration's notification ids, categories and variants
def tag(text: str) -> str:
    """`text` as a Courier tag: itself when short enough, else its first characters, `~` and 8 hex
    digits of its SHA-256 (so two long ids never share a tag, and the same id always gets the same)."""
    if len(text) <= MAX_TAG:
        return text
    return f"{text[:MAX_TAG - 9]}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def metadata(delivery: Delivery) -> Metadata:
    """The notification as `event`, tags (notification, category, variant) to filter by, and the
    send's idempotency key as `trace_id`."""
    return Metadata(_tags(delivery.notification, delivery.category, delivery.variant), delivery.notification or None,
                    delivery.trace_id or None)


@lru_cache(maxsize=4096)  # a configuration's rules, categories and variants: each set of tags made once
def _tags(notification: str | None, category: str | None, variant: str | None) -> tuple[str, ...]:
    named = (notification, category and f"category:{category}", variant and f"variant:{variant}")
    return tuple(tag(t) for t in named if t)[:MAX_TAGS]


def expiry(deadline: datetime | None, now: datetime) -> Expiry | None:
    """The deadline, and the milliseconds left until it from `now` (at least one)."""
    if deadline is None:
        return None
    return Expiry(deadline, max(1, int((deadline - now).total_seconds() * 1000)))


def going_out(record: Mapping[str, Any], delivery: Delivery, now: datetime) -> Message:
    """A stored send's message as it goes out at `now`: the address and data rendered when it was
    scheduled, with the template id, channels, routing, metadata and expiry decided now."""
    message = scheduled(record)
    return Message(message.to, delivery.template or message.template, message.data, delivery.channels,
                   delivery.method, metadata(delivery), expiry(delivery.expires_at, now), message.extra)


_WRITTEN = ("to", "template", "data", "routing", "metadata", "expiry")  # Courier's keys a message decides
