"""The pure parts of routing, Courier metadata, expiry and per-currency totals, and how the
preview and `engine diff` show them (the live path is tests/runtime/test_delivery_options.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core.decide import Renderer, digest_send
from engine.core.policy import deadline, delivery, expired
from engine.core.rendering import Delivery
from engine.delivery.message import Metadata, courier_body, going_out, metadata, tag
from engine.diff import compare
from engine.preview import run
from engine.rules.model import Config, TemplateChoice

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
DANA = {"id": "usr_p_dana", "email": "dana@example.com", "name": "Dana Brooks", "timezone": "America/New_York"}


def test_a_tag_fits_courier_s_30_characters_and_stays_the_same() -> None:
    assert tag("client_welcome") == "client_welcome"
    long = tag("practitioner_weekly_earnings_summary")
    assert len(long) == 30 and long.startswith("practitioner_weekly_e~")
    assert long == tag("practitioner_weekly_earnings_summary")
    assert tag("practitioner_weekly_earnings_summary_b") != long  # same first characters, another tag


def test_metadata_names_notification_category_variant_and_trace(shipped_config: Config) -> None:
    rule = replace(shipped_config.notifications["client_welcome"], template=TemplateChoice(
        variants=(("control", "client_welcome", 70), ("short", "client_welcome_short", 30))))
    found = delivery(rule, ("email",), "CLIENT_WELCOME_SHORT_V1", "client_welcome_short", "client_welcome:u1:e1", NOW)
    assert metadata(found) == Metadata(("client_welcome", "category:account", "variant:short"), "client_welcome",
                                       "client_welcome:u1:e1")
    assert found.expires_at is None  # client_welcome declares no expires_after


def test_the_message_as_it_goes_out(shipped_config: Config) -> None:
    rule = shipped_config.notifications["client_booking_reminder_30m"]
    stored = {"message": {"to": {"user_id": "u1"}, "template": "OLD", "data": {"a": 1},
                          "routing": {"method": "single", "channels": ["email"]}}}
    going = delivery(replace(rule, routing="all"), ("email", "push"), "NEW", rule.template.key, "k", NOW)
    body = courier_body(going_out(stored, going, NOW + timedelta(minutes=5)))["message"]
    assert body["template"] == "NEW" and body["data"] == {"a": 1}
    assert body["routing"] == {"method": "all", "channels": ["email", "push"]}
    assert body["expiry"] == {"expires_at": "2026-03-10T14:50:00Z", "expires_in": 15 * 60_000}
    assert stored["message"]["template"] == "OLD"  # the stored message is not changed
    assert courier_body(going_out(stored, Delivery(("email",)), NOW))["message"]["metadata"] == {"tags": []}


def test_expiry_is_due_plus_expires_after_and_the_deadline_itself_is_too_late(shipped_config: Config) -> None:
    rule = shipped_config.notifications["client_booking_reminder_30m"]
    assert rule.expires_after == timedelta(minutes=20)
    assert deadline(rule, NOW) == NOW + timedelta(minutes=20)
    assert not expired(rule, NOW, NOW + timedelta(minutes=19, seconds=59))
    assert expired(rule, NOW, NOW + timedelta(minutes=20))
    assert not expired(shipped_config.notifications["client_booking_reminder_24h"], NOW, NOW + timedelta(days=30))


def test_a_digest_item_without_an_integer_amount_skips_the_send_with_the_reason(shipped_config: Config) -> None:
    rule = shipped_config.notifications["practitioner_weekly_earnings_summary"]
    items: list[Any] = [{"payment": {"practitioner_amount": 1000, "currency": "usd"}},
                        {"payment": {"practitioner_amount": "20.00", "currency": "USD"}}]
    start = datetime(2026, 3, 2, tzinfo=UTC)
    send = digest_send(shipped_config, rule, DANA, items, start, start + timedelta(days=7), start + timedelta(days=7))
    assert send.status == "skipped"
    assert send.reason is not None and send.reason.startswith(
        "render failed: totals: item 1 has payment.practitioner_amount '20.00'"
    )
    good = digest_send(
        shipped_config, rule, DANA, items[:1], start, start + timedelta(days=7), start + timedelta(days=7)
    )
    assert good.data["totals"] == [{"currency": "USD", "amount": 1000, "count": 1}]  # a code in any case


def booking(eid: str, start: str, occurred: str) -> dict[str, Any]:
    maya = {"id": "usr_c_maya", "email": "maya@example.com", "name": "Maya Chen", "timezone": "America/New_York"}
    return {"id": eid, "type": "booking.confirmed", "occurred_at": occurred, "data": {
        "booking": {"id": f"bk_{eid}", "start_time": start, "end_time": start.replace("T15", "T16"),
                    "service": {"id": "svc_1", "name": "Breathwork"}, "meeting_url": "https://meet.example.com/1"},
        "client": maya, "practitioner": DANA}}


def test_preview_and_diff_name_the_expiry(shipped_config: Config) -> None:
    events = [(1, booking("e1", "2026-03-10T15:00:00Z", "2026-03-10T12:00:00Z"))]
    after = run(shipped_config, events, renderer=Renderer(environ={}))
    rows = {r.send.notification: r.as_json() for r in after.rows}
    assert rows["client_booking_reminder_30m"]["expires_at"] == "2026-03-10T14:50:00Z"
    assert rows["client_booking_reminder_30m"]["routing"] == "single"
    assert rows["client_booking_confirmation"]["expires_at"] is None

    rules = dict(shipped_config.notifications)
    rules["client_booking_reminder_30m"] = replace(
        rules["client_booking_reminder_30m"], expires_after=None, routing="all"
    )
    before = run(replace(shipped_config, notifications=rules), events, renderer=Renderer(environ={}))
    [change] = compare("events", [r.as_json() for r in before.rows], [r.as_json() for r in after.rows])
    assert (change.kind, change.notification) == ("changed", "client_booking_reminder_30m")
    assert change.details == ("routing all -> single", "expires_at None -> 2026-03-10T14:50:00Z")
