"""The entries of a scenario's lists: each expected send, each deploy, each direct send."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from ..rules.delivery_options import ROUTING
from ..rules.timeparse import format_instant
from .model import (
    DEPLOY_KEYS,
    DIRECT_KEYS,
    DIRECT_REQUIRED,
    EXPECT_KEYS,
    EXPECT_REQUIRED,
    STATUSES,
    Deploy,
    Direct,
    Expected,
)
from .reader import Item, Reader


def expected(reader: Reader, value: Any, i: int) -> Expected | None:
    item = reader.item(value, ("expect", i), EXPECT_KEYS)
    if not item.requires(*EXPECT_REQUIRED):
        return None
    status = item.one_of("status", STATUSES)
    out = Expected(notification=item.text("notification"), recipient=item.text("recipient"),
                   send_at=_instant_text(item, "send_at"), status=status, line=item.line())
    return _with_optional(item, out)


def _with_optional(item: Item, out: Expected) -> Expected:
    """The expectation with the keys checked only when given, each read as OPTIONAL says."""
    cast(dict[str, Any], out).update({key: read(item) for key, read in OPTIONAL.items() if key in item.values})
    return out


def _reason(item: Item) -> Any:
    if item.values["reason"] is not None and not isinstance(item.values["reason"], str):
        item.error("reason must be text (or null)", "reason")
    return item.values["reason"]


def _channels(item: Item) -> Any:
    channels = item.values["channels"]
    if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
        item.error("channels must be a list of channel names, such as [email, inbox]", "channels")
    return channels


def _deadline(item: Item) -> str | None:
    return None if item.values["expires_at"] is None else _instant_text(item, "expires_at")


def _instant_text(item: Item, key: str) -> str:
    """The instant in UTC as the preview writes it; empty when it is wrong (and said so)."""
    instant = item.instant(key)
    return format_instant(instant) if instant else ""


OPTIONAL: dict[str, Callable[[Item], Any]] = {
    "reason": _reason,
    "template": lambda item: item.text("template"),
    "channels": _channels,
    "routing": lambda item: item.one_of("routing", ROUTING),
    "expires_at": _deadline,
    "data": lambda item: item.mapping("data"),
}


def deploy(reader: Reader, value: Any, i: int) -> Deploy:
    item = reader.item(value, ("deploy", i), DEPLOY_KEYS)
    at = item.instant("at") if reader.required(item.values, item.where, ("at",), item.what) else None
    return Deploy(at=at or datetime.min, pause=item.names("pause"), remove=item.names("remove"),
                  templates=_templates(item), line=item.line())


def _templates(item: Item) -> dict[str, str]:
    templates = item.mapping("templates") if item.values.get("templates") else {}
    for key in (k for k, template_id in templates.items() if not isinstance(template_id, str)):
        item.error(f"templates: {key} must be a Courier template id", "templates", key)
    return {str(k): str(v) for k, v in templates.items()}


def direct(reader: Reader, value: Any, i: int) -> Direct | None:
    item = reader.item(value, ("direct", i), DIRECT_KEYS)
    if not item.requires(*DIRECT_REQUIRED):
        return None
    at, send_at, recipient = item.instant("at"), item.instant("send_at"), _recipient(item)
    data, notification = item.mapping("data") if "data" in item.values else None, item.text("notification")
    if at is None or send_at is None or recipient is None:
        return None
    return Direct(at=at, notification=notification, recipient=recipient, send_at=send_at, data=data, line=item.line())


def _recipient(item: Item) -> dict[str, Any] | str | None:
    if isinstance(item.values["recipient"], (dict, str)):
        return cast(dict[str, Any] | str, item.values["recipient"])
    item.error("recipient is a person (id, email, name, timezone) or an id", "recipient")
    return None
