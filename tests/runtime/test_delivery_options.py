"""Routing, Courier metadata and expiry, end to end: the live runtime delivers through the real SDK
to the Courier stand-in, which checks the message as Courier does (tags of at most 30 characters,
an expiry with its `expires_in`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from engine.delivery import CourierBackend
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, booking_confirmed, payment_succeeded

START = NOW + timedelta(hours=3)  # the session; its 30-minute reminders fall due at 14:30
DUE = START - timedelta(minutes=30)


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    return make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2))


def with_rule(rt: Any, notification: str, **changes: Any) -> None:
    """The runtime's rules with one rule changed, as a deploy would change them."""
    rules = dict(rt.config.notifications)
    rules[notification] = replace(rules[notification], **changes)
    rt.config = replace(rt.config, notifications=rules)


def sent(standin: CourierStandin, notification: str) -> list[dict[str, Any]]:
    return [r["body"]["message"] for r in standin.requests if r["idempotency_key"].startswith(notification)]


def test_every_message_carries_metadata_that_joins_it_to_its_send(rt: Any, standin: CourierStandin) -> None:
    rt.emit(booking_confirmed("evt_1", "bk_1", START, NOW), now=NOW)
    assert rt.sweep(NOW) == 2
    by_key = {r["idempotency_key"]: r["body"]["message"] for r in standin.requests}
    assert len(by_key) == 2
    for row in rt.store.notifications(status=["sent"]):
        metadata = by_key[row["idempotency_key"]]["metadata"]
        assert metadata["trace_id"] == row["idempotency_key"]
        assert metadata["event"] == row["notification"]
        assert metadata["tags"][1] == f"category:{row['category']}"
    # A notification id longer than Courier's 30 characters keeps a recognisable, stable tag.
    [notice] = sent(standin, "practitioner_booking_notification")
    tag = notice["metadata"]["tags"][0]
    assert len(tag) == 30 and tag.startswith("practitioner_booking_") and tag[21] == "~"


def test_routing_all_delivers_on_every_channel_the_person_keeps(rt: Any, standin: CourierStandin) -> None:
    with_rule(rt, "client_booking_reminder_24h", channels=("email", "push"), routing="all")
    rt.store.set_preferences("usr_c_2", {"client_booking_reminder_24h:email": False}, NOW)
    start = NOW + timedelta(days=2)
    rt.emit(booking_confirmed("evt_1", "bk_1", start, NOW, client="usr_c_1"), now=NOW)
    rt.emit(booking_confirmed("evt_2", "bk_2", start, NOW, client="usr_c_2"), now=NOW)
    rt.sweep(start - timedelta(hours=24))
    routes = {m["to"]["user_id"]: m["routing"] for m in sent(standin, "client_booking_reminder_24h")}
    assert routes == {"usr_c_1": {"method": "all", "channels": ["email", "push"]},
                      "usr_c_2": {"method": "all", "channels": ["push"]}}  # opted out of the email only


def test_single_routing_is_the_default(rt: Any, standin: CourierStandin) -> None:
    rt.emit(booking_confirmed("evt_1", "bk_1", START, NOW), now=NOW)
    rt.sweep(NOW)
    [message] = sent(standin, "practitioner_booking_notification")
    assert message["routing"] == {"method": "single", "channels": ["email"]}
    assert "expiry" not in message  # the rule declares no expires_after
    [confirmation] = sent(standin, "client_booking_confirmation")  # the email and the in-app inbox, both
    assert confirmation["routing"] == {"method": "all", "channels": ["email", "inbox"]}


def test_a_send_on_time_carries_its_deadline_as_courier_s_expiry(rt: Any, standin: CourierStandin) -> None:
    rt.emit(booking_confirmed("evt_1", "bk_1", START, NOW), now=NOW)
    rt.sweep(DUE + timedelta(minutes=5))  # a worker five minutes behind
    [reminder] = sent(standin, "client_booking_reminder_30m")
    assert reminder["expiry"] == {"expires_at": "2026-03-02T14:50:00Z", "expires_in": 15 * 60 * 1000}
    [row] = rt.store.notifications(notification="client_booking_reminder_30m")
    assert row["status"] == "sent"


def test_a_send_later_than_its_expiry_is_skipped_expired_not_sent(rt: Any, standin: CourierStandin) -> None:
    rt.emit(booking_confirmed("evt_1", "bk_1", START, NOW), now=NOW)
    rt.sweep(NOW)  # the confirmations
    standin.reset()
    rt.sweep(DUE + timedelta(minutes=20))  # the workers were down: the reminders are 20 minutes late
    assert sent(standin, "client_booking_reminder_30m") == sent(standin, "practitioner_session_reminder_30m") == []
    for notification in ("client_booking_reminder_30m", "practitioner_session_reminder_30m"):
        [row] = rt.store.notifications(notification=notification)
        assert (row["status"], row["reason"]) == ("skipped", "expired")


def test_a_digest_sums_each_currency_apart(rt: Any, standin: CourierStandin) -> None:
    usd = payment_succeeded("evt_p1", "pay_1", NOW + timedelta(days=1), 1000)
    usd["data"]["payment"]["currency"] = "USD"
    jpy = payment_succeeded("evt_p2", "pay_2", NOW + timedelta(days=2), 2000)
    jpy["data"]["payment"]["currency"] = "JPY"
    usd_again = payment_succeeded("evt_p3", "pay_3", NOW + timedelta(days=3), 2000)
    usd_again["data"]["payment"]["currency"] = "USD"
    for event in (usd, jpy, usd_again):
        rt.emit(event, now=NOW + timedelta(days=3))
    rt.sweep(NOW + timedelta(days=7))
    [summary] = sent(standin, "practitioner_weekly_earnings_summary")
    assert summary["data"]["totals"] == [{"currency": "USD", "amount": 3000, "count": 2},
                                         {"currency": "JPY", "amount": 2000, "count": 1}]
    assert summary["data"]["total_formatted"] == "$30.00, ¥2,000"
    assert summary["data"]["count"] == 3
