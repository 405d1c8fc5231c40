"""The one place the live engine reads the wall clock (the core takes `now` as an argument)."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
