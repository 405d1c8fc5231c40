"""Delivery: the backends' one contract, Courier's outcomes through the real SDK, and
`Runtime.deliver` end to end against the Courier stand-in (retries, failures, send-time checks)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from engine.delivery import CourierBackend, OutboxBackend
from engine.delivery.message import Message, address, courier_body
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, booking_confirmed, message_sent, person, unbatched

MESSAGE = Message(address(person("usr_c_1"), ("email",)), "CLIENT_WELCOME_V1", {"user_id": "usr_c_1"}, ("email",))


# -- one contract for every backend -------------------------------------------------------------------
class BackendContract:
    @pytest.fixture
    def backend(self) -> Any:
        raise NotImplementedError

    def test_a_good_message_is_sent_with_a_request_id(self, backend: Any) -> None:
        outcome = backend.send(MESSAGE, "key-1")
        assert outcome.status == "sent" and outcome.request_id and outcome.error is None

    def test_the_same_key_is_the_same_send(self, backend: Any) -> None:
        first, again = backend.send(MESSAGE, "key-1"), backend.send(MESSAGE, "key-1")
        other = backend.send(MESSAGE, "key-2")
        assert first.request_id == again.request_id != other.request_id


class TestOutboxBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> Any:
        return OutboxBackend()


class TestCourierBackend(BackendContract):
    @pytest.fixture
    def backend(self, standin: CourierStandin) -> Any:
        return CourierBackend(COURIER_TOKEN, standin.url, timeout=2)

    def test_sent_carries_courier_request_id_and_idempotency_key(self, backend: Any, standin: CourierStandin) -> None:
        outcome = backend.send(MESSAGE, "client_welcome:usr_c_1:evt_1")
        [request] = standin.requests
        assert outcome.request_id == request["request_id"]
        assert request["headers"]["idempotency-key"] == "client_welcome:usr_c_1:evt_1"
        assert request["headers"]["authorization"] == f"Bearer {COURIER_TOKEN}"
        assert request["body"] == courier_body(MESSAGE)

    @pytest.mark.parametrize("status", [429, 500, 502, 503])
    def test_rate_limits_and_server_errors_are_retried(
        self, backend: Any, standin: CourierStandin, status: int
    ) -> None:
        standin.fail_next(1, status=status, retry_after=7 if status == 429 else None)
        outcome = backend.send(MESSAGE, "k")
        assert outcome.status == "retry" and f"HTTP {status}" in outcome.error
        assert outcome.retry_after == (7.0 if status == 429 else None)
        assert len(standin.injected) == 1, "the SDK must not retry on its own: retries are durable rows"
        assert backend.send(MESSAGE, "k").status == "sent"
        assert standin.sends_by_key() == {"k": 1}

    def test_a_timeout_is_retried_and_the_retry_is_a_replay(self, standin: CourierStandin) -> None:
        backend = CourierBackend(COURIER_TOKEN, standin.url, timeout=0.3)
        standin.delay_next(1, 1.5)  # Courier got it; we never heard back
        outcome = backend.send(MESSAGE, "k")
        assert outcome.status == "retry" and "timeout" in outcome.error
        again = backend.send(MESSAGE, "k")
        assert again.status == "sent" and again.request_id == standin.requests[0]["request_id"]
        assert standin.sends_by_key() == {"k": 1}

    def test_a_dropped_connection_is_retried(self, backend: Any, standin: CourierStandin) -> None:
        standin.drop_next(1)
        outcome = backend.send(MESSAGE, "k")
        assert outcome.status == "retry" and "connection" in outcome.error
        assert backend.send(MESSAGE, "k").status == "sent"
        assert standin.sends_by_key() == {"k": 1}

    def test_a_bad_request_fails_at_once_with_the_reason(self, backend: Any, standin: CourierStandin) -> None:
        bad = replace(MESSAGE, template=" ")
        outcome = backend.send(bad, "k")
        assert outcome.status == "failed"
        assert outcome.error == "HTTP 400: message.template must be a non-empty string"
        assert standin.requests == []

    def test_a_wrong_token_pauses(self, standin: CourierStandin) -> None:
        # A rejected key is the operator's fault, not the send's: the send waits for a key that works.
        outcome = CourierBackend("wrong", standin.url, timeout=2).send(MESSAGE, "k")
        assert outcome.status == "paused" and "HTTP 401" in (outcome.error or "")

    def test_nothing_listening_is_a_retry(self) -> None:
        from .support import free_port

        outcome = CourierBackend(COURIER_TOKEN, f"http://127.0.0.1:{free_port()}", timeout=1).send(MESSAGE, "k")
        assert outcome.status == "retry"


# -- Runtime.deliver end to end --------------------------------------------------------------------
@pytest.fixture
def courier_runtime(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    def build(**kwargs: Any) -> Any:
        timeout = kwargs.pop("timeout", 2)
        return make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=timeout), **kwargs)

    return build


def rows(rt: Any, notification: str) -> list[dict[str, Any]]:
    return rt.store.notifications(notification=notification, limit=1000)


def templates_sent(standin: CourierStandin) -> list[str]:
    return [r["body"]["message"]["template"] for r in standin.requests]


def test_a_retry_is_rescheduled_with_backoff_and_the_second_attempt_sends_once(
    courier_runtime: Any, standin: CourierStandin
) -> None:
    rt = courier_runtime()
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    standin.fail_next(1, status=500)
    assert rt.sweep(NOW) == 2  # the client's confirmation and the practitioner's notification
    [retrying] = [r for r in rt.store.notifications(status=["scheduled"]) if r["send_at"] < NOW + timedelta(hours=1)]
    got = (retrying["reason"], retrying["attempts"], retrying["last_error"])
    assert got == ("retry", 1, "HTTP 500: Injected failure")
    assert NOW + timedelta(seconds=0.5) <= retrying["send_at"] <= NOW + timedelta(seconds=1)
    assert rt.sweep(NOW + timedelta(seconds=0.4)) == 0  # not before its backoff
    assert rt.sweep(NOW + timedelta(seconds=2)) == 1
    [row] = [r for r in rt.store.notifications() if r["id"] == retrying["id"]]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert row["request_id"] == next(
        r["request_id"] for r in standin.requests if r["idempotency_key"] == row["idempotency_key"]
    )
    assert standin.sends_by_key()[row["idempotency_key"]] == 1
    assert [i["idempotency_key"] for i in standin.injected] == [row["idempotency_key"]]
    assert [(h["status"], h["reason"]) for h in rt.store.history(row["id"])] == [
        ("scheduled", None), ("sending", "attempt 1"), ("scheduled", "retry"), ("sending", "attempt 2"), ("sent", None)]


def test_a_rate_limit_waits_at_least_retry_after(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = unbatched(courier_runtime())
    rt.emit(message_sent("evt_m", "msg_1", "conv_1", NOW), now=NOW)
    standin.fail_next(1, status=429, retry_after=30)
    rt.sweep(NOW)
    [row] = rows(rt, "client_new_message")
    assert row["status"] == "scheduled" and row["send_at"] >= NOW + timedelta(seconds=30)
    assert rt.sweep(NOW + timedelta(seconds=29)) == 0
    rt.sweep(NOW + timedelta(seconds=31))
    assert rows(rt, "client_new_message")[0]["status"] == "sent"


def test_a_timeout_is_retried_without_a_second_send(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = unbatched(courier_runtime(timeout=0.3))
    rt.emit(message_sent("evt_m", "msg_1", "conv_1", NOW), now=NOW)
    standin.delay_next(1, 1.5)
    rt.sweep(NOW)
    [row] = rows(rt, "client_new_message")
    assert row["status"] == "scheduled" and row["last_error"] == "timeout waiting for Courier"
    rt.sweep(NOW + timedelta(seconds=5))
    [row] = rows(rt, "client_new_message")
    assert row["status"] == "sent" and row["request_id"] == standin.requests[0]["request_id"]
    assert standin.sends_by_key() == {row["idempotency_key"]: 1}


def test_retries_stop_after_max_attempts(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = unbatched(courier_runtime(max_attempts=2))
    rt.emit(message_sent("evt_m", "msg_1", "conv_1", NOW), now=NOW)
    standin.fail_next(5, status=503)
    rt.sweep(NOW)
    rt.sweep(NOW + timedelta(minutes=1))
    [row] = rows(rt, "client_new_message")
    assert (row["status"], row["attempts"], row["reason"]) == ("failed", 2, "HTTP 503: Injected failure")
    assert rt.sweep(NOW + timedelta(hours=1)) == 0
    assert len(standin.injected) == 2


def test_a_client_error_fails_at_once_with_the_reason_in_history(courier_runtime: Any, standin: CourierStandin) -> None:
    # Courier refuses a blank template
    rt = courier_runtime(environ={"COURIER_CLIENT_BOOKING_CONFIRMATION_TEMPLATE": " "})
    rt.emit(booking_confirmed("evt_1", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    rt.sweep(NOW)
    [row] = rows(rt, "client_booking_confirmation")
    reason = "HTTP 400: message.template must be a non-empty string"
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", reason, 1)
    assert rt.store.history(row["id"])[-1] == {"status": "failed", "reason": reason, "at": NOW}
    assert rt.sweep(NOW + timedelta(hours=1)) == 0  # never retried
    assert templates_sent(standin) == ["PRACTITIONER_BOOKING_NOTIFICATION_V1"]


def test_preferences_are_checked_at_send_time(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = courier_runtime()
    start = NOW + timedelta(days=2)
    rt.emit(booking_confirmed("evt_1", "bk_1", start, NOW), now=NOW)
    # The client opts out after the reminders were scheduled, and tries to opt out of transactional mail too.
    rt.store.set_preferences(
        "usr_c_1",
        {
            "client_booking_reminder_24h": False,
            "client_booking_reminder_30m:email": False,
            "client_booking_confirmation": False,
            "transactional": False,
        },
        NOW,
    )
    rt.sweep(NOW)
    rt.sweep(start - timedelta(hours=24))
    rt.sweep(start - timedelta(minutes=30))
    status = {r["notification"]: (r["status"], r["reason"]) for r in rt.store.notifications()}
    assert status == {
        "client_booking_confirmation": ("sent", None),  # transactional: opt-outs do not apply
        "practitioner_booking_notification": ("sent", None),
        "client_booking_reminder_24h": ("skipped", "opted_out"),
        "client_booking_reminder_30m": ("skipped", "opted_out"),
        "practitioner_session_reminder_24h": ("sent", None),
        "practitioner_session_reminder_30m": ("sent", None),
    }
    assert "CLIENT_BOOKING_REMINDER_24H_V1" not in templates_sent(standin)
    # Opting back in before the send time brings it back.
    rt.emit(booking_confirmed("evt_2", "bk_2", start, NOW), now=NOW)
    rt.store.set_preferences("usr_c_1", {"client_booking_reminder_24h": None}, NOW)
    rt.sweep(start - timedelta(hours=24))
    assert [r["status"] for r in rows(rt, "client_booking_reminder_24h")] == ["skipped", "sent"]


def test_a_category_opt_out_skips_at_send_time(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = unbatched(courier_runtime())
    rt.emit(message_sent("evt_m", "msg_1", "conv_1", NOW), now=NOW)
    rt.store.set_preferences("usr_c_1", {"activity": False}, NOW)
    rt.sweep(NOW)
    assert [(r["status"], r["reason"]) for r in rows(rt, "client_new_message")] == [("skipped", "opted_out")]
    assert standin.requests == []


def test_throttle_is_applied_at_send_time(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = unbatched(courier_runtime())
    rt.emit(message_sent("evt_1", "msg_1", "conv_1", NOW), now=NOW)
    rt.emit(message_sent("evt_2", "msg_2", "conv_1", NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    rt.emit(message_sent("evt_3", "msg_3", "conv_2", NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    rt.sweep(NOW)
    rt.sweep(NOW + timedelta(minutes=1))
    rt.emit(message_sent("evt_4", "msg_4", "conv_1", NOW + timedelta(minutes=20)), now=NOW + timedelta(minutes=20))
    rt.sweep(NOW + timedelta(minutes=20))  # the 15-minute window has passed
    got = [(r["event_id"], r["status"], r["reason"]) for r in rows(rt, "client_new_message")]
    assert got == [
        ("evt_1", "sent", None),
        ("evt_2", "skipped", "throttled"),
        ("evt_3", "sent", None),
        ("evt_4", "sent", None),
    ]
    assert len(standin.requests) == 3


def test_the_rate_limit_is_applied_at_send_time(courier_runtime: Any, standin: CourierStandin) -> None:
    rt = unbatched(courier_runtime())
    limit = rt.config.rate_limit.limit
    for i in range(limit + 1):  # each in its own conversation, so no throttle applies
        rt.emit(message_sent(f"evt_{i}", f"msg_{i}", f"conv_{i}", NOW), now=NOW)
    rt.emit(booking_confirmed("evt_b", "bk_1", NOW + timedelta(days=3), NOW), now=NOW)
    rt.sweep(NOW)
    outcome = sorted((r["status"], r["reason"]) for r in rows(rt, "client_new_message"))
    assert outcome == [("sent", None)] * limit + [("skipped", "rate_limited")]
    # Transactional mail is not rate limited.
    assert rows(rt, "client_booking_confirmation")[0]["status"] == "sent"
    # An hour later the window has moved on.
    rt.emit(
        message_sent("evt_late", "msg_late", "conv_late", NOW + timedelta(minutes=61)), now=NOW + timedelta(minutes=61)
    )
    rt.sweep(NOW + timedelta(minutes=61))
    assert rows(rt, "client_new_message")[-1]["status"] == "sent"
