"""Behaviour scenarios: tests/scenarios/*.yaml, written as a product manager would.

A scenario file:

    description: What this scenario shows.
    people:                 # optional: persons to refer to with YAML anchors (&maya / *maya)
      maya: &maya {id: usr_c_maya, email: maya@example.com, name: Maya Chen, timezone: America/New_York}
    events:                 # event envelopes, in any order (they are processed by occurred_at)
      - id: evt_1
        type: booking.confirmed
        occurred_at: "2026-03-05T14:30:00Z"
        data: {...}
    until: "2026-03-10T00:00:00Z"    # optional: stop the clock here (later sends stay pending)
    preferences:                     # optional: recipient id -> {notification | category |
      usr_c_maya: {client_review_request: false}   #   notification:channel: false}
    expect:                 # EXACTLY these sends (order does not matter)
      - {notification: client_booking_confirmation, recipient: usr_c_maya,
         send_at: "2026-03-05T14:30:00Z", status: sent}
      - {notification: client_booking_reminder_24h, recipient: usr_c_maya,
         send_at: "2026-03-11T15:00:00Z", status: cancelled,
         reason: cancelled by booking.cancelled}
    expect_duplicates: [evt_1]       # optional: event ids ignored as duplicates (default: none)
    deploy:                 # optional: the rules change while sends are pending
      - at: "2026-03-08T00:00:00Z"
        pause: [client_booking_reminder_30m]      # as `enabled: false` in the rule file
        remove: [practitioner_session_reminder_30m]
        templates: {client_booking_reminder_24h: CLIENT_BOOKING_REMINDER_24H_V2}  # templates_map/ of the env
    direct:                 # optional: sends the application makes with the Python API (Runtime.schedule)
      - {at: "2026-03-05T15:00:00Z", notification: client_booking_reminder_24h, recipient: *maya,
         send_at: "2026-03-11T15:00:00Z", data: {...}}

`status` is sent, pending, cancelled or skipped; `reason` is required for cancelled and
skipped, and null otherwise. `send_at` may be written with any offset; it is compared in UTC.
An expected send may also give `template` (the Courier template id) and `data` (a subset of the
rendered template data) to check those too. Times must be quoted (the YAML dialect of the rule
files applies here too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.preview import Step, run
from engine.rules.model import Config
from engine.rules.timeparse import format_instant, parse_instant
from engine.rules.yaml_source import load_file

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
TOP_KEYS = {"description", "people", "events", "until", "preferences", "expect", "expect_duplicates", "deploy", "direct"}
EXPECT_KEYS = {"notification", "recipient", "send_at", "status", "reason", "template", "data"}
STATUSES = {"sent", "pending", "cancelled", "skipped"}
CORE = ("notification", "recipient", "send_at", "status", "reason")


class ScenarioError(Exception):
    """The scenario file itself is malformed."""


def load_scenario(path: Path) -> dict[str, Any]:
    doc, problems = load_file(str(path))
    if problems:
        raise ScenarioError("\n".join(f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems))
    data = doc.data
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ScenarioError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(TOP_KEYS)})")
    for key in ("description", "events", "expect"):
        if key not in data:
            raise ScenarioError(f"{path}: `{key}` is required")
    if not isinstance(data["events"], list) or not data["events"]:
        raise ScenarioError(f"{path}: `events` must be a non-empty list")
    expected = []
    for i, item in enumerate(data["expect"] or []):
        where = f"{path}: expect[{i}]"
        line = doc.mark(("expect", i)).line
        if not isinstance(item, dict):
            raise ScenarioError(f"{where} (line {line}): must be a mapping")
        if set(item) - EXPECT_KEYS or not {"notification", "recipient", "send_at", "status"} <= set(item):
            raise ScenarioError(f"{where} (line {line}): needs notification, recipient, send_at, status "
                                f"(and may have reason, template, data); got {sorted(item)}")
        if item["status"] not in STATUSES:
            raise ScenarioError(f"{where} (line {line}): status must be one of {sorted(STATUSES)}")
        if item["status"] in ("cancelled", "skipped") and not item.get("reason"):
            raise ScenarioError(f"{where} (line {line}): a {item['status']} send needs its `reason`")
        try:
            send_at = format_instant(parse_instant(item["send_at"]))
        except ValueError as exc:
            raise ScenarioError(f"{where} (line {line}): send_at: {exc}") from None
        expected.append({**item, "send_at": send_at, "reason": item.get("reason"), "line": line})
    data["expect"] = expected
    return data


def deployed(config: Config, change: dict[str, Any], env: str) -> Config:
    """The rules after a deploy: rules paused or removed, template ids of the env changed."""
    rules = dict(config.notifications)
    for rule_id in change.get("pause") or []:
        rules[rule_id] = replace(rules[rule_id], enabled=False)
    for rule_id in change.get("remove") or []:
        del rules[rule_id]
    templates = {name: dict(mapping) for name, mapping in config.templates.items()}
    templates[env].update(change.get("templates") or {})
    return replace(config, notifications=rules, templates=templates)


def steps(scenario: dict[str, Any]) -> list[Step]:
    """The scenario's deploys and Python API calls, each at its time."""
    out: list[Step] = []
    for change in scenario.get("deploy") or []:
        out.append((parse_instant(change["at"]),
                    lambda rt, _at, c=change: setattr(rt, "config", deployed(rt.config, c, rt.settings.env))))
    for call in scenario.get("direct") or []:
        out.append((parse_instant(call["at"]), lambda rt, at, c=call: rt.schedule(
            c["notification"], c["recipient"], parse_instant(c["send_at"]), c.get("data"), now=at)))
    return out


def preferences_of(scenario: dict[str, Any]) -> dict[str, dict[str, bool]]:
    return {str(k): {str(n): bool(v) for n, v in (v or {}).items()} for k, v in (scenario.get("preferences") or {}).items()}


