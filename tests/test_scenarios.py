"""Behaviour scenarios: every tests/scenarios/*.yaml runs through the shipped rules.

The format is documented in docs/scenarios.md; the runner is the engine.scenarios package, the
same one `engine test` uses. This module only makes each file a test, and checks the runner's own promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.rules.model import Config
from engine.scenarios import ScenarioError, compare, load_scenario, report, run_scenario

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.yaml"))
BOOKING = """
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
"""


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path, shipped_config: Config) -> None:
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        pytest.fail(str(exc), pytrace=False)
    outcome = run_scenario(shipped_config, scenario)
    if not outcome.passed:
        pytest.fail(report(outcome), pytrace=False)


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 20


def test_a_wrong_expectation_fails_with_a_readable_diff(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "description: The reminder is expected an hour early.\nmatch: all\n" + BOOKING + """
expect:
  - {notification: client_booking_confirmation, recipient: usr_c_maya, send_at: "2026-03-05T14:30:00Z", status: sent}
  - {notification: client_booking_reminder_24h, recipient: usr_c_maya, send_at: "2026-03-11T14:00:00Z", status: sent}
""")
    outcome = run_scenario(shipped_config, load_scenario(path))
    text = report(outcome)
    assert not outcome.passed
    assert [m["send_at"] for m in outcome.missing] == ["2026-03-11T14:00:00Z"]
    assert text.startswith("FAIL  scenario: The reminder is expected an hour early\n")
    assert "expected, but the rules did not produce:" in text
    assert "- 2026-03-11T14:00:00Z  client_booking_reminder_24h" in text
    assert "the rules produced: 2026-03-11T15:00:00Z sent" in text
    assert "+ 2026-03-11T15:00:00Z  client_booking_reminder_24h" in text
    assert "[scenario line 19]" in text
    assert len(outcome.unexpected) == 5  # the right 24 h reminder, the 30 min one and three more
    assert ('  - {notification: client_booking_reminder_24h, recipient: usr_c_maya, '
            'send_at: "2026-03-11T15:00:00Z", status: sent}') in text.splitlines()


def test_match_only_checks_the_notifications_named(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "description: Only the client's 24 h reminder is checked.\n" + BOOKING + """
expect:
  - {notification: client_booking_reminder_24h, recipient: usr_c_maya, send_at: "2026-03-11T15:00:00Z", status: sent}
""")
    scenario = load_scenario(path)
    assert scenario["match"] == "only"
    outcome = run_scenario(shipped_config, scenario)
    assert outcome.passed, report(outcome)
    assert len(outcome.produced) == 6
    assert report(outcome) == "PASS  scenario: Only the client's 24 h reminder is checked"


def test_match_only_still_finds_an_extra_send_of_a_named_notification(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "description: The confirmation is named, the reminders are not.\n" + BOOKING + """
expect:
  - {notification: client_booking_reminder_24h, recipient: usr_c_maya, send_at: "2026-03-11T15:00:00Z", status: sent}
  - {notification: client_booking_reminder_30m, recipient: usr_c_lukas, send_at: "2026-03-12T14:30:00Z", status: sent}
""")
    outcome = run_scenario(shipped_config, load_scenario(path))
    assert [m["recipient"] for m in outcome.missing] == ["usr_c_lukas"]
    assert [(u["notification"], u["recipient"]) for u in outcome.unexpected] == [
        ("client_booking_reminder_30m", "usr_c_maya")]
    assert "· 2026-03-05T14:30:00Z  client_booking_confirmation" in report(outcome)


def test_reason_is_checked_only_when_given() -> None:
    row: dict[str, Any] = {"notification": "n", "recipient": "r", "send_at": "2026-03-01T00:00:00Z",
                           "status": "cancelled", "reason": "cancelled by booking.cancelled", "template": "N_V1",
                           "data": {"a": 1}}
    loose: Any = {"notification": "n", "recipient": "r", "send_at": "2026-03-01T00:00:00Z", "status": "cancelled",
                  "line": 3}
    assert compare([loose], [row]) == ([], [])
    wrong: Any = {**loose, "reason": "cancelled by review.created"}
    assert compare([wrong], [row]) == ([wrong], [row])
    strict: Any = {**loose, "reason": row["reason"], "data": {"a": 1}}
    assert compare([strict], [row]) == ([], [])


def test_channels_routing_and_expiry_are_checked_only_when_given() -> None:
    row: dict[str, Any] = {"notification": "n", "recipient": "r", "send_at": "2026-03-01T00:00:00Z", "status": "sent",
                           "reason": None, "template": "N_V1", "data": {}, "channels": ["email", "inbox"],
                           "routing": "all", "expires_at": None}
    loose: Any = {"notification": "n", "recipient": "r", "send_at": "2026-03-01T00:00:00Z", "status": "sent", "line": 3}
    assert compare([loose], [row]) == ([], [])
    strict: Any = {**loose, "channels": ["email", "inbox"], "routing": "all", "expires_at": None}
    assert compare([strict], [row]) == ([], [])
    differences: list[dict[str, Any]] = [{"channels": ["inbox"]}, {"channels": ["inbox", "email"]},
                                         {"routing": "single"}, {"expires_at": "2026-03-01T00:20:00Z"}]
    for difference in differences:
        wrong: Any = {**strict, **difference}
        assert compare([wrong], [row]) == ([wrong], [row]), difference


def test_a_wrong_channel_expectation_shows_the_channels_sent(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "description: The confirmation is expected by email alone.\n" + BOOKING + """
expect:
  - {notification: client_booking_confirmation, recipient: usr_c_maya, send_at: "2026-03-05T09:30:00-05:00",
     status: sent, channels: [email], routing: single}
  - {notification: client_booking_reminder_30m, recipient: usr_c_maya, send_at: "2026-03-12T14:30:00Z", status: sent,
     expires_at: "2026-03-12T10:50:00-04:00"}
