"""The filters rule expressions have beyond Jinja's own: times and money as people read them."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from ..timeparse import parse_instant, zone

_EXPONENT = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}
_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥", "INR": "₹", "CHF": "CHF "}


def local_time(value: Any, tz: str | None = None, fmt: str = "%A %d %B %Y, %H:%M") -> str:
    if _cacheable(value, tz, fmt):
        return _local_time_of_text(value, tz, fmt)
    return _local_time(value, tz, fmt)


def _cacheable(*arguments: Any) -> bool:
    return all(argument is None or (type(argument) is str and len(argument) <= _CACHED_TEXT) for argument in arguments)


# An event's times are written out by several rules, in the same zones (a booking's start for
# the client and the practitioner, in each of its messages), and strftime is most of the cost.
# Only short text is cached (a list would make the cache raise its own TypeError; a long format
# would keep long results): under a megabyte in all.
_CACHED_TEXT = 64


@functools.lru_cache(maxsize=1024)
def _local_time_of_text(value: str, tz: str | None, fmt: str) -> str:
    return _local_time(value, tz, fmt)


def _local_time(value: Any, tz: Any, fmt: str) -> str:
    return _instant(value).astimezone(zone(tz) if tz else UTC).strftime(fmt)


def iso(value: Any) -> str:
    return _instant(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else parse_instant(str(value))


def money(amount: Any, currency: str = "USD") -> str:
    currency = str(currency).upper()
    exponent = _EXPONENT.get(currency, 2)
    return _written(int(amount) / (10**exponent), exponent, currency)


def _written(value: float, exponent: int, currency: str) -> str:
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.{exponent}f}"
    symbol = _SYMBOL.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"
