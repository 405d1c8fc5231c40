"""An expiry counts from the time a send first fell due: a retry (Courier 5xx) or a credentials pause
puts the row back at a later time, but never moves its deadline; a reschedule does, since it
changes when the send is really due. The live runtime delivers through the real SDK to the
Courier stand-in, on SQLite and PostgreSQL.

The shipped `client_booking_reminder_30m` falls due 30 minutes before the session and expires
20 minutes after that."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from engine import metrics
from engine.delivery import CourierBackend
from engine.delivery.courier import Credentials
from engine.health import ALARMS
from engine.store.db import alembic_config, connect, upgrade
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, booking_confirmed, booking_rescheduled

START = NOW + timedelta(hours=3)  # the session: its 30-minute reminder falls due at 14:30
DUE = START - timedelta(minutes=30)
DEADLINE = DUE + timedelta(minutes=20)
REMINDER = "client_booking_reminder_30m"


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    """A runtime whose confirmations went out: only the reminders are left."""
    runtime = make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2))
    runtime.emit(booking_confirmed("evt_1", "bk_1", START, NOW), now=NOW)
    runtime.sweep(NOW)
    standin.reset()
    return runtime


@pytest.fixture
def credentials() -> Iterator[None]:
    yield
    ALARMS.set(Credentials.ALARM, True, "credentials accepted")  # the alarm is this process's: leave it clear


def reminder(rt: Any) -> dict[str, Any]:
    [row] = rt.store.notifications(notification=REMINDER)
    return row


def sent(standin: CourierStandin) -> list[dict[str, Any]]:
    return [r["body"]["message"] for r in standin.requests if r["idempotency_key"].startswith(REMINDER)]


def test_a_send_retried_past_its_deadline_is_skipped_expired(rt: Any, standin: CourierStandin) -> None:
    standin.fail_next(4, 503)  # both 30-minute reminders (the client's and the practitioner's), twice
    rt.sweep(DUE)
    rt.sweep(DUE + timedelta(minutes=15))  # the second attempt fails too: its retry is due at about 14:45
    assert (reminder(rt)["status"], reminder(rt)["reason"]) == ("scheduled", "retry")
    assert reminder(rt)["send_at"] > DUE + timedelta(minutes=15)
    rt.sweep(DEADLINE + timedelta(minutes=1))  # within 20 minutes of the retry, but not of the first due time
    assert (reminder(rt)["status"], reminder(rt)["reason"]) == ("skipped", "expired")
    assert sent(standin) == []
    assert len([f for f in standin.injected if f["idempotency_key"].startswith(REMINDER)]) == 2


def test_a_retry_on_time_carries_the_first_deadline_to_courier(rt: Any, standin: CourierStandin) -> None:
    standin.fail_next(2, 503)
    rt.sweep(DUE)
    rt.sweep(DUE + timedelta(minutes=5))  # the retry goes through
    [message] = sent(standin)
    assert message["expiry"] == {"expires_at": "2026-03-02T14:50:00Z", "expires_in": 15 * 60 * 1000}
    assert reminder(rt)["status"] == "sent"


def test_a_send_paused_for_credentials_does_not_outlive_its_deadline(rt: Any, standin: CourierStandin,
                                                                      credentials: None) -> None:
    good = rt.backend
    rt.backend = CourierBackend("revoked", standin.url, timeout=2, credentials=Credentials(60))
    for minutes in range(0, 20, 5):  # Courier refuses the key; each sweep puts the reminder back
        rt.sweep(DUE + timedelta(minutes=minutes))
        assert reminder(rt)["reason"].startswith("paused:")
    assert reminder(rt)["send_at"] > DUE + timedelta(minutes=15)
    for minutes in range(20, 180, 5):  # ...for three hours
        rt.sweep(DUE + timedelta(minutes=minutes))
    rt.backend = good  # the key is fixed: the reminder would go out 3 hours late
    rt.sweep(DUE + timedelta(hours=3))
    assert (reminder(rt)["status"], reminder(rt)["reason"]) == ("skipped", "expired")
    assert sent(standin) == []


def test_a_paused_send_skipped_expired_already_at_the_deadline(rt: Any, standin: CourierStandin,
                                                               credentials: None) -> None:
    good = rt.backend
    rt.backend = CourierBackend("revoked", standin.url, timeout=2, credentials=Credentials(60))
    rt.sweep(DEADLINE - timedelta(seconds=30))  # paused: back in 60 s, after the deadline
    rt.backend = good
    rt.sweep(DEADLINE + timedelta(seconds=45))  # 15 s after the retry fell due, 45 s after the deadline
    assert (reminder(rt)["status"], reminder(rt)["reason"]) == ("skipped", "expired")
    assert sent(standin) == []


def test_a_rescheduled_send_gets_the_deadline_of_its_new_due_time(rt: Any, standin: CourierStandin) -> None:
    standin.fail_next(2, 503)
    rt.sweep(DUE)  # failed once: a retry is pending
    moved = START + timedelta(hours=2)
    rt.emit(booking_rescheduled("evt_2", "bk_1", START, moved, DUE + timedelta(minutes=1)),
            now=DUE + timedelta(minutes=1))
    rt.sweep(DUE + timedelta(minutes=2))
    assert sent(standin) == []  # the old reminder was cancelled, the new one is not due yet
    new_due = moved - timedelta(minutes=30)
    rt.sweep(new_due + timedelta(minutes=10))  # later than the old deadline, within the new one
    [message] = sent(standin)
    assert message["expiry"] == {"expires_at": "2026-03-02T16:50:00Z", "expires_in": 10 * 60 * 1000}
    statuses = sorted(r["status"] for r in rt.store.notifications(notification=REMINDER))
    assert statuses == ["cancelled", "sent"]


def lateness_sum() -> float:
    return metrics.REGISTRY.get_sample_value("engine_send_lateness_seconds_sum") or 0.0


def test_lateness_counts_from_the_first_due_time(rt: Any, standin: CourierStandin) -> None:
    before = lateness_sum()
    standin.fail_next(2, 503)
    rt.sweep(DUE)
    rt.sweep(DUE + timedelta(minutes=5))  # both reminders go out 5 minutes after they first fell due
    assert len(sent(standin)) == 1
    assert lateness_sum() - before == pytest.approx(2 * 300.0)


def test_the_migration_gives_stored_rows_their_send_time_as_first_due_time(db_url: str) -> None:
    from alembic import command

    engine = connect(db_url)
    try:
        with engine.begin() as conn:
            config = alembic_config(engine)
            config.attributes["connection"] = conn
            command.upgrade(config, "0007")
            conn.execute(text(
                "INSERT INTO notifications (notification, recipient_id, category, channels, idempotency_key, send_at, "
                "status, attempts, created_at, updated_at) VALUES ('n', 'usr_1', 'c', '[\"email\"]', 'k', :at, "
                "'scheduled', 0, :at, :at)"), {"at": DUE})
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM notifications WHERE due_at = send_at")).scalar_one() == 1
    finally:
        engine.dispose()
