"""When a send goes out: offsets, cron times and send windows, in the recipient's time zone.

All arithmetic on absolute offsets ("24 h before") is done in UTC, so a reminder is exactly
24 hours before its booking whatever the clocks do; calendar rules (cron, windows, digest
periods) are done in the recipient's zone with zoneinfo, so "Monday 09:00" stays 09:00 local
across a DST change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from ..rules.model import Digest, Schedule, Window
from ..rules.timeparse import CRON_HORIZON_YEARS, parse_instant
from .events import Event
from .matching import read_path


@dataclass(frozen=True)
class When:
    """The outcome of timing: a time, and the reason it is skipped (None: it goes out)."""

    at: datetime
    skip: str | None = None


def local_at(day: date, t: time, tz: ZoneInfo) -> datetime:
    """`t` on `day` in `tz`; a time inside a spring-forward gap moves forward by the gap's length
    (PEP 495: 02:30 on a night the clocks jump from 02:00 to 03:00 becomes 03:30)."""
    naive = datetime.combine(day, t)
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz)


def next_cron(expression: str, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first cron time strictly after `after`, read in `tz` (never a fixed offset); None when
    there is none within CRON_HORIZON_YEARS (validation refuses such an expression; a rule that
    skipped it must still not raise at every event)."""
    start = after.astimezone(tz)
    try:
        found: datetime = croniter(expression, start, max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
        return found.astimezone(UTC)
    except (CroniterError, ValueError, OverflowError, TypeError):
        return None


def in_window(at: datetime, window: Window, tz: ZoneInfo) -> bool:
    return window.contains(at.astimezone(tz).time().replace(tzinfo=None))


def next_opening(at: datetime, window: Window, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    candidate = local_at(local.date(), window.start, tz)
    if candidate < local:
        candidate = local_at(local.date() + timedelta(days=1), window.start, tz)
    return candidate.astimezone(UTC)


def base_time(schedule: Schedule, event: Event) -> datetime:
    if schedule.of:
        return parse_instant(read_path(event.data, schedule.of))
    return event.occurred_at


def send_time(schedule: Schedule, event: Event, tz: ZoneInfo, now: datetime) -> When:
    """When a rule's send for this event goes out, or why it is skipped."""
    try:
        return _send_time(schedule, event, tz, now)
    except OverflowError:  # an offset no loaded rule has (see MAX_DURATION); skipped, never raised
        return When(now, "out_of_range")


def _send_time(schedule: Schedule, event: Event, tz: ZoneInfo, now: datetime) -> When:
    planned = _planned(schedule, event, tz, now)
    if planned is None:
        return When(now, "no_cron_time")
    at = planned.astimezone(UTC)
    if schedule.window and not in_window(at, schedule.window, tz):
        if schedule.outside_window == "skip":
            return When(at, "outside_window")
        at = next_opening(at, schedule.window, tz)
    if at < now:
        return When(at, "past") if schedule.if_past == "skip" else When(now)
    return When(at)


def _planned(schedule: Schedule, event: Event, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The time the schedule names, before its window and the past are minded; None for a cron
    that never fires."""
    if schedule.kind == "once":
        return now  # as soon as it is processed (an event stamped in the future is not held back)
    if schedule.kind == "after":
        return base_time(schedule, event) + schedule.offset
    if schedule.kind == "before":
        return base_time(schedule, event) - schedule.offset
    return next_cron(schedule.cron or "", base_time(schedule, event), tz)


@dataclass(frozen=True)
class Period:
    start: datetime  # local midnight, aware
    end: datetime
    send_at: datetime  # UTC


def digest_period(digest: Digest, occurred_at: datetime, tz: ZoneInfo) -> Period:
    """The calendar period (in the recipient's zone) an event falls in, and when it is sent."""
    local = occurred_at.astimezone(tz).date()
    if digest.period == "day":
        first, last = local, local + timedelta(days=1)
    elif digest.period == "week":
        first = local - timedelta(days=local.weekday())
        last = first + timedelta(days=7)
    else:
        first = local.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    start, end = local_at(first, time(0), tz), local_at(last, time(0), tz)
    # A digest whose cron never fires (refused by validation) goes out when its period ends.
    send_at = next_cron(digest.send, end - timedelta(seconds=1), tz) or end.astimezone(UTC)
    return Period(start, end, send_at)


def recipient_zone(person: Any, default: str) -> ZoneInfo:
    from ..rules.timeparse import zone

    name = person.get("timezone") if isinstance(person, dict) else None
    try:
        return zone(name) if name else zone(default)
    except ValueError:
        return zone(default)


