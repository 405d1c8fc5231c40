"""How a rule's sends are delivered: Courier's channel ids, the routing method, an expiry, and a
digest's sums per currency. The shape is schema.json's; this module reads the meaning and says
what is wrong in words a product manager can act on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterable, Mapping

from .model import Routing, Totals

# Courier's channel ids (the `routing.channels` a message may name).
CHANNELS = ("email", "sms", "push", "inbox", "direct_message", "banner", "webhook")
ROUTING = ("single", "all")
# Names people reach for that Courier calls otherwise (too far apart for a spelling suggestion).
_ALIASES = {
    "chat": "direct_message", "slack": "direct_message", "teams": "direct_message", "msteams": "direct_message",
    "dm": "direct_message", "in_app": "inbox", "inapp": "inbox", "feed": "inbox", "text": "sms",
    "mail": "email", "e_mail": "email", "mobile_push": "push", "notification": "push",
}

# (path inside the rule, message, severity, blocks: whether the rule can still be planned)
Report = Callable[..., None]
Duration = Callable[[tuple[Any, ...], Any], timedelta]


def hint(word: Any, allowed: Iterable[Any]) -> str:
    """`; did you mean 'direct_message'?` for a value Courier names otherwise, else nothing (a
    misspelling is suggested by the generic near-miss check)."""
    choices = set(allowed)
    if isinstance(word, str) and word not in choices:
        meant = _ALIASES.get(word.strip().lower().replace("-", "_"))
        if meant in choices:
            return f"; did you mean {meant!r}? (Courier's channel id for it)"
    return ""


def read(raw: Mapping[str, Any], channels: tuple[str, ...], duration: Duration, err: Report) -> tuple[Routing, timedelta | None]:
    """A rule's `routing` and `expires_after`, checked against its channels."""
    routing: Routing = "all" if raw.get("routing") == "all" else "single"
    if routing == "all" and len(channels) < 2:
        err(("routing",), f"routing: all sends on every channel, but the rule has only {', '.join(channels)}: "
                          "add channels, or remove routing", "warning")
    expires_after = None
    if raw.get("expires_after") is not None:
        expires_after = duration(("expires_after",), raw["expires_after"])
        if expires_after <= timedelta(0):
            err(("expires_after",), "expires_after must be longer than 0s (how late a send may still go out)")
            expires_after = None
    return routing, expires_after


def totals(raw_digest: Mapping[str, Any]) -> Totals | None:
    found = raw_digest.get("totals")
    return Totals(found["amount"], found["currency"]) if isinstance(found, Mapping) else None