""")
    scenario = load_scenario(path)
    assert scenario["expect"][1]["expires_at"] == "2026-03-12T14:50:00Z"  # compared in UTC, as send_at
    outcome = run_scenario(shipped_config, scenario)
    assert [m["notification"] for m in outcome.missing] == ["client_booking_confirmation"]
    lines = report(outcome).splitlines()
    assert any(line.strip().startswith("- 2026-03-05T14:30:00Z  client_booking_confirmation")
               and "channels=[email]  routing=single  [scenario line 17]" in line for line in lines), lines
    assert ("        the rules produced: 2026-03-05T14:30:00Z sent  channels=[email, inbox]  routing=all"
            in lines), lines


def test_malformed_channels_routing_and_expiry_are_refused(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, """description: x
events: [{id: e}]
expect:
  - {notification: a, recipient: b, send_at: "2026-03-01T00:00:00Z", status: sent, channels: email}
  - {notification: a, recipient: b, send_at: "2026-03-01T00:00:00Z", status: sent, routing: both}
  - {notification: a, recipient: b, send_at: "2026-03-01T00:00:00Z", status: sent, expires_at: soon}
  - {notification: a, recipient: b, send_at: "2026-03-01T00:00:00Z", status: sent, chanels: [email]}
""")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert [line.split(": ", 1)[1] for line in str(caught.value).splitlines()] == [
        "expect[0]: channels must be a list of channel names, such as [email, inbox]",
        "expect[1]: routing must be one of single, all; got 'both'",
        "expect[2]: expires_at: 'soon' is not an RFC 3339 date-time with an offset (e.g. 2026-03-01T10:00:00Z)",
        "expect[3]: unknown key `chanels` (did you mean `channels`? allowed: notification, recipient, send_at, status, "
        "reason, template, channels, routing, expires_at, data)",
    ]


def test_a_channel_the_rule_does_not_declare_is_reported(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "description: A typo in a channel.\n" + BOOKING + """
expect:
  - {notification: client_booking_confirmation, recipient: usr_c_maya, send_at: "2026-03-05T14:30:00Z", status: sent,
     channels: [email, in_app]}
""")
    outcome = run_scenario(shipped_config, load_scenario(path))
    assert [f"{p.line}: {p.message}" for p in outcome.problems] == [
        "17: expect[0]: channels: `in_app` is not a channel of client_booking_confirmation (it has: email, inbox)"]


def test_a_loose_expectation_does_not_take_the_send_a_strict_one_needs() -> None:
    base: dict[str, Any] = {"notification": "n", "recipient": "r", "send_at": "2026-03-01T00:00:00Z",
                            "status": "skipped", "template": "T"}
    rows = [{**base, "reason": "opted_out", "data": {}}, {**base, "reason": "paused", "data": {}}]
    loose: Any = {**base, "line": 1}
    strict: Any = {**base, "reason": "opted_out", "line": 2}
    assert compare([loose, strict], rows) == ([], [])


def test_a_malformed_scenario_names_every_mistake_with_its_line(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, """description: x
mach: all
events: [{id: e}]
until: "2026-03-01"
expect:
  - {notification: a, recipient: b, send_at: "2026-03-01T00:00:00Z", status: skiped}
  - {notification: a, recipient: b, status: sent, resaon: x}
