"""Snapshots of the Courier request body of every notification, built from its example event.

A change to a rule's data, template or audience shows up here as a snapshot diff in the pull
request. After an intended change: `pytest tests/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from engine.core.decide import DigestItem, Renderer, Send, digest_send, plan
from engine.core.events import parse_event
from engine.core.rendering import courier_message

CLIENT = [
    "client_welcome", "client_email_verification", "client_booking_confirmation", "client_payment_receipt",
    "client_session_confirmation", "client_booking_reminder_24h", "client_booking_reminder_30m",
    "client_booking_cancelled", "client_booking_rescheduled", "client_credit_purchase", "client_review_request",
    "client_new_message",
]
PRACTITIONER = [
    "practitioner_welcome", "practitioner_profile_completion_reminder", "practitioner_nudge_no_session",
    "practitioner_service_created", "practitioner_bundle_created", "practitioner_booking_notification",
    "practitioner_client_rescheduled", "practitioner_payout_confirmation", "practitioner_session_reminder_24h",
    "practitioner_session_reminder_30m", "practitioner_new_review", "practitioner_weekly_earnings_summary",
    "practitioner_new_message", "practitioner_verification_status",
]
NOTIFICATIONS = CLIENT + PRACTITIONER
COMMON = ("app_name", "frontend_url", "support_email", "user_name", "user_email")
RENDERER = Renderer(env="production", environ={})


@pytest.fixture
def snapshot_json(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def example_send(config, notification_id: str) -> Send:
    """The send a rule makes of its own example event, with `now` = the example's occurred_at;
    a digest is sent over that single item."""
    rule = config.notifications[notification_id]
    ex = rule.example
    assert ex is not None, f"{notification_id} has no example"
    event = parse_event({"id": ex.id, "type": ex.type, "occurred_at": ex.occurred_at, "data": dict(ex.data)}, config)
    decisions = plan(config, rule, event, event.occurred_at, RENDERER)
    assert len(decisions) == 1, decisions
    decision = decisions[0]
    if isinstance(decision, DigestItem):
        decision = digest_send(config, rule, decision.recipient, [decision.item], decision.period_start,
                               decision.period_end, decision.send_at, RENDERER)
    assert isinstance(decision, Send)
    assert decision.status == "scheduled", (decision.status, decision.reason)
    return decision


def test_the_26_notifications_are_all_here(shipped_config) -> None:
    assert len(CLIENT) == 12 and len(PRACTITIONER) == 14
    assert sorted(shipped_config.notifications) == sorted(NOTIFICATIONS)


@pytest.mark.parametrize("notification_id", NOTIFICATIONS)
def test_courier_body(notification_id: str, shipped_config, snapshot_json) -> None:
    send = example_send(shipped_config, notification_id)
    body = courier_message(send.recipient, send.template, send.data, send.channels)

    message = body["message"]
    assert set(message) >= {"to", "template", "data", "routing"}
    assert message["to"]["user_id"] == send.recipient_id
    assert message["to"]["email"] == send.recipient["email"]
    assert message["template"] == shipped_config.templates["production"][send.template_key]
    assert message["routing"] == {"method": "single", "channels": list(shipped_config.notifications[notification_id].channels)}
    for name in COMMON:
        assert name in message["data"], name
    assert message["data"]["app_name"] == "Estuary"
    assert message["data"]["user_email"] == send.recipient["email"]
    for name in shipped_config.notifications[notification_id].requires:
        assert name in message["data"], name

    assert body == snapshot_json
