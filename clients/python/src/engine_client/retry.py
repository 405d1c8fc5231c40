"""When to try a request again, and how long to wait first.

Exponential back-off with full jitter (a random wait between 0 and base * 2**n, capped), so that
many clients that failed together do not come back together; a `Retry-After` the engine sent is
a floor on the wait.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class Retry:
    """`attempts` in all (1: no retry); waits drawn from [0, min(max_backoff, backoff * 2**n)]
    (`jitter` draws the fraction); a `Retry-After` longer than `max_retry_after` is cut to it."""

    attempts: int = 5
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 30.0
    jitter: Callable[[], float] = field(default=_random.random, repr=False, compare=False)  # in [0, 1)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("back-off times must not be negative")

    def wait(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(retry, 60))
        jittered = ceiling * self.jitter()
        if retry_after is None:
            return jittered
        return max(jittered, min(retry_after, self.max_retry_after))


NO_RETRY = Retry(attempts=1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: a number of seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
