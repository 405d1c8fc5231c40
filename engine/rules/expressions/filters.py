"""The filters rule expressions have beyond Jinja's own: times and money as people read them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..timeparse import parse_instant, zone

_EXPONENT = {"JPY": 0, "KRW": 0, "VND": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}
_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥", "INR": "₹", "CHF": "CHF "}


def local_time(value: Any, tz: str | None = None, fmt: str = "%A %d %B %Y, %H:%M") -> str:
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