def _core(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in CORE)


def _matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    if _core(expected) != _core(actual):
        return False
    if "template" in expected and expected["template"] != actual["template"]:
        return False
    for name, value in (expected.get("data") or {}).items():
        if name not in actual["data"] or actual["data"][name] != value:
            return False
    return True


def _line(row: dict[str, Any]) -> str:
    reason = f"  ({row['reason']})" if row.get("reason") else ""
    extra = ""
    if "line" in row and "template" in row:  # an expected send that names its template
        extra += f"  template={row['template']}"
    if "line" in row and row.get("data"):
        extra += f"  data⊇{row['data']}"
    where = f"  [scenario line {row['line']}]" if "line" in row else ""
    return (f"{row['send_at']}  {row['notification']:<42} {row['recipient']:<14} "
            f"{row['status']:<9}{reason}{extra}{where}")


def compare(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> tuple[list, list]:
    """(expected but not produced, produced but not expected); an exact multiset comparison."""
    unmatched = list(actual)
    missing = []
    # Entries that also check template/data first, so a plain entry does not take their row.
    for item in sorted(expected, key=lambda e: not ("template" in e or e.get("data"))):
        for i, row in enumerate(unmatched):
            if _matches(item, row):
                del unmatched[i]
                break
        else:
            missing.append(item)
    return missing, unmatched


def report(path: Path, scenario: dict[str, Any], actual: list[dict[str, Any]], missing: list, unexpected: list,
           duplicates: tuple[list, list] | None) -> str:
    out = [f"scenario {path.name}: {scenario['description'].strip()}"]
    if missing:
        out.append("  expected, but the rules did not produce:")
        for m in sorted(missing, key=lambda m: (m["send_at"], m["notification"])):
            out.append(f"    - {_line(m)}")
            for row in actual:  # same send, different template or data: show what it has
                if _core(row) == _core(m) and ("template" in m or m.get("data")):
                    got = {k: row["data"].get(k, "<absent>") for k in (m.get("data") or {})}
                    out.append(f"        the send has: template={row['template']}  data: {got}")
    if unexpected:
        out.append("  produced, but not expected:")
        out += [f"    + {_line(u)}" for u in unexpected]
    if duplicates:
        out.append(f"  duplicate event ids: expected {duplicates[0]}, got {duplicates[1]}")
    out.append("  everything the preview produced (send_at order):")
    out += [f"      {_line(r)}" for r in actual]
    return "\n".join(out)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, shipped_config) -> None:
    scenario = load_scenario(path)
    until = parse_instant(scenario["until"]) if scenario.get("until") else None
    result = run(shipped_config, list(enumerate(scenario["events"], 1)), until, preferences=preferences_of(scenario),
                 steps=steps(scenario))
    if result.rejected:
        pytest.fail(f"scenario {path.name}: events refused:\n" + "\n".join(
            f"  event #{r.line}: {p}: {m}" for r in result.rejected for p, m in r.problems), pytrace=False)
    actual = [row.as_json() for row in result.rows]
    missing, unexpected = compare(scenario["expect"], actual)
    want_dups = list(scenario.get("expect_duplicates") or [])
    dups = None if sorted(want_dups) == sorted(result.duplicates) else (want_dups, result.duplicates)
    if missing or unexpected or dups:
        pytest.fail(report(path, scenario, actual, missing, unexpected, dups), pytrace=False)


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 20


def test_scenario_files_are_well_formed() -> None:
    for path in SCENARIOS:
        load_scenario(path)  # raises ScenarioError with the file and line


def test_a_wrong_expectation_fails_with_a_readable_diff(shipped_config, tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text("""
description: The reminder is expected an hour early.
people:
  maya: &maya {id: usr_c_maya, email: maya@example.com, name: Maya Chen, timezone: America/New_York}
  jonas: &jonas {id: usr_p_jonas, email: jonas@example.com, name: Jonas Weber, timezone: Europe/Berlin}
events:
  - id: evt_1
    type: booking.confirmed
    occurred_at: "2026-03-05T14:30:00Z"
    data:
      booking: {id: bk_1, start_time: "2026-03-12T11:00:00-04:00", end_time: "2026-03-12T12:00:00-04:00",
                service: {id: svc_1, name: Breathwork}}
      client: *maya
      practitioner: *jonas
expect:
  - {notification: client_booking_confirmation, recipient: usr_c_maya, send_at: "2026-03-05T14:30:00Z", status: sent}
  - {notification: client_booking_reminder_24h, recipient: usr_c_maya, send_at: "2026-03-11T14:00:00Z", status: sent}
""")
    scenario = load_scenario(path)
    result = run(shipped_config, list(enumerate(scenario["events"], 1)))
    actual = [row.as_json() for row in result.rows]
    missing, unexpected = compare(scenario["expect"], actual)
    text = report(path, scenario, actual, missing, unexpected, None)
    assert [m["send_at"] for m in missing] == ["2026-03-11T14:00:00Z"]
    assert "expected, but the rules did not produce:" in text
    assert "- 2026-03-11T14:00:00Z  client_booking_reminder_24h" in text
    assert "+ 2026-03-11T15:00:00Z  client_booking_reminder_24h" in text
    assert "[scenario line 17]" in text
    assert len(unexpected) == 5  # the right 24 h reminder, the 30 min one and three more


def test_a_malformed_scenario_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('description: x\nevents: [{id: e}]\nexpect:\n  - {notification: a, recipient: b, send_at: "2026-03-01T00:00:00Z", status: skipped}\n')
    with pytest.raises(ScenarioError, match=r"expect\[0\] \(line 4\): a skipped send needs its `reason`"):
        load_scenario(path)
