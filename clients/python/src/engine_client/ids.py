"""Event ids that sort by creation time: `evt_` and a ULID (26 characters of Crockford base32).

The first 10 characters are the millisecond timestamp, the last 16 are random; within one
millisecond a process increments the random part, so the ids it makes are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the last id made here


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def ulid(now_ms: int | None = None) -> str:
    """A ULID for `now_ms` (default: the clock), greater than every earlier one of this process."""
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        last_ms, last_random = _last
        if ms <= last_ms:  # same millisecond, or the clock stepped back: keep counting up
            ms, rand = last_ms, last_random + 1
            if rand >= 1 << _RANDOM_BITS:
                ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
        else:
            # One bit short of 80 leaves room to count up within a millisecond without overflowing.
            rand = int.from_bytes(os.urandom(10), "big") >> 1
        _last = (ms, rand)
    return _base32(ms, 10) + _base32(rand, 16)


def new_event_id(prefix: str = "evt_") -> str:
    """`evt_01J...`: unique, and sorting as the events were made."""
    return prefix + ulid()
