"""The rules in force when a send falls due decide it: a paused or removed notification sends
nothing more, and Courier gets the template id mapped at that moment (the real SDK, the stand-in)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from engine.delivery import CourierBackend
from tests.support.courier_standin import CourierStandin

from .conftest import COURIER_TOKEN
from .support import NOW, booking_confirmed, payment_succeeded


@pytest.fixture
def rt(db_url: str, make_runtime: Any, standin: CourierStandin) -> Any:
    return make_runtime(db_url, backend=CourierBackend(COURIER_TOKEN, standin.url, timeout=2))


def deploy(
    rt: Any, *, pause: tuple[str, ...] = (), remove: tuple[str, ...] = (), templates: dict[str, str] | None = None
) -> None:
    rules = dict(rt.config.notifications)
    for name in pause:
        rules[name] = replace(rules[name], enabled=False)
    for name in remove:
        del rules[name]
    mapped = {env: dict(m) for env, m in rt.config.templates.items()}
    mapped[rt.settings.env].update(templates or {})
    rt.config = replace(rt.config, notifications=rules, templates=mapped)


def test_pending_sends_follow_a_deploy(rt: Any, standin: CourierStandin) -> None:
    start = NOW + timedelta(days=3)
    rt.emit(booking_confirmed("evt_1", "bk_1", start, NOW), now=NOW)
    rt.sweep(NOW)
    deploy(rt, pause=("client_booking_reminder_30m",), remove=("practitioner_session_reminder_30m",),
           templates={"client_booking_reminder_24h": "CLIENT_BOOKING_REMINDER_24H_V2"})
    rt.sweep(start)
    by_name = {r["notification"]: r for r in rt.store.notifications(limit=50)}
    assert (by_name["client_booking_reminder_30m"]["status"], by_name["client_booking_reminder_30m"]["reason"]) == (
        "skipped",
        "paused",
    )
    assert (
        by_name["practitioner_session_reminder_30m"]["status"],
        by_name["practitioner_session_reminder_30m"]["reason"],
    ) == ("skipped", "removed")
    templates = {r["body"]["message"]["template"] for r in standin.requests}
    assert "CLIENT_BOOKING_REMINDER_24H_V2" in templates and "CLIENT_BOOKING_REMINDER_24H_V1" not in templates
    assert not {"CLIENT_BOOKING_REMINDER_30M_V1", "PRACTITIONER_SESSION_REMINDER_30M_V1"} & templates
    assert (
        by_name["client_booking_reminder_24h"]["template"] == "CLIENT_BOOKING_REMINDER_24H_V2"
    )  # the row says what went out


def test_a_template_key_no_longer_mapped_is_skipped_with_the_reason(rt: Any, standin: CourierStandin) -> None:
    start = NOW + timedelta(days=3)
    rt.emit(booking_confirmed("evt_1", "bk_1", start, NOW), now=NOW)
    mapped = {
        env: {k: v for k, v in m.items() if k != "client_booking_reminder_24h"}
        for env, m in rt.config.templates.items()
    }
    rt.config = replace(rt.config, templates=mapped)
    rt.sweep(start - timedelta(hours=24))
    [row] = rt.store.notifications(notification="client_booking_reminder_24h")
    assert row["status"] == "skipped" and "no Courier template id for 'client_booking_reminder_24h'" in row["reason"]


def test_a_resumed_notification_sends_its_pending_sends(rt: Any, standin: CourierStandin) -> None:
    start = NOW + timedelta(days=3)
    rt.emit(booking_confirmed("evt_1", "bk_1", start, NOW), now=NOW)
    original = rt.config
    deploy(rt, pause=("client_booking_reminder_24h",))
    rt.config = original  # resumed before the reminder fell due
    rt.sweep(start - timedelta(hours=24))
    [row] = rt.store.notifications(notification="client_booking_reminder_24h")
    assert row["status"] == "sent"


def test_a_digest_whose_rule_was_removed_is_closed_without_a_send(rt: Any, standin: CourierStandin) -> None:
    rt.emit(payment_succeeded("evt_1", "pay_1", NOW), now=NOW)
    [digest] = rt.store.due_digests(NOW + timedelta(days=8))
    deploy(rt, remove=("practitioner_weekly_earnings_summary",))
    rt.sweep(digest["send_at"])
    assert rt.store.due_digests(NOW + timedelta(days=8)) == []  # not handed to every sweep again
    assert rt.store.notifications(notification="practitioner_weekly_earnings_summary") == []
