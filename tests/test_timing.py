"""engine.core.timing: when a send goes out, in UTC and in the recipient's zone.

Absolute offsets are exact in UTC; calendar rules (cron, windows, digest periods) follow the
recipient's wall clock across DST changes (US 2026-03-08, EU 2026-03-29 and 2026-10-25).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.core.events import Event
from engine.core.timing import (
    digest_period,
    in_window,
    local_at,
    next_cron,
    next_opening,
    recipient_zone,
    send_time,
)
from engine.rules.model import Digest, Schedule, Window

UTC = UTC
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DAYTIME = Window(time(9), time(20))
NIGHT = Window(time(22), time(6))  # spans midnight


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def event(occurred_at: str, **data) -> Event:
    return Event("evt_1", "booking.confirmed", utc(occurred_at), data)


BOOKING = {"booking": {"id": "bk_1", "start_time": "2026-03-12T11:00:00-04:00"}}


# -- the forms of `schedule` -----------------------------------------------------------------
def test_at_once_is_when_the_event_is_processed() -> None:
    e = event("2026-03-05T14:30:00Z")
    assert send_time(Schedule("once"), e, NY, e.occurred_at).at == utc("2026-03-05T14:30:00Z")
    # processed later than it occurred: it goes out when processed
    later = utc("2026-03-05T15:00:00Z")
    assert send_time(Schedule("once"), e, NY, later).at == later


def test_after_counts_from_occurred_at() -> None:
    e = event("2026-03-02T10:00:00Z")
    when = send_time(Schedule("after", offset=timedelta(days=3)), e, BERLIN, e.occurred_at)
    assert when.at == utc("2026-03-05T10:00:00Z") and when.skip is None


def test_after_a_field() -> None:
    e = event("2026-03-05T14:30:00Z", **BOOKING)
    when = send_time(Schedule("after", offset=timedelta(hours=2), of="booking.start_time"), e, NY, e.occurred_at)
    assert when.at == utc("2026-03-12T17:00:00Z")


@pytest.mark.parametrize("offset, expected", [
    (timedelta(hours=24), "2026-03-11T15:00:00Z"),
    (timedelta(minutes=30), "2026-03-12T14:30:00Z"),
    (timedelta(hours=1, minutes=30), "2026-03-12T13:30:00Z"),
])
def test_before_a_field_is_exact_in_utc(offset: timedelta, expected: str) -> None:
    e = event("2026-03-05T14:30:00Z", **BOOKING)
    when = send_time(Schedule("before", offset=offset, of="booking.start_time", if_past="skip"), e, NY, e.occurred_at)
    assert when.at == utc(expected) and when.skip is None


def test_24h_before_is_24_real_hours_across_spring_forward() -> None:
    # 10:00 EDT on the first day of summer time; 24 h earlier is 09:00 EST, not 10:00.
    e = event("2026-03-01T18:00:00Z", booking={"id": "bk", "start_time": "2026-03-08T10:00:00-04:00"})
    when = send_time(Schedule("before", offset=timedelta(hours=24), of="booking.start_time"), e, NY, e.occurred_at)
    assert when.at == utc("2026-03-07T14:00:00Z")
    assert when.at.astimezone(NY).hour == 9


def test_cron_is_read_in_the_recipients_zone() -> None:
    e = event("2026-03-03T12:00:00Z")
    when = send_time(Schedule("cron", cron="0 9 * * MON"), e, NY, e.occurred_at)
    assert when.at == utc("2026-03-09T13:00:00Z")  # Monday 09:00 EDT
    when = send_time(Schedule("cron", cron="0 9 * * MON"), e, BERLIN, e.occurred_at)
    assert when.at == utc("2026-03-09T08:00:00Z")  # Monday 09:00 CET


def test_cron_after_a_field() -> None:
    e = event("2026-03-01T12:00:00Z", **BOOKING)
    when = send_time(Schedule("cron", cron="0 9 * * *", of="booking.start_time"), e, NY, e.occurred_at)
    assert when.at == utc("2026-03-13T13:00:00Z")  # the morning after the session


# -- if_past -----------------------------------------------------------------------------------
def test_a_past_time_is_skipped_with_if_past_skip() -> None:
    e = event("2026-03-12T14:50:00Z", **BOOKING)
    when = send_time(
        Schedule("before", offset=timedelta(minutes=30), of="booking.start_time", if_past="skip"), e, NY, e.occurred_at
    )
    assert when.skip == "past"
    assert when.at == utc("2026-03-12T14:30:00Z")  # the time it would have had


def test_a_past_time_is_sent_now_with_if_past_send_now() -> None:
    e = event("2026-03-12T14:50:00Z", **BOOKING)
    when = send_time(
        Schedule("before", offset=timedelta(minutes=30), of="booking.start_time", if_past="send_now"),
        e,
        NY,
        e.occurred_at,
    )
    assert when.skip is None and when.at == utc("2026-03-12T14:50:00Z")


def test_exactly_now_is_not_past() -> None:
    e = event("2026-03-12T14:30:00Z", **BOOKING)
    when = send_time(
        Schedule("before", offset=timedelta(minutes=30), of="booking.start_time", if_past="skip"), e, NY, e.occurred_at
    )
    assert when.skip is None and when.at == utc("2026-03-12T14:30:00Z")


# -- windows -----------------------------------------------------------------------------------
def test_a_time_inside_the_window_is_kept() -> None:
    e = event("2026-03-12T16:05:00Z")  # 12:05 EDT
    when = send_time(Schedule("after", offset=timedelta(hours=2), window=DAYTIME), e, NY, e.occurred_at)
    assert when.at == utc("2026-03-12T18:05:00Z")


def test_a_late_evening_time_is_deferred_to_the_next_morning() -> None:
    e = event("2026-03-13T02:30:00Z")  # 22:30 EDT; +2 h = 00:30 local
    when = send_time(Schedule("after", offset=timedelta(hours=2), window=DAYTIME), e, NY, e.occurred_at)
    assert when.at == utc("2026-03-13T13:00:00Z") and when.skip is None  # 09:00 EDT


def test_an_early_morning_time_is_deferred_to_the_same_morning() -> None:
    e = event("2026-03-12T04:00:00Z")  # 05:00 CET
    when = send_time(Schedule("once", window=DAYTIME), e, BERLIN, e.occurred_at)
    assert when.at == utc("2026-03-12T08:00:00Z")


def test_the_window_end_is_exclusive() -> None:
    e = event("2026-03-12T19:00:00Z")  # 20:00 CET exactly
    when = send_time(Schedule("once", window=DAYTIME), e, BERLIN, e.occurred_at)
    assert when.at == utc("2026-03-13T08:00:00Z")


def test_outside_window_skip() -> None:
    e = event("2026-03-13T02:30:00Z")
    when = send_time(Schedule("once", window=DAYTIME, outside_window="skip"), e, NY, e.occurred_at)
    assert when.skip == "outside_window"


@pytest.mark.parametrize(
    "local, inside",
    [
        ("21:59", False),
        ("22:00", True),
        ("23:30", True),
        ("00:00", True),
        ("05:59", True),
        ("06:00", False),
        ("12:00", False),
    ],
)
def test_a_window_spanning_midnight(local: str, inside: bool) -> None:
    hours, minutes = map(int, local.split(":"))
    at = datetime(2026, 3, 12, hours, minutes, tzinfo=BERLIN)
    assert in_window(at, NIGHT, BERLIN) is inside


def test_deferral_into_a_window_spanning_midnight() -> None:
    # 12:00 Berlin: the night window opens at 22:00 the same day
    at = datetime(2026, 3, 12, 12, 0, tzinfo=BERLIN)
    assert next_opening(at, NIGHT, BERLIN) == utc("2026-03-12T21:00:00Z")
    e = event("2026-03-12T11:00:00Z")
    when = send_time(Schedule("once", window=NIGHT), e, BERLIN, e.occurred_at)
    assert when.at == utc("2026-03-12T21:00:00Z")
    # 23:30 is inside: kept
    e = event("2026-03-12T22:30:00Z")
    assert send_time(Schedule("once", window=NIGHT), e, BERLIN, e.occurred_at).at == utc("2026-03-12T22:30:00Z")


def test_window_opening_follows_local_time_across_dst() -> None:
    # Saturday 21:00 EST -> Sunday 09:00, which is EDT after the spring-forward
    at = utc("2026-03-08T02:00:00Z")
    assert next_opening(at, DAYTIME, NY) == utc("2026-03-08T13:00:00Z")


# -- local times in a spring-forward gap ------------------------------------------------------
def test_a_local_time_in_the_spring_forward_gap_moves_forward() -> None:
    # 02:30 does not exist in New York on 2026-03-08 (02:00 -> 03:00)
    moved = local_at(date(2026, 3, 8), time(2, 30), NY)
    assert moved.astimezone(UTC) == utc("2026-03-08T07:30:00Z")
    assert (moved.hour, moved.minute, moved.utcoffset()) == (3, 30, timedelta(hours=-4))
    # and in Berlin on 2026-03-29 (02:00 -> 03:00)
    moved = local_at(date(2026, 3, 29), time(2, 30), BERLIN)
    assert moved.astimezone(UTC) == utc("2026-03-29T01:30:00Z")


def test_a_window_opening_inside_the_gap() -> None:
    window = Window(time(2, 30), time(6))
    at = utc("2026-03-08T06:00:00Z")  # 01:00 EST, before the opening
    opened = next_opening(at, window, NY)
    assert opened == utc("2026-03-08T07:30:00Z")  # 03:30 EDT, the first valid instant of the moved opening
    assert in_window(opened, window, NY)


def test_a_local_time_in_the_autumn_repeat_takes_the_first() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25; fold=0 is the first (CEST)
    at = local_at(date(2026, 10, 25), time(2, 30), BERLIN)
    assert at.astimezone(UTC) == utc("2026-10-25T00:30:00Z")


# -- next_cron across DST ---------------------------------------------------------------------
@pytest.mark.parametrize("after, zone, expected", [
    ("2026-03-02T14:00:00Z", NY, "2026-03-09T13:00:00Z"),  # strictly after Monday 09:00 EST -> 09:00 EDT
    ("2026-02-24T00:00:00Z", NY, "2026-03-02T14:00:00Z"),  # EST
    ("2026-03-17T00:00:00Z", BERLIN, "2026-03-23T08:00:00Z"),  # CET
    ("2026-03-24T00:00:00Z", BERLIN, "2026-03-30T07:00:00Z"),  # CEST after 2026-03-29
    ("2026-10-13T00:00:00Z", BERLIN, "2026-10-19T07:00:00Z"),  # CEST
    ("2026-10-20T00:00:00Z", BERLIN, "2026-10-26T08:00:00Z"),  # CET after 2026-10-25
    ("2026-10-27T00:00:00Z", NY, "2026-11-02T14:00:00Z"),  # US falls back on 2026-11-01
])
def test_next_cron_monday_9am_across_dst(after: str, zone: ZoneInfo, expected: str) -> None:
    found = next_cron("0 9 * * MON", utc(after), zone)
    assert found == utc(expected)
    assert found.tzinfo == UTC
    assert found.astimezone(zone).hour == 9


def test_next_cron_daily_keeps_local_time_over_the_change() -> None:
    first = next_cron("0 9 * * *", utc("2026-03-07T15:00:00Z"), NY)
    second = next_cron("0 9 * * *", first, NY)
    assert (first, second) == (utc("2026-03-08T13:00:00Z"), utc("2026-03-09T13:00:00Z"))
    assert second - first == timedelta(hours=24)
    before = next_cron("0 9 * * *", utc("2026-03-07T00:00:00Z"), NY)
    assert first - before == timedelta(hours=23)  # the short day


# -- digest periods ---------------------------------------------------------------------------
WEEKLY = Digest("week", "0 9 * * MON")


def test_week_period_across_us_dst() -> None:
    period = digest_period(WEEKLY, utc("2026-03-08T16:00:00Z"), NY)  # Sunday 12:00 EDT
    assert period.start.isoformat() == "2026-03-02T00:00:00-05:00"
    assert period.end.isoformat() == "2026-03-09T00:00:00-04:00"
    assert period.send_at == utc("2026-03-09T13:00:00Z")
    assert period.end.astimezone(UTC) - period.start.astimezone(UTC) == timedelta(days=7, hours=-1)


def test_sunday_night_local_is_still_the_old_week() -> None:
    period = digest_period(WEEKLY, utc("2026-03-02T04:30:00Z"), NY)  # Sunday 23:30 EST, Monday in UTC
    assert period.start.isoformat() == "2026-02-23T00:00:00-05:00"
    assert period.send_at == utc("2026-03-02T14:00:00Z")


def test_monday_morning_local_opens_the_new_week() -> None:
    period = digest_period(WEEKLY, utc("2026-03-09T12:00:00Z"), NY)  # Monday 08:00 EDT
    assert period.start.isoformat() == "2026-03-09T00:00:00-04:00"
    assert period.send_at == utc("2026-03-16T13:00:00Z")


@pytest.mark.parametrize("occurred, start, end, send_at", [
    ("2026-03-25T10:00:00Z", "2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00", "2026-03-30T07:00:00Z"),
    ("2026-10-25T01:30:00Z", "2026-10-19T00:00:00+02:00", "2026-10-26T00:00:00+01:00", "2026-10-26T08:00:00Z"),
])
def test_week_period_across_eu_dst(occurred: str, start: str, end: str, send_at: str) -> None:
    period = digest_period(WEEKLY, utc(occurred), BERLIN)
    assert (period.start.isoformat(), period.end.isoformat()) == (start, end)
    assert period.send_at == utc(send_at)


def test_day_period_on_a_23_hour_day() -> None:
    period = digest_period(Digest("day", "0 9 * * *"), utc("2026-03-29T08:00:00Z"), BERLIN)
    assert period.start.isoformat() == "2026-03-29T00:00:00+01:00"
    assert period.end.isoformat() == "2026-03-30T00:00:00+02:00"
    assert period.end.astimezone(UTC) - period.start.astimezone(UTC) == timedelta(hours=23)
    assert period.send_at == utc("2026-03-30T07:00:00Z")


@pytest.mark.parametrize("occurred, start, end, send_at", [
    ("2026-12-15T12:00:00Z", "2026-12-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00", "2027-01-01T08:00:00Z"),
    ("2026-02-10T12:00:00Z", "2026-02-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00", "2026-03-01T08:00:00Z"),
    ("2026-03-31T22:30:00Z", "2026-04-01T00:00:00+02:00", "2026-05-01T00:00:00+02:00", "2026-05-01T07:00:00Z"),
])
def test_month_period(occurred: str, start: str, end: str, send_at: str) -> None:
    period = digest_period(Digest("month", "0 9 1 * *"), utc(occurred), BERLIN)
    assert (period.start.isoformat(), period.end.isoformat()) == (start, end)
    assert period.send_at == utc(send_at)


def test_a_digest_sent_at_the_period_end_itself() -> None:
    # "the first cron time at or after the period's end": midnight Monday is the end itself
    period = digest_period(Digest("week", "0 0 * * MON"), utc("2026-03-04T12:00:00Z"), BERLIN)
    assert period.send_at == period.end.astimezone(UTC) == utc("2026-03-08T23:00:00Z")


# -- recipients' zones ------------------------------------------------------------------------
def test_recipient_zone_falls_back_to_the_default() -> None:
    assert recipient_zone({"timezone": "Europe/Berlin"}, "UTC") == BERLIN
    assert recipient_zone({}, "America/New_York") == NY
    assert recipient_zone({"timezone": "Mars/Olympus"}, "UTC") == ZoneInfo("UTC")
    assert recipient_zone(None, "UTC") == ZoneInfo("UTC")
