"""`engine preview` on examples.jsonl: two weeks of Estuary across the US DST change (2026-03-08)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli

FIELDS = {"notification", "recipient", "channels", "template", "send_at", "status", "reason", "idempotency_key", "data"}


def preview(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str, input: str | None = None, env: dict | None = None):
    monkeypatch.chdir(cwd)
    for name in [n for n in os.environ if n.startswith("COURIER_") and n.endswith("_TEMPLATE")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("ENGINE_ENV", raising=False)
    result = CliRunner().invoke(cli, ["preview", *args], input=input, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def rows(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def key(row: dict) -> tuple[str, str, str, str]:
    return (row["send_at"], row["notification"], row["recipient"], row["status"])


@pytest.fixture(scope="module")
def examples(repo_root: Path) -> Path:
    return repo_root / "examples.jsonl"


@pytest.fixture(scope="module")
def json_rows(repo_root, examples) -> list[dict]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return rows(result)


def test_examples_is_a_realistic_fortnight(examples: Path) -> None:
    events = [json.loads(line) for line in examples.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert 30 <= len(events) <= 60
    assert len({e["id"] for e in events}) == len(events)
    types = {e["type"] for e in events}
    assert {"booking.confirmed", "booking.rescheduled", "booking.cancelled", "payment.succeeded", "message.sent",
            "user.registered", "service.created", "practitioner.profile_completed", "session.completed"} <= types
    times = [e["occurred_at"] for e in events]
    assert times != sorted(times)  # the preview orders them itself


def test_json_rows_have_the_documented_fields(json_rows: list[dict]) -> None:
    assert json_rows
    for row in json_rows:
        assert set(row) >= FIELDS
        assert row["send_at"].endswith("Z")
        assert row["status"] in {"sent", "cancelled", "skipped"}  # without --until nothing stays pending
        assert (row["reason"] is None) == (row["status"] == "sent")


def test_ordering_contract(json_rows: list[dict]) -> None:
    order = [(r["send_at"], r["notification"], r["recipient"]) for r in json_rows]
    assert order == sorted(order)


def test_reminders_are_exactly_24_hours_and_30_minutes_before(json_rows: list[dict]) -> None:
    found = {key(r) for r in json_rows}
    # bk_1001 starts Monday 2026-03-09 10:00 EDT (14:00Z), the day after the US change
    assert ("2026-03-08T14:00:00Z", "client_booking_reminder_24h", "usr_c_maya", "sent") in found
    assert ("2026-03-08T14:00:00Z", "practitioner_session_reminder_24h", "usr_p_dana", "sent") in found
    assert ("2026-03-09T13:30:00Z", "client_booking_reminder_30m", "usr_c_maya", "sent") in found
    assert ("2026-03-09T13:30:00Z", "practitioner_session_reminder_30m", "usr_p_dana", "sent") in found
    # bk_1002 moved from 2026-03-06 16:00Z to 2026-03-07 10:00Z
    assert ("2026-03-05T16:00:00Z", "client_booking_reminder_24h", "usr_c_lukas", "cancelled") in found
    assert ("2026-03-06T10:00:00Z", "client_booking_reminder_24h", "usr_c_lukas", "sent") in found
    assert ("2026-03-07T09:30:00Z", "practitioner_session_reminder_30m", "usr_p_jonas", "sent") in found
    # bk_1003 cancelled after its 24 h reminder went out
    assert ("2026-03-11T15:00:00Z", "client_booking_reminder_24h", "usr_c_amara", "sent") in found
    assert ("2026-03-12T14:30:00Z", "client_booking_reminder_30m", "usr_c_amara", "cancelled") in found
    # bk_1004 booked 15 minutes before it starts
    assert ("2026-03-05T23:30:00Z", "client_booking_reminder_30m", "usr_c_maya", "skipped") in found


def test_an_exact_json_line(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "json")
    lines = [line for line in result.stdout.splitlines()
             if '"client_booking_reminder_24h"' in line and '"usr_c_maya"' in line and "bk_1001" in line]
    assert lines == [
        '{"notification": "client_booking_reminder_24h", "recipient": "usr_c_maya", "channels": ["email"], '
        '"template": "CLIENT_BOOKING_REMINDER_24H_V1", "send_at": "2026-03-08T14:00:00Z", "status": "sent", '
        '"reason": null, "idempotency_key": "client_booking_reminder_24h:bk_1001:2026-03-09T10:00:00-04:00", '
        '"data": {"app_name": "Estuary", "frontend_url": "https://estuary.app", '
        '"support_email": "support@estuary.app", '
        '"user_name": "Maya Chen", "user_email": "maya.chen@example.com", "booking_id": "bk_1001", '
        '"service_name": "Breathwork for Stress Relief", "practitioner_name": "Dana Brooks", '
        '"start_time": "Monday 09 March 2026, 10:00", "location": null, "meeting_url": '
        '"https://meet.estuary.app/bk_1001"}, '
        '"template_key": "client_booking_reminder_24h", "variant": null, "category": "reminders", "key": "bk_1001", '
        '"event": "evt_0011", '
        '"routing": "single", "expires_at": null}'
    ]


def test_weekly_summaries_across_the_us_change(json_rows: list[dict]) -> None:
    summaries = {(r["recipient"], r["send_at"]): r["data"] for r in json_rows
                 if r["notification"] == "practitioner_weekly_earnings_summary"}
    def total(recipient: str, send_at: str) -> int:
        [only] = summaries[(recipient, send_at)]["totals"]  # one currency a week in these events
        return int(only["amount"])

    assert total("usr_p_dana", "2026-03-02T14:00:00Z") == 5100  # Monday 09:00 EST
    dst_week = summaries[("usr_p_dana", "2026-03-09T13:00:00Z")]  # Monday 09:00 EDT
    assert (total("usr_p_dana", "2026-03-09T13:00:00Z"), dst_week["count"], dst_week["total_formatted"]) == (
        14025,
        2,
        "$140.25",
    )
    assert total("usr_p_dana", "2026-03-16T13:00:00Z") == 3400  # paid Monday 08:30 local
    assert total("usr_p_jonas", "2026-03-02T08:00:00Z") == 6800
    assert total("usr_p_jonas", "2026-03-09T08:00:00Z") == 7650
    assert len(summaries) == 5


def test_templates_follow_the_verification_outcome(json_rows: list[dict]) -> None:
    got = {r["recipient"]: r["template"] for r in json_rows if r["notification"] == "practitioner_verification_status"}
    assert got == {
        "usr_p_dana": "PRACTITIONER_VERIFICATION_APPROVED_V1",
        "usr_p_sofia": "PRACTITIONER_VERIFICATION_REJECTED_V1",
    }


def test_stdin(monkeypatch, repo_root, examples, json_rows) -> None:
    result = preview(
        monkeypatch, repo_root, "--events", "-", "--format", "json", input=examples.read_text(encoding="utf-8")
    )
    assert result.exit_code == 0
    assert rows(result) == json_rows


def test_until_leaves_later_sends_pending(monkeypatch, repo_root, json_rows) -> None:
    until = "2026-03-08T00:00:00Z"
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "json", "--until", until)
    assert result.exit_code == 0
    got = rows(result)
    for row in got:
        if row["status"] == "sent":
            assert row["send_at"] <= until
        if row["status"] == "pending":
            assert row["send_at"] > until and row["reason"] is None
    found = {key(r) for r in got}
    assert ("2026-03-08T14:00:00Z", "client_booking_reminder_24h", "usr_c_maya", "pending") in found
    # the cancellation of bk_1003 happens after the stop: its reminders are still pending
    assert ("2026-03-12T14:30:00Z", "client_booking_reminder_30m", "usr_c_amara", "pending") in found
    # a digest still collecting when the clock stops is pending too
    assert ("2026-03-09T13:00:00Z", "practitioner_weekly_earnings_summary", "usr_p_dana", "pending") in found
    # everything due before the stop is as in the full run
    before = [key(r) for r in json_rows if r["send_at"] <= until and r["status"] != "cancelled"]
    assert before == [key(r) for r in got if r["send_at"] <= until and r["status"] != "cancelled"]
    order = [(r["send_at"], r["notification"], r["recipient"]) for r in got]
    assert order == sorted(order)


def test_table_format(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "What the rules send" in lines[0]
    header = next(line for line in lines if "send_at (UTC)" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "send_at (UTC)",
        "notification",
        "recipient",
        "template",
        "status",
        "reason",
    ]

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("│").split("│")]

    body = [cells(line) for line in lines if line.startswith("│")]
    assert [
        "2026-03-08T14:00:00Z",
        "client_booking_reminder_24h",
        "usr_c_maya",
        "CLIENT_BOOKING_REMINDER_24H_V1",
        "sent",
        "",
    ] in body
    assert [
        "2026-03-04T15:20:00Z",
        "practitioner_new_message",
        "usr_p_dana",
        "PRACTITIONER_NEW_MESSAGE_V1",
        "sent",
        "",
    ] in body
    assert [
        "2026-03-05T10:00:00Z",
        "practitioner_profile_completion_reminder",
        "usr_p_sofia",
        "PRACTITIONER_PROFILE_COMPLETION_REMINDER_V1",
        "cancelled",
        "cancelled by practitioner.profile_completed",
    ] in body
    assert [b[0] for b in body] == sorted(b[0] for b in body)


def test_table_with_until_title(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--until", "2026-03-08T00:00:00Z",
                     env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert "What the rules send (until 2026-03-08T00:00:00Z)" in result.stdout
    assert "pending" in result.stdout


def test_table_in_a_chosen_zone(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--tz", "Asia/Tokyo",
                     env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert "send_at (Asia/Tokyo)" in result.stdout
    assert "2026-03-08T23:00:00+09:00" in result.stdout  # Maya's 24 h reminder, 14:00Z
    assert "14:00:00Z" not in result.stdout


def test_the_html_page_carries_the_zone_and_the_names_the_events_gave(monkeypatch, repo_root, tmp_path) -> None:
    page = tmp_path / "p.html"
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "html", "-o", str(page),
                     "--tz", "Asia/Tokyo")
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    assert 'const CHOSEN_TZ = "Asia/Tokyo";' in text
    people = json.loads(text.split('<script type="application/json" id="people">')[1].split("</script>")[0])
    assert people["usr_c_maya"] == {"name": "Maya Chen", "timezone": "America/New_York"}
    assert "<script src" not in text and "<link" not in text and "http-equiv" not in text  # nothing fetched
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "html", "-o", str(page),
                     "--tz", "Mars/Olympus")
    assert result.exit_code == 2 and "'Mars/Olympus' is not an IANA time zone" in result.output


def test_staging_templates_and_an_environment_override(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "json", "--env", "staging",
                     env={"COURIER_CLIENT_WELCOME_TEMPLATE": "CLIENT_WELCOME_EXPERIMENT"})
    got = rows(result)
    templates = {r["notification"]: r["template"] for r in got}
    assert templates["client_booking_confirmation"] == "CLIENT_BOOKING_CONFIRMATION_V1_STAGING"
    assert templates["client_welcome"] == "CLIENT_WELCOME_EXPERIMENT"


def test_an_unknown_environment_is_refused(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--env", "qa")
    assert result.exit_code == 2
    assert "no templates_map/qa.yaml (have: production, staging)" in result.stderr


def test_a_bad_until_is_refused(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--until", "2026-03-08")
    assert result.exit_code == 2
    assert "'2026-03-08' is not an RFC 3339 date-time with an offset" in result.stderr


def test_malformed_events_are_refused_with_their_line_numbers(monkeypatch, repo_root, examples, tmp_path) -> None:
    good = examples.read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join([
        good,
        '{"id": "evt_x", "type": "booking.confirmed",',
        "",
        '{"id":"evt_y","type":"booking.confirmd","occurred_at":"2026-03-01","data":{}}',
        '{"id":"evt_z","type":"credit.purchased","occurred_at":"2026-03-01T10:00:00Z","data":{"credit":{"amount":-5,"currency":"EUR","balance":0},"client":{"id":"c","email":"c@example.com","name":"C","timezone":"UTC"}}}',
    ]) + "\n", encoding="utf-8")
    result = preview(
        monkeypatch,
        tmp_path,
        "--events",
        "events.jsonl",
        "--config",
        str(repo_root / "notifications.yaml"),
        "--format",
        "json",
    )
    assert result.exit_code != 0
    assert result.stdout == ""  # nothing previewed
    assert result.stderr.splitlines() == [
        "events.jsonl:2: $: not JSON: Expecting property name enclosed in double quotes (column 45)",
        "events.jsonl:4: $.occurred_at: '2026-03-01' is not an RFC 3339 date-time with an offset (e.g. "
        "2026-03-01T10:00:00Z)",
        "events.jsonl:4: $.type: unknown event type 'booking.confirmd'",
        "events.jsonl:5: $.data.credit.amount: -5 is less than the minimum of 0",
        "Error: 3 event(s) refused; nothing previewed",
    ]


def test_a_missing_events_file(monkeypatch, repo_root) -> None:
    result = preview(monkeypatch, repo_root, "--events", "nope.jsonl")
    assert result.exit_code == 1
    assert "nope.jsonl: No such file or directory" in result.stderr


def test_a_preferences_file_opts_out(monkeypatch, repo_root, tmp_path, json_rows) -> None:
    prefs = tmp_path / "prefs.yaml"
    prefs.write_text("usr_c_maya: {client_review_request: false}\nusr_p_priya:\n")  # an empty entry opts out of nothing
    result = preview(
        monkeypatch, repo_root, "--events", "examples.jsonl", "--format", "json", "--preferences", str(prefs)
    )
    assert result.exit_code == 0, result.stderr
    reviews = lambda found: [r for r in found if (r["notification"], r["recipient"]) ==  # noqa: E731
                             ("client_review_request", "usr_c_maya")]
    assert reviews(json_rows) and all(r["status"] == "sent" for r in reviews(json_rows))
    assert [(r["status"], r["reason"]) for r in reviews(rows(result))] == [("skipped", "opted_out")] * len(
        reviews(json_rows)
    )
    assert [r for r in rows(result) if r not in reviews(rows(result))] == [
        r for r in json_rows if r not in reviews(json_rows)
    ]


def test_a_preferences_entry_that_is_not_a_mapping_is_refused_naming_the_file_and_the_recipient(
        monkeypatch, repo_root, tmp_path) -> None:
    prefs = tmp_path / "prefs.yaml"
    prefs.write_text("usr_c_maya: {client_review_request: false}\nusr_c_amara: false\nusr_p_priya: [engagement]\n"
                     'usr_p_jonas: {engagement: "no"}\n')
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--preferences", str(prefs))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"Error: {prefs}:2:14: preferences of usr_c_amara must be a mapping {{notification, category or "
        "notification:channel: true or false}; got False",
        f"{prefs}:3:14: preferences of usr_p_priya must be a mapping {{notification, category or "
        "notification:channel: true or false}; got ['engagement']",
        f"{prefs}:4:27: preferences of usr_p_jonas: engagement must be true or false; got 'no'",
    ]
    prefs.write_text("- usr_c_maya\n")
    result = preview(monkeypatch, repo_root, "--events", "examples.jsonl", "--preferences", str(prefs))
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {prefs}:1:1: preferences must map recipient ids to {{notification, category or "
                             "notification:channel: true or false}\n")


def test_an_invalid_configuration_is_reported_not_a_traceback(monkeypatch, repo_root, tmp_path) -> None:
    from engine.cli.main import main

    bad = repo_root / "tests" / "fixtures" / "bad_configs" / "invalid_timezone"
    monkeypatch.chdir(bad)
    (tmp_path / "e.jsonl").write_text("")
    assert main(["preview", "--events", str(tmp_path / "e.jsonl")]) == 1


def test_a_line_nested_ten_thousand_deep_is_refused_with_its_line(monkeypatch: pytest.MonkeyPatch, repo_root: Path,
                                                                  tmp_path: Path) -> None:
    deep = (
        '{"id": "e1", "type": "user.registered", "occurred_at": "2026-03-01T00:00:00Z", "data": '
        + "[" * 10_000
        + "]" * 10_000
        + "}"
    )
    events = tmp_path / "deep.jsonl"
    events.write_text(deep + "\n")
    result = preview(monkeypatch, repo_root, "--events", str(events), "--format", "json")
    assert result.exit_code == 1
    assert f"{events}:1: $: not readable: nested too deeply" in result.stderr
    assert "Traceback" not in result.output
