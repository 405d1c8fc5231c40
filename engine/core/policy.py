"""Checks made when a send falls due: preferences, throttles and rate limits.

Pure: the caller (the live store, or the preview's timeline) counts what was sent recently and
passes the counts in. Preferences are read at send time, not only when a send is scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..rules.model import Config

# A recipient's preferences: a notification id, a category, or "<notification>:<channel>" -> on/off.
Preferences = Mapping[str, bool]


@dataclass(frozen=True)
class Verdict:
    channels: tuple[str, ...]
    skip: str | None = None
    template: str | None = None  # the Courier template id in force when the send goes out


def in_force(config: Config, notification: str) -> str | None:
    """Why a due send of `notification` must not go out under the rules in force, or None:
    `removed` when no rule declares it any more, `paused` when its rule says `enabled: false`."""
    rule = config.notifications.get(notification)
    if rule is None:
        return "removed"
    return None if rule.enabled else "paused"


def can_opt_out(config: Config, category: str) -> bool:
    found = config.categories.get(category)
    return found.opt_out if found else True


def check(config: Config, notification: str, category: str, channels: tuple[str, ...],
          preferences: Preferences, throttle: tuple[int, int] | None = None,
          rate: int | None = None) -> Verdict:
    """Whether a due send goes out now, on which channels; `throttle` is (sent, limit),
    `rate` the recipient's non-transactional sends within the configured rate-limit window."""
    if can_opt_out(config, category):
        if preferences.get(notification) is False or preferences.get(category) is False:
            return Verdict(channels, "opted_out")
        kept = tuple(c for c in channels if preferences.get(f"{notification}:{c}") is not False)
        if not kept:
            return Verdict(channels, "opted_out")
        channels = kept
    if throttle is not None and throttle[0] >= throttle[1]:
        return Verdict(channels, "throttled")
    if rate is not None and config.rate_limit and can_opt_out(config, category) and rate >= config.rate_limit.limit:
        return Verdict(channels, "rate_limited")
    return Verdict(channels)
