"""Snapshots of the Courier request body of every notification, built from its example event.

The notifications are those the shipped rules declare, read when the tests are collected: a new
rule gets its own test, and `pytest tests/test_snapshots.py --snapshot-update` writes its
snapshot. A change to a rule's data, template or audience shows up here as a snapshot diff in
the pull request; after an intended change, the same command updates it.
"""

from __future__ import annotations

from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from engine.core.decide import DigestItem, Renderer, Send, digest_send, plan
from engine.core.events import parse_event
from engine.delivery.message import courier_body, scheduled, scheduled_record
from engine.rules.loader import load
from engine.rules.model import Config
from engine.rules.problems import ConfigError
from tests.conftest import ROOT


def declared_notifications() -> list[str]:
    """The notification ids of the shipped rules, in the order the files declare them. A broken
    configuration declares none here; test_the_shipped_rules_load says why."""
    try:
        return list(load(str(ROOT / "notifications.yaml")).notifications)
    except ConfigError:
        return []


NOTIFICATIONS = declared_notifications()
COMMON = ("app_name", "frontend_url", "support_email", "user_name", "user_email")
RENDERER = Renderer(env="production", environ={})


@pytest.fixture
def snapshot_json(snapshot: Any) -> Any:
    return snapshot.use_extension(JSONSnapshotExtension)


def example_send(config: Config, notification_id: str) -> Send:
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


def test_the_shipped_rules_load(shipped_config: Config) -> None:
    assert list(shipped_config.notifications) == NOTIFICATIONS


def test_every_notification_has_an_example(shipped_config: Config) -> None:
    without = [n for n, rule in shipped_config.notifications.items() if rule.example is None]
    assert not without, f"add an `example:` event to {', '.join(without)}"


def test_estuary_ships_its_notifications_for_both_audiences(shipped_config: Config) -> None:
    # Estuary ships 26 (12 for clients, 14 for practitioners); a new rule only adds to them.
    client = [n for n in NOTIFICATIONS if n.startswith("client_")]
    practitioner = [n for n in NOTIFICATIONS if n.startswith("practitioner_")]
    assert len(client) >= 12 and len(practitioner) >= 14


@pytest.mark.parametrize("notification_id", NOTIFICATIONS)
def test_courier_body(notification_id: str, shipped_config: Config, snapshot_json: Any) -> None:
    send = example_send(shipped_config, notification_id)
    assert send.template is not None and send.template_key is not None, (
        f"map {notification_id}'s template in templates_map/"
    )
    body = courier_body(scheduled(scheduled_record(send.recipient, send.template, send.data, send.channels)))

    message = body["message"]
    assert set(message) >= {"to", "template", "data", "routing"}
    assert message["to"]["user_id"] == send.recipient_id
    assert message["to"]["email"] == send.recipient["email"]
    assert message["template"] == shipped_config.templates["production"][send.template_key]
    assert message["routing"] == {
        "method": "single",
        "channels": list(shipped_config.notifications[notification_id].channels),
    }
    for name in COMMON:
        assert name in message["data"], name
    assert message["data"]["app_name"] == "Estuary"
    assert message["data"]["user_email"] == send.recipient["email"]
    for name in shipped_config.notifications[notification_id].requires:
        assert name in message["data"], name

    assert body == snapshot_json
