"""An event that comes after its send's due time, under `if_past: send_now`, is sent at once, but
its expiry still counts from the real due time, not from when the event came: at plan time, at
send time, in the Courier message's `expiry`, and in `engine preview`.

The shipped `client_booking_reminder_30m` (due 30 minutes before the session, expires 20 minutes
after that), here with `if_past: send_now`: a confirmation 10 minutes before the session comes
exactly at the deadline, and a send at its deadline is too late (expired), as at send time."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from engine import preview
from engine.delivery import CourierBackend
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, booking_confirmed

REMINDER = "client_booking_reminder_30m"
START = NOW + timedelta(hours=3)
DUE = START - timedelta(minutes=30)
DEADLINE = DUE + timedelta(minutes=20)  # 10 minutes before the session


@pytest.fixture(scope="module")
def config(config: Any) -> Any:
    """The shipped rules, the 30-minute reminder sent at once when its event comes late."""
    rule = config.notifications[REMINDER]
    late = replace(rule, schedule=replace(rule.schedule, if_past="send_now"))
    return replace(config, notifications={**config.notifications, REMINDER: late})


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    return make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2))


def confirmed(at: datetime) -> dict[str, Any]:
    return booking_confirmed("evt_1", "bk_1", START, at)


def reminder(rt: Any) -> dict[str, Any]:
    [row] = [r for r in rt.store.rows() if r["notification"] == REMINDER]
    return row


def sent(standin: CourierStandin) -> list[dict[str, Any]]:
    return [r["body"]["message"] for r in standin.requests if r["idempotency_key"].startswith(REMINDER)]


def test_an_event_arriving_at_the_deadline_is_skipped_expired_when_planned(rt: Any, standin: CourierStandin) -> None:
    rt.emit(confirmed(DEADLINE), now=DEADLINE)
    rt.sweep(DEADLINE)
    row = reminder(rt)
    assert (row["status"], row["reason"], row["send_at"], row["due_at"]) == ("skipped", "expired", DUE, DUE)
    assert sent(standin) == []


def test_an_event_just_before_the_deadline_is_sent_at_once_with_the_real_deadline(
        rt: Any, standin: CourierStandin) -> None:
    came = DEADLINE - timedelta(seconds=1)
    rt.emit(confirmed(came), now=came)
    row = reminder(rt)
    assert (row["status"], row["send_at"], row["due_at"]) == ("scheduled", came, DUE)
    rt.sweep(came)
    [message] = sent(standin)
    assert message["expiry"] == {"expires_at": "2026-03-02T14:50:00Z", "expires_in": 1000}
    assert reminder(rt)["status"] == "sent"


def test_a_late_event_whose_send_is_delayed_past_the_deadline_expires_at_send_time(
        rt: Any, standin: CourierStandin) -> None:
    came = DEADLINE - timedelta(minutes=1)
    rt.emit(confirmed(came), now=came)
    rt.sweep(DEADLINE)  # the workers were a minute late: within 20 minutes of the event, not of the due time
    assert (reminder(rt)["status"], reminder(rt)["reason"]) == ("skipped", "expired")
    assert sent(standin) == []


def test_the_preview_gives_the_real_deadline_of_a_late_event(config: Any) -> None:
    came = DEADLINE - timedelta(minutes=1)
    result = preview.run(config, [(1, confirmed(came))])
    [row] = [r.as_json() for r in result.rows if r.send.notification == REMINDER]
    assert (row["status"], row["send_at"], row["expires_at"]) == ("sent", "2026-03-02T14:49:00Z",
                                                                  "2026-03-02T14:50:00Z")
