"""Checks made when a send falls due: expiry, preferences, throttles and rate limits.

Pure: the caller (the live store, or the preview's timeline) counts what was sent recently and
passes the counts in. Preferences are read at send time, not only when a send is scheduled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..rules.model import Config, Notification
from .rendering import Delivery

# A recipient's preferences: a notification id, a category, or "<notification>:<channel>" -> on/off.
Preferences = Mapping[str, bool]


@dataclass(frozen=True)
class Verdict:
    channels: tuple[str, ...]
    skip: str | None = None
    template: str | None = None  # the Courier template id in force when the send goes out
    delivery: Delivery | None = None  # how the Courier message goes out (routing, metadata, expiry)


def in_force(config: Config, notification: str) -> str | None:
    """Why a due send of `notification` must not go out under the rules in force, or None:
    `removed` when no rule declares it any more, `paused` when its rule says `enabled: false`."""
    rule = config.notifications.get(notification)
    if rule is None:
        return "removed"
    return None if rule.enabled else "paused"


def deadline(rule: Notification, due: datetime) -> datetime | None:
    """The last moment a send of `rule` due at `due` may go out, or None when it may go out late."""
    return due + rule.expires_after if rule.expires_after is not None else None


def expired(rule: Notification, due: datetime, now: datetime) -> bool:
    """Whether a send due at `due` is too late to go out at `now` (its rule's `expires_after`)."""
    last = deadline(rule, due)
    return last is not None and now >= last


def delivery(rule: Notification, channels: tuple[str, ...], template: str | None, template_key: str | None,
             idempotency_key: str, due: datetime) -> Delivery:
    """How a due send's Courier message goes out under the rules in force."""
    variant = next((name for name, key, _ in rule.template.variants if key == template_key), None)
    return Delivery(channels, template, rule.routing, rule.id, rule.category, variant, idempotency_key,
                    deadline(rule, due))


def can_opt_out(config: Config, category: str) -> bool:
    found = config.categories.get(category)
    return found.opt_out if found else True


def _wanted(notification: str, category: str, channels: tuple[str, ...],
            preferences: Preferences) -> tuple[str, ...]:
    """The channels the recipient has not turned off; none when they turned off the notification or its category."""
    if preferences.get(notification) is False or preferences.get(category) is False:
        return ()
    return tuple(c for c in channels if preferences.get(f"{notification}:{c}") is not False)


def check(config: Config, notification: str, category: str, channels: tuple[str, ...],
          preferences: Preferences, throttle: tuple[int, int] | None = None,
          rate: int | None = None) -> Verdict:
    """Whether a due send goes out now, on which channels; `throttle` is (sent, limit),
    `rate` the recipient's non-transactional sends within the configured rate-limit window."""
    if can_opt_out(config, category):
        kept = _wanted(notification, category, channels, preferences)
        if not kept:
            return Verdict(channels, "opted_out")
        channels = kept
    if throttle is not None and throttle[0] >= throttle[1]:
        return Verdict(channels, "throttled")
    if rate is not None and config.rate_limit and can_opt_out(config, category) and rate >= config.rate_limit.limit:
        return Verdict(channels, "rate_limited")
    return Verdict(channels)
