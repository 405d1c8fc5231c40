"""The Courier request a send makes: template id, recipient, routing and rendered data."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..rules import expressions
from ..rules.budget import budget
from ..rules.model import Config, Notification, Routing
from ..rules.timeparse import format_instant

# Builds a signed unsubscribe link: (notification id, recipient id) -> URL. Given by the runtime.
UnsubscribeLinker = Callable[[str, str], str]


class RenderError(Exception):
    """A send cannot be rendered (a missing field, a refused expression, no template id)."""


@dataclass(frozen=True)
class Rendered:
    template_key: str
    template: str  # the resolved Courier template id
    data: dict[str, Any]
    idempotency_key: str
    variant: str | None = None


def courier_message(recipient: Mapping[str, Any], template: str, data: Mapping[str, Any],
                    channels: tuple[str, ...]) -> dict[str, Any]:
    """The body of Courier's POST /send for one recipient."""
    to: dict[str, Any] = {"user_id": str(recipient.get("id", ""))}
    if recipient.get("email"):
        to["email"] = recipient["email"]
    if recipient.get("phone") and "sms" in channels:
        to["phone_number"] = recipient["phone"]
    return {
        "message": {
            "to": to,
            "template": template,
            "data": dict(data),
            "routing": routing(channels),
        }
    }


def routing(channels: tuple[str, ...], method: Routing = "single") -> dict[str, Any]:
    """Courier's routing for a send's channels: the first that reaches the recipient, in order
    (`single`), or every one of them (`all`)."""
    return {"method": method, "channels": list(channels)}


MAX_TAG = 30  # Courier refuses a tag longer than this
MAX_TAGS = 9


def tag(text: str) -> str:
    """`text` as a Courier tag: itself when short enough, else its first characters, `~` and 8 hex
    digits of its SHA-256 (so two long ids never share a tag, and the same id always gets the same)."""
    if len(text) <= MAX_TAG:
        return text
    return f"{text[:MAX_TAG - 9]}~{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Delivery:
    """What a send's Courier message says besides its template and data, decided when it goes out
    under the rules in force: its channels and routing, its metadata, and its deadline."""

    channels: tuple[str, ...]
    template: str | None = None
    method: Routing = "single"
    notification: str = ""
    category: str = ""
    variant: str | None = None
    trace_id: str | None = None  # the send's idempotency key
    expires_at: datetime | None = None

    def metadata(self) -> dict[str, Any]:
        """Courier's `metadata`, which its logs and webhooks echo: the notification as `event`, tags
        (notification, category, variant) to filter by, and the send's idempotency key as `trace_id`."""
        named = (self.notification, self.category and f"category:{self.category}",
                 self.variant and f"variant:{self.variant}")
        found: dict[str, Any] = {"tags": [tag(t) for t in named if t][:MAX_TAGS]}
        if self.notification:
            found["event"] = self.notification
        if self.trace_id:
            found["trace_id"] = self.trace_id
        return found

    def expiry(self, now: datetime) -> dict[str, Any] | None:
        """Courier's `expiry`: the deadline, and the milliseconds left until it from `now`."""
        if self.expires_at is None:
            return None
        left = max(1, int((self.expires_at - now).total_seconds() * 1000))
        return {"expires_at": format_instant(self.expires_at.astimezone(UTC)), "expires_in": left}


def readdressed(message: Mapping[str, Any], delivery: Delivery, now: datetime) -> dict[str, Any]:
    """A stored Courier message as it goes out at `now`: the template id, routing, metadata and
    expiry decided then (the rules in force), over what was rendered when it was scheduled."""
    body = dict(message.get("message", {}))
    if delivery.template:
        body["template"] = delivery.template
    body["routing"] = routing(delivery.channels, delivery.method)
    body["metadata"] = delivery.metadata()
    expiry = delivery.expiry(now)
    if expiry is not None:
        body["expiry"] = expiry
    return {"message": body}


def common_data(config: Config, recipient: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "app_name": config.app.name,
        "frontend_url": config.app.frontend_url,
        "support_email": config.app.support_email,
        "user_name": recipient.get("name", ""),
        "user_email": recipient.get("email", ""),
    }


def template_key(rule: Notification, ctx: dict[str, Any]) -> tuple[str, str | None]:
    """(template key, A/B variant or None)."""
    choice = rule.template
    if choice.key:
        return choice.key, None
    if choice.variants:
        picked = choice.variant_for(rule.id, str(ctx.get("recipient", {}).get("id", "")))
        if picked is None:
            raise RenderError("no variant has a weight")
        return picked[1], picked[0]
    case = str(expressions.evaluate(choice.select or "", ctx))
    key = choice.cases.get(case, choice.default)
    if key is None:
        raise RenderError(f"template select gave {case!r}, which no case names (cases: {', '.join(choice.cases)})")
    return key, None


def render(config: Config, rule: Notification, ctx: dict[str, Any], recipient: Mapping[str, Any], env: str,
           environ: Mapping[str, str] | None = None, unsubscribe: UnsubscribeLinker | None = None) -> Rendered:
    """Render a rule's payload in `ctx` (see matching.context); RenderError says what failed."""
    try:
        with budget():  # one for the whole send: each value renders within what the others left
            key, variant = template_key(rule, ctx)
            data = common_data(config, recipient)
            for name, value in rule.data.items():
                data[name] = expressions.render(value, ctx)
            idempotency_key = str(expressions.render(rule.idempotency_key, ctx))
    except expressions.ExpressionError as exc:
        raise RenderError(str(exc)) from None
    category = config.categories.get(rule.category)
    if unsubscribe is not None and category is not None and category.opt_out:
        data["unsubscribe_url"] = unsubscribe(rule.id, str(recipient.get("id", "")))
    missing = [name for name in rule.requires if name not in data]
    if missing:
        raise RenderError(f"required data missing: {', '.join(missing)}")
    template = config.template_id(env, key, environ)
    if not template:
        raise RenderError(f"no Courier template id for {key!r} in templates_map/{env}.yaml")
    return Rendered(key, template, data, idempotency_key, variant)
