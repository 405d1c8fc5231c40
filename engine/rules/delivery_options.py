"""How a rule's sends are delivered: Courier's channel ids, the routing method, an expiry, a
digest's sums per currency, and a batch (a burst of events collected into one send). The shape
is schema.json's; this module reads the meaning and says what is wrong in words a product
manager can act on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from . import expressions
from .model import Batch, Routing, Totals

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


def read(raw: Mapping[str, Any], channels: tuple[str, ...], duration: Duration,
         err: Report) -> tuple[Routing, timedelta | None]:
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


_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
# The longest batch window: a batch holds back what the recipient is waiting for; longer
# collections are digests, sent on a cron.
MAX_BATCH_WINDOW = timedelta(days=1)
# Expression reads of the rule's events: (path in the rule, template) -> their problems.
KeyReads = Callable[[tuple[Any, ...], str], list[Any]]


def batch(raw: Mapping[str, Any], duration: Duration, err: Report, key_reads: KeyReads) -> Batch | None:
    """A rule's `batch`: its key (checked against the events the rule reads), its window and cap,
    and what it cannot be combined with."""
    found = raw.get("batch")
    if not isinstance(found, Mapping):
        return None
    _batch_combinations(raw, err)
    window = duration(("batch", "window"), found.get("window"))
    key = _batch_key(found.get("key"), err, key_reads)
    if not _batch_window_fits(window, found.get("window"), err):
        return None
    return Batch(key, window, found.get("max_items"))


def _batch_combinations(raw: Mapping[str, Any], err: Report) -> None:
    """A batch with a digest, a throttle or a schedule: each says what to keep."""
    for other, why in (("digest", "a digest collects on a cron, a batch from its first event: keep one"),
                       ("throttle", "a batch already sends one notification per key and window: remove throttle")):
        if raw.get(other):
            err((other,), f"batch and {other} together: {why}")
    schedule = raw.get("schedule")
    if isinstance(schedule, Mapping) and dict(schedule) not in ({}, {"at": "once"}):
        err(("schedule",), "a batch is sent when its window closes, after its first event: remove schedule")


def _batch_key(key: Any, err: Report, key_reads: KeyReads) -> str:
    """The key a batch collects by ("" when there is none): a template, reading what the events hold."""
    if not isinstance(key, str) or not key.strip():
        err(("batch", "key"), "batch.key must say what to collect by, e.g. \"{{ message.conversation_id }}\"")
        return ""
    if not expressions.is_template(key):
        example = f"{{{{ {key.strip()} }}}}" if _PATH.match(key.strip()) else "{{ message.conversation_id }}"
        err(("batch", "key"), f"batch.key {key!r} is the same for every event, so every event of a recipient lands "
                              f"in one batch: write a template, such as \"{example}\"", "warning")
        return key
    for problem in key_reads(("batch", "key"), key):
        err(problem.path, problem.message, problem.severity, problem.blocks)
    return key


def _batch_window_fits(window: timedelta, written: Any, err: Report) -> bool:
    if window <= timedelta(0):
        err(("batch", "window"), "batch.window must be longer than 0s (how long to collect after the first event)")
        return False
    if window > MAX_BATCH_WINDOW:
        err(("batch", "window"), f"batch.window {written} is longer than 1d: collect over a longer "
                                 "period with a digest (digest.period and digest.send)")
        return False
    return True
