"""Warnings across rules: legal configurations that are probably mistakes."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from engine.core.decide import Renderer, plan
from engine.lint import check_all, try_example
from engine.preview import run

BASE = Path(__file__).parent / "fixtures" / "bad_configs" / "_valid_base"

SECOND_RULE = """
  booking_reminder_again:
    trigger:
      event: booking.confirmed
    audience: client
    schedule:
      before: 23h30m
      of: booking.start_time
    channels: [email]
    category: {category}
    template: booking_reminder
    example:
      type: booking.confirmed
      occurred_at: "2026-03-01T10:00:00Z"
      data:
        booking: {{id: bk_1, start_time: "{start}"}}
        client: {{id: c_1, email: ada@example.com, name: Ada, timezone: Europe/Berlin}}
"""


def make(tmp_path: Path, *, extra: str = "", root_extra: str = "", events_edit: tuple[str, str] | None = None) -> Path:
    shutil.copytree(BASE, tmp_path / "cfg")
    cfg = tmp_path / "cfg"
    rules = cfg / "rules" / "booking.yaml"
    text = rules.read_text() + extra
    if events_edit:
        text = text.replace(*events_edit)
    rules.write_text(text)
    root = cfg / "notifications.yaml"
    root.write_text(root.read_text().replace("  if_past: send_now\n", "  if_past: send_now\n" + root_extra))
    return cfg


def warnings(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(cfg)
    config, problems = check_all("notifications.yaml")
    assert config is not None, problems
    assert not [p for p in problems if p.severity == "error"]
    return [f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems if p.severity == "warning"]


def test_the_base_has_no_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert warnings(make(tmp_path), monkeypatch) == []


def test_same_template_to_the_same_person_within_an_hour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make(tmp_path, extra=SECOND_RULE.format(category="reminders", start="2026-03-05T10:00:00Z"))
    assert warnings(cfg, monkeypatch) == [
        "rules/booking.yaml:61:3: booking_reminder_again: sends template 'booking_reminder' to the same client "
        "as booking_reminder within 1:00:00 of it",
    ]


def test_a_transactional_send_inside_quiet_hours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 23h30m before 01:00Z is 01:30Z, 02:30 in Berlin: inside quiet hours 22:00-07:00.
    extra = SECOND_RULE.format(category="transactional", start="2026-03-06T01:00:00Z").replace(
        "template: booking_reminder", "template: booking_reminder_urgent")
    cfg = make(tmp_path, extra=extra, root_extra='  quiet_hours: {from: "22:00", to: "07:00"}\n')
    (cfg / "templates_map" / "production.yaml").write_text(
        "booking_reminder: BOOKING_REMINDER_V1\nbooking_reminder_urgent: URGENT_V1\n"
    )
    assert warnings(cfg, monkeypatch) == [
        "rules/booking.yaml:61:3: booking_reminder_again: with its example event it goes out at 02:30 in the "
        "recipient's zone, inside quiet hours",
    ]


def test_quiet_hours_defer_sends_users_can_switch_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make(tmp_path, root_extra='  quiet_hours: {from: "22:00", to: "07:00"}\n')
    monkeypatch.chdir(cfg)
    config, _ = check_all("notifications.yaml")
    assert config is not None
    event = {"id": "e1", "type": "booking.confirmed", "occurred_at": "2026-03-01T10:00:00Z",
             "data": {"booking": {"id": "b1", "start_time": "2026-03-06T01:00:00Z"},
                      "client": {"id": "c1", "email": "c@example.com", "name": "C", "timezone": "Europe/Berlin"}}}
    rows = [r.as_json() for r in run(config, [(1, event)]).rows]
    # Due 2026-03-05T01:00Z (02:00 Berlin, quiet): waits for 07:00 Berlin, 06:00Z.
    assert [(r["notification"], r["send_at"], r["status"]) for r in rows] == [
        ("booking_reminder", "2026-03-05T06:00:00Z", "sent")
    ]


def test_a_cancel_key_that_can_never_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A common slip: matching on the whole booking instead of its id.
    cfg = make(tmp_path, events_edit=("        key: booking.id\n    channels", "        key: booking\n    channels"))
    assert warnings(cfg, monkeypatch) == [
        "rules/booking.yaml:36:3: booking_reminder: booking.cancelled key 'booking' can never equal "
        "booking.confirmed key 'booking.id': one of them is not a single value",
    ]


def _broken(config, **changes):
    """The configuration with every rule changed (a data field or condition that fails to render)."""
    return replace(
        config,
        notifications={
            rule_id: replace(rule, **{k: (v(rule) if callable(v) else v) for k, v in changes.items()})
            for rule_id, rule in config.notifications.items()
        },
    )


@pytest.mark.parametrize("change", [
    "none", "an id missing in staging", "ids missing in production", "a render that fails", "a condition that fails",
])
def test_the_examples_decide_as_planned_in_each_environment(shipped_config, change: str) -> None:
    # try_example plans in the first environment and only looks the template id up again in the
    # others: the decisions must be those of planning in each environment in full.
    config = shipped_config
    if change == "an id missing in staging":
        config = replace(
            config, templates={**config.templates, "staging": dict(list(config.templates["staging"].items())[::2])}
        )
    elif change == "ids missing in production":
        config = replace(config, templates={**config.templates, "production": {}})
    elif change == "a render that fails":
        config = _broken(config, data=lambda rule: {**rule.data, "broken": "{{ (notification | length) // 0 }}"})
    elif change == "a condition that fails":
        config = _broken(config, condition="(notification | length) // 0")
    envs = sorted(config.templates)
    assert len(envs) == 2
    for rule in config.notifications.values():
        tried = try_example(config, rule)
        assert tried.event is not None, rule.id
        assert tried.decisions == {
            env: plan(config, rule, tried.event, tried.event.occurred_at, Renderer(env=env, environ={})) for env in envs
        }, rule.id