""")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).splitlines() == [
        f"{path}:2:1: scenario: unknown key `mach` (did you mean `match`? allowed: description, match, people, "
        "preferences, events, direct, deploy, until, expect, expect_duplicates)",
        f"{path}:4:8: until: '2026-03-01' is not an RFC 3339 date-time with an offset (e.g. 2026-03-01T10:00:00Z)",
        f"{path}:6:78: expect[0]: status must be one of sent, pending, cancelled, skipped; got 'skiped'",
        f"{path}:7:5: expect[1]: needs `send_at`",
        f"{path}:7:51: expect[1]: unknown key `resaon` (did you mean `reason`? allowed: notification, recipient, "
        "send_at, status, reason, template, channels, routing, expires_at, data)",
    ]


def test_preferences_that_are_not_opt_outs_are_named_with_the_recipient(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, """description: Preferences written wrong.
preferences:
  usr_c_maya: false
  usr_c_amara: {client_review_request: "no"}
  usr_c_noah:
events: [{id: e}]
match: all
expect: []
""")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).splitlines() == [
        f"{path}:3:15: preferences of usr_c_maya must be a mapping {{notification, category or "
        "notification:channel: true or false}; got False",
        f"{path}:4:40: preferences of usr_c_amara: client_review_request must be true or false; got 'no'",
    ]


def test_names_the_rules_do_not_declare_are_reported_where_written(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, "description: A typo.\npreferences:\n  usr_c_maya: {client_reveiw_request: false}\n"
                         + BOOKING + """
expect:
  - {notification: client_booking_reminder_42h, recipient: usr_c_maya, send_at: "2026-03-11T15:00:00Z", status: sent}
""")
    outcome = run_scenario(shipped_config, load_scenario(path))
    assert [f"{p.line}: {p.message}" for p in outcome.problems] == [
        "19: expect[0]: no notification `client_booking_reminder_42h` in the rules "
        "(did you mean client_booking_reminder_24h?)",
        "3: preferences of usr_c_maya: `client_reveiw_request` is neither a notification, a category, "
        "nor notification:channel",
    ]
    assert report(outcome).startswith("ERROR scenario: A typo\n")


def test_an_event_its_schema_refuses_is_reported_at_its_line(shipped_config: Config, tmp_path: Path) -> None:
    path = scenario_file(tmp_path, """description: An incomplete event.
events:
  - {id: e1, type: session.completed, occurred_at: "2026-03-10T15:00:00Z", data: {}}
expect:
  - {notification: client_review_request, recipient: usr_c_maya, send_at: "2026-03-10T17:00:00Z", status: sent}
""")
    outcome = run_scenario(shipped_config, load_scenario(path))
    assert outcome.problems and all(p.line == 3 for p in outcome.problems)
    assert "events[0]: $.data" in outcome.problems[0].message


def engine_test(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["test", *args])
    return code, capsys.readouterr().out


def test_engine_test_runs_the_scenarios_beside_the_configuration(repo_root: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the default folder is found from --config, not from here
    code, out = engine_test(capsys, "--config", str(repo_root / "notifications.yaml"))
    assert code == 0, out
    assert out.splitlines()[-1] == f"{len(SCENARIOS)} passed"
    assert "PASS  review_request_daytime_window: The review request goes out 2 hours after the session" in out


def test_engine_test_exit_codes(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(repo_root)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("description: An hour early.\n" + BOOKING + """
expect:
  - {notification: client_booking_reminder_24h, recipient: usr_c_maya, send_at: "2026-03-11T14:00:00Z", status: sent}
""", encoding="utf-8")
    malformed = tmp_path / "malformed.yaml"
    malformed.write_text("description: x\nevents: []\n", encoding="utf-8")
    right = SCENARIOS[0]

    assert engine_test(capsys, str(right))[0] == 0
    code, out = engine_test(capsys, str(right), str(wrong))
    assert code == 1
    assert "FAIL  wrong: An hour early" in out and out.splitlines()[-1] == "1 passed, 1 failed"
    code, out = engine_test(capsys, str(wrong), str(malformed))
    assert code == 2
    assert f"{malformed}:1:1: a scenario: needs `expect`" in out
    assert out.splitlines()[-1] == "0 passed, 1 failed, 1 malformed"
    assert engine_test(capsys, str(tmp_path / "absent.yaml"))[0] == 2
    assert engine_test(capsys, str(tmp_path / "empty"))[0] == 2
