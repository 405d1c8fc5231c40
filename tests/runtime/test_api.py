"""The Python API: Runtime.emit, Runtime.schedule and Runtime.send_now, as their docstrings promise."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.core.events import EventRejected
from engine.delivery import CourierBackend
from engine.runtime import SendRefused
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, booking_cancelled, booking_confirmed, message_sent, person, unbatched


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    return make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2))


def test_emit_is_the_hook_in_process(rt: Any) -> None:
    result = rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    assert (result.accepted, result.duplicates, result.scheduled) == (["evt_1"], [], 6)
    again = rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    assert (again.accepted, again.duplicates, again.scheduled) == ([], ["evt_1"], 0)
    bad = booking_confirmed("evt_2", "bk_2", NOW + timedelta(days=3), NOW)
    del bad["data"]["client"]
    with pytest.raises(EventRejected) as refused:
        rt.emit(bad, now=NOW)
    assert refused.value.problems == [("$.data", "'client' is a required property")]
    assert rt.store.event_count() == 1 and len(rt.store.notifications()) == 6


def test_schedule_a_one_off_later(rt: Any, standin: CourierStandin) -> None:
    at = NOW + timedelta(hours=2)
    who = person("usr_c_7", "Maya Chen", "America/New_York")
    data = dict(rt.config.notifications["client_review_request"].example.data)
    data["review_url"] = "https://estuary.app/bookings/bk_77/review"
    row_id = rt.schedule("client_review_request", who, at, data, now=NOW)
    [row] = rt.store.notifications(with_payload=True)
    assert row["id"] == row_id
    assert (row["status"], row["send_at"], row["recipient_id"]) == ("scheduled", at, "usr_c_7")
    message = row["message"]
    assert message["to"]["email"] == "usr_c_7@example.com"
    assert message["data"]["review_url"] == "https://estuary.app/bookings/bk_77/review"
    assert rt.schedule("client_review_request", who, at, data, now=NOW) is None  # same default idempotency key

    assert rt.sweep(at - timedelta(seconds=1)) == 0
    assert standin.requests == []
    assert rt.sweep(at) == 1
    [request] = standin.requests
    assert request["headers"]["idempotency-key"] == row["idempotency_key"]
    assert rt.store.notifications()[0]["status"] == "sent"


def test_schedule_uses_known_recipients_and_the_rules_example(rt: Any) -> None:
    rt.store.import_recipients([person("usr_known", "Known Person")], NOW)
    with pytest.raises(SendRefused, match="give the event data its rule renders from"):
        rt.schedule("client_welcome", "usr_known", NOW + timedelta(days=1), now=NOW)  # never the example by accident
    assert rt.store.notifications() == []
    row_id = rt.schedule("client_welcome", "usr_known", NOW + timedelta(days=1), example=True, now=NOW)
    [row] = rt.store.notifications(with_payload=True)
    assert row["id"] == row_id and row["message"]["data"]["user_name"] == "Known Person"
    example = rt.config.notifications["client_welcome"].example.data
    assert row["message"]["data"]["verification_url"] == example["verification_url"]
    with pytest.raises(SendRefused, match="unknown notification"):
        rt.schedule("no_such_rule", "usr_known", NOW, example=True, now=NOW)
    with pytest.raises(SendRefused, match="unknown recipient"):
        rt.schedule("client_welcome", "usr_nobody", NOW, example=True, now=NOW)
    with pytest.raises(SendRefused, match="an id"):
        rt.schedule("client_welcome", {"email": "x@example.com"}, NOW, example=True, now=NOW)


def test_send_now_sends_through_the_claim_and_checks(rt: Any, standin: CourierStandin) -> None:
    assert rt.send_now("client_welcome", person("usr_1"), example=True, now=NOW) == "sent"
    [row] = rt.store.notifications(notification="client_welcome")
    assert (row["status"], row["attempts"], row["send_at"]) == ("sent", 1, NOW)
    assert [h["status"] for h in rt.store.history(row["id"])] == ["scheduled", "sending", "sent"]
    assert standin.sends_by_key() == {row["idempotency_key"]: 1}
    # Preferences apply (an opt-out category), the idempotency key holds.
    rt.store.set_preferences("usr_2", {"activity": False}, NOW)
    assert rt.send_now("client_new_message", person("usr_2"), example=True, now=NOW) == "skipped"
    assert rt.send_now("client_welcome", person("usr_3"), idempotency_key="once", example=True, now=NOW) == "sent"
    assert rt.send_now("client_welcome", person("usr_3"), idempotency_key="once", example=True, now=NOW) == "duplicate"
    assert standin.sends_by_key()["once"] == 1 and len(standin.requests) == 2


def test_send_now_leaves_other_due_rows_to_the_sweep(rt: Any, standin: CourierStandin) -> None:
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)  # two sends due now
    assert rt.send_now("client_welcome", person("usr_1"), example=True, now=NOW) == "sent"
    assert rt.sweep(NOW) == 2  # still there for the sweep, not parked as `queued` with nobody to deliver them
    assert sorted(r["notification"] for r in rt.store.notifications(status=["sent"])) == [
        "client_booking_confirmation", "client_welcome", "practitioner_booking_notification"]


def test_the_same_booking_confirmed_twice_has_one_set_of_reminders(rt: Any) -> None:
    start = NOW + timedelta(days=3)
    first = rt.emit(booking_confirmed("evt_1", "bk_1", start, NOW), now=NOW)
    again = rt.emit(booking_confirmed("evt_1b", "bk_1", start, NOW), now=NOW)  # the app sent it again, new id
    # Confirmations are keyed by the booking, reminders by the booking and its start: the copy adds nothing,
    # and the count says so.
    assert (first.scheduled, again.scheduled) == (6, 0)
    both = rt.ingest(
        [booking_confirmed("evt_2", "bk_2", start, NOW), booking_confirmed("evt_2b", "bk_2", start, NOW)], now=NOW
    )
    assert both.scheduled == 6
    for bid in ("bk_1", "bk_2"):
        reminders = [
            r for r in rt.store.notifications(notification="client_booking_reminder_24h", limit=100) if r["key"] == bid
        ]
        assert len(reminders) == 1, bid


def test_a_direct_reminder_is_planned_by_its_rule_and_a_cancel_reaches_it(rt: Any, standin: CourierStandin) -> None:
    start = NOW + timedelta(days=3)
    data = booking_confirmed("evt_x", "bk_9", start, NOW)["data"]
    at = start - timedelta(hours=24)
    row_id = rt.schedule("client_booking_reminder_24h", person("usr_c_1"), at, data, now=NOW)
    [row] = rt.store.notifications()
    assert row["id"] == row_id and row["key"] == "bk_9"  # the rule's key: its cancel_on events find it
    # The rule's declared idempotency key holds: the same reminder asked for twice is one send.
    assert rt.schedule("client_booking_reminder_24h", person("usr_c_1"), at, data, now=NOW) is None
    rt.emit(booking_cancelled("evt_c", "bk_9", start, NOW + timedelta(hours=1)), now=NOW + timedelta(hours=1))
    assert rt.store.status(row_id) == "cancelled"
    rt.sweep(at)
    assert row["idempotency_key"] not in standin.sends_by_key()  # (the cancellation notice itself goes out)


def test_direct_messages_are_throttled_per_conversation_as_the_rule_says(rt: Any, standin: CourierStandin) -> None:
    rule = unbatched(rt).config.notifications["client_new_message"]
    assert rule.throttle is not None
    sent = []
    for i in range(rule.throttle.limit + 1):
        data = message_sent(f"e{i}", f"m{i}", "conv_a", NOW)["data"]
        sent.append(rt.send_now("client_new_message", person("usr_c_1"), data, now=NOW + timedelta(seconds=i)))
    other = message_sent("e_other", "m_other", "conv_b", NOW)["data"]  # another conversation: its own bucket
    assert sent == ["sent"] * rule.throttle.limit + ["skipped"]
    assert rt.send_now("client_new_message", person("usr_c_1"), other, now=NOW + timedelta(seconds=30)) == "sent"
    throttle_keys = {
        r["idempotency_key"]: r["status"] for r in rt.store.notifications(notification="client_new_message")
    }
    assert list(throttle_keys.values()).count("skipped") == 1


def test_send_now_with_a_declared_key_sends_once(rt: Any, standin: CourierStandin) -> None:
    start = NOW + timedelta(hours=20)
    data = booking_confirmed("evt_x", "bk_5", start, NOW)["data"]
    assert rt.send_now("client_booking_reminder_24h", person("usr_c_1"), data, now=NOW) == "sent"
    assert (
        rt.send_now("client_booking_reminder_24h", person("usr_c_1"), data, now=NOW + timedelta(minutes=1))
        == "duplicate"
    )
    assert len(standin.requests) == 1


def test_a_digest_sent_directly_is_built_from_the_example(rt: Any, standin: CourierStandin) -> None:
    who = person("usr_p_1", "Jonas Weber", "Europe/Berlin")
    assert rt.send_now("practitioner_weekly_earnings_summary", who, example=True, now=NOW) == "sent"
    [request] = standin.requests
    assert request["body"]["message"]["to"]["user_id"] == "usr_p_1"


def test_direct_sends_pass_the_door_events_pass(rt: Any) -> None:
    data = booking_confirmed("evt_x", "bk_1", NOW + timedelta(days=3), NOW)["data"]
    del data["booking"]["start_time"]
    with pytest.raises(EventRejected) as refused:
        rt.schedule("client_booking_reminder_24h", person("usr_c_1"), NOW + timedelta(days=2), data, now=NOW)
    assert refused.value.problems[0][0] == "$.data.booking"
    long_id = booking_confirmed("evt_y", "bk_2", NOW + timedelta(days=3), NOW)["data"]
    with pytest.raises(EventRejected, match="200"):
        rt.schedule(
            "client_booking_reminder_24h", person("usr_" + "x" * 300), NOW + timedelta(days=2), long_id, now=NOW
        )
    assert rt.store.notifications() == []
