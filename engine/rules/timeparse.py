"""Parsing the time values of rules and events: instants, durations, local times, zones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

_INSTANT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$"
)
_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
# The longest duration a rule may declare: ten years. Offsets, windows and retention periods are
# added to and taken from instants of the years 1900 to 9000 (see parse_instant), so anything
# within this bound stays inside what a datetime can hold; timedelta itself stops at 2.7 million
# years, and a window that long made every claim raise OverflowError.
MAX_DURATION = timedelta(days=3650)


def parse_instant(text: str) -> datetime:
    """An RFC 3339 date-time with an offset, as an aware datetime; ValueError otherwise."""
    if not isinstance(text, str) or not _INSTANT.match(text):
        raise ValueError(f"{text!r} is not an RFC 3339 date-time with an offset (e.g. 2026-03-01T10:00:00Z)")
    if not 1900 <= int(text[:4]) <= 9000:  # arithmetic near year 1 or 9999 overflows datetime
        raise ValueError(f"{text!r} is outside the years 1900 to 9000")
    return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))


def is_instant(text: object) -> bool:
    try:
        parse_instant(text)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    return True


def parse_duration(text: str) -> timedelta:
    """`30s`, `30m`, `24h`, `3d`, `1w`, or combined (`1h30m`); at most MAX_DURATION."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(f"{_shown(text)} is not a duration (write e.g. 30m, 24h, 3d, 1h30m)")
    limit = int(MAX_DURATION.total_seconds())
    total = 0
    for amount, unit in _DURATION_PART.findall(text):
        # Counted in whole seconds, against the bound as it goes: an amount of more digits than
        # any bound needs never reaches int() or timedelta (which raise errors of their own).
        digits = amount.lstrip("0")
        total = limit + 1 if len(digits) > 12 else total + int(digits or "0") * _SECONDS[unit]
        if total > limit:
            raise ValueError(f"{_shown(text)} is longer than {MAX_DURATION.days}d (ten years), "
                             "the longest duration allowed")
    return timedelta(seconds=total)


# A cron expression must fire within this many years of validation: one that never does (the
# 31st of February) would leave its sends unscheduled forever, and croniter searches 50 years
# before it says so.
CRON_HORIZON_YEARS = 5
MAX_CRON = 200


def check_cron(expression: object, now: datetime | None = None) -> None:
    """ValueError unless `expression` is a cron expression that fires within CRON_HORIZON_YEARS
    of `now` (default: the current time)."""
    fields = len(expression.split()) if isinstance(expression, str) else 5
    if isinstance(expression, str) and not expression.startswith("@") and fields != 5 and len(expression) <= MAX_CRON:
        raise ValueError(f"cron expression {expression!r} has {fields} fields; write the 5-field form: "
                         "minute hour day month weekday, e.g. \"0 9 * * MON\" (seconds are not supported)")
    if not isinstance(expression, str) or len(expression) > MAX_CRON or not croniter.is_valid(expression):
        raise ValueError(f"invalid cron expression {_shown(expression)} (e.g. \"0 9 * * MON\")")
    start = now or datetime.now(UTC)
    try:
        croniter(expression, start, max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        raise ValueError(f"cron expression {expression!r} never fires in the next {CRON_HORIZON_YEARS} years "
                         f"(is the day of the month in the month?)") from None


def parse_local_time(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, AttributeError):
        raise ValueError(f"{text!r} is not a local time (write HH:MM, e.g. \"09:00\")") from None


# No IANA name comes near this; a longer one is refused before the file system sees it.
MAX_ZONE_NAME = 64


def zone(name: str) -> ZoneInfo:
    """The IANA zone; ValueError for anything else, whatever the name (events and rule files
    are untrusted: a folder of the zone database such as `Europe`, a name too long for the file
    system, a NUL byte, a list... each makes zoneinfo raise an error of its own)."""
    if not isinstance(name, str) or not name or len(name) > MAX_ZONE_NAME:
        raise ValueError(f"{_shown(name)} is not an IANA time zone (e.g. Europe/Berlin)")
    return _zone(name)


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        if name.startswith(("/", ".")) or ".." in name or "\x00" in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as Europe
        raise ValueError(f"{_shown(name)} is not an IANA time zone (e.g. Europe/Berlin)") from None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + "...' (" + str(len(str(value))) + " characters)"


def is_zone(name: object) -> bool:
    try:
        zone(name)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def format_instant(instant: datetime) -> str:
    """UTC, RFC 3339 with Z, to the second (to the microsecond when it has them)."""

    utc = instant.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")
