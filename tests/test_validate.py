"""`engine validate` on broken configurations: the exact FILE:LINE:COL: message lines.

Each directory under tests/fixtures/bad_configs/ is a small complete configuration: a copy of
`_valid_base` (which validates cleanly) with one thing broken (or, in `several_problems`,
three). The command runs with the fixture as its working directory, so file names are
relative, exactly as a pull request check shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli

FIXTURES = Path(__file__).parent / "fixtures" / "bad_configs"
BOOKING = "rules/booking.yaml"

# case -> the exact lines printed (errors and warnings), in order.
EXPECTED: dict[str, list[str]] = {
    "yaml_syntax_error": [
        f"{BOOKING}:40:8: YAML syntax error: expected ',' or ']', but got ':'",
    ],
    "root_yaml_syntax_error": [
        "notifications.yaml:9:1: YAML syntax error: a tab in the indentation: indent with spaces, not tabs",
    ],
    "duplicate_key": [
        f"{BOOKING}:49:5: duplicate key 'channels' (first at line 48)",
    ],
    "yes_value": [
        f"{BOOKING}:49:14: ambiguous value 'yes': YAML 1.1 reads it as a boolean; "
        "write true or false, or quote it as a string",
    ],
    "unquoted_date": [
        f"{BOOKING}:56:20: unquoted date '2026-03-01T10:00:00Z': "
        "quote it (\"2026-03-01T10:00:00Z\") so it stays a string",
    ],
    "yaml_tag": [
        f"{BOOKING}:49:15: tags such as '!!python/name:os.system' are not allowed",
    ],
    "unknown_top_level_key": [
        "notifications.yaml:12:1: the top level: unknown key 'quiet_hours' (allowed: app, categories, defaults, "
        "definitions, events, include, notifications, rate_limits, retention, version, windows)",
    ],
    "unknown_notification_key": [
        f"{BOOKING}:41:5: notifications.booking_reminder: unknown key 'shedule'; did you mean 'schedule'? "
        "(allowed: audience, batch, cancel_on, category, channels, data, description, digest, enabled, example, "
        "expires_after, idempotency_key, key, requires, "
        "reschedule_on, routing, schedule, template, throttle, trigger)",
    ],
    "unknown_trigger_event": [
        f"{BOOKING}:38:14: booking_reminder: unknown event 'booking.confirmd'; did you mean 'booking.confirmed'? "
        "(known: booking.cancelled, booking.confirmed)",
        f"{BOOKING}:55:13: booking_reminder: the example is a 'booking.confirmed' event "
        "but the trigger is 'booking.confirmd'",
    ],
    "template_missing_in_env": [
        f"{BOOKING}:50:15: booking_reminder: template key 'booking_reminder' "
        "is missing from templates_map/staging.yaml",
    ],
    "offset_field_not_required": [
        f"{BOOKING}:43:11: booking_reminder: schedule.of 'booking.start_time': the event schema must declare it "
        "as required (add it to `required`)",
    ],
    "offset_field_not_date_time": [
        f"{BOOKING}:43:11: booking_reminder: schedule.of 'booking.id': the event schema must declare it as a "
        "string with format: date-time",
    ],
    "expression_undeclared_field": [
        f"{BOOKING}:54:15: booking_reminder: expression '{{{{ booking.colour }}}}' reads 'booking.colour', which "
        "the event schema does not declare",
    ],
    "expression_private_names": [
        f"{BOOKING}:54:14: booking_reminder: expression '{{{{ booking.id.__class__ }}}}': '__class__': names "
        "starting with an underscore are not allowed",
        f"{BOOKING}:55:15: booking_reminder: expression '{{{{ client._password }}}}': '_password': names starting "
        "with an underscore are not allowed",
    ],
    "expression_does_not_compile": [
        f"{BOOKING}:53:19: booking_reminder: expression '{{{{ booking.id | }}}}': does not compile: expected "
        "token 'name', got 'end of print statement'",
    ],
    "macro_statement": [
        f"{BOOKING}:54:17: booking_reminder: expression '{{% macro hi() %}}hi{{% endmacro %}}{{{{ hi() }}}}': the "
        "statement 'macro' is not allowed in rule expressions",
    ],
    "invalid_cron": [
        f"{BOOKING}:42:13: booking_reminder: invalid cron expression '0 25 * * MON' (e.g. \"0 9 * * MON\")",
    ],
    "invalid_timezone": [
        "notifications.yaml:7:13: defaults.timezone: 'Europe/Berln' is not an IANA time zone (e.g. Europe/Berlin)",
    ],
    "invalid_duration": [
        f"{BOOKING}:42:15: notifications.booking_reminder.schedule.before: '24 hours' is not a duration "
        "(write e.g. 30m, 24h, 3d, 1h30m)",
    ],
    "unknown_window": [
        f"{BOOKING}:45:15: booking_reminder: unknown window 'daytime'",
    ],
    "duplicate_notification_id": [
        "rules/reminders.yaml:2:3: notification 'booking_reminder' is declared twice (also at rules/booking.yaml:36)",
    ],
    "cancel_on_own_trigger": [
        f"{BOOKING}:46:16: booking_reminder: cancel_on: 'booking.confirmed' is this notification's own trigger; "
        "it would cancel itself",
    ],
    "required_field_not_provided": [
        f"{BOOKING}:51:28: booking_reminder: the template requires 'start_time' but no `data` entry provides it",
    ],
    "example_fails_schema": [
        f"{BOOKING}:55:7: booking_reminder: the example event is invalid: example.data.client.email: "
        "'not-an-email' is not a 'email'",
    ],
    "digest_data_does_not_render": [
        f"{BOOKING}:70:17: weekly_bookings: data.bookings: with its example event (production): render failed: "
        "'dict object' has no attribute 'idd'",
    ],
    "warning_example_in_past": [
        f"{BOOKING}:55:7: warning: booking_reminder: with its example event this send lands in the past and is "
        "skipped; is the offset right?",
    ],
    "several_problems": [
        f"{BOOKING}:46:16: booking_reminder: cancel_on: unknown event 'booking.canceled'; did you mean "
        "'booking.cancelled'? (known: booking.cancelled, booking.confirmed)",
        f"{BOOKING}:49:15: booking_reminder: unknown category 'reminder'; did you mean 'reminders'? (known: reminders, "
        "transactional)",
        f"{BOOKING}:53:19: booking_reminder: expression '{{{{ booking.ident }}}}' reads 'booking.ident', which the "
        "event schema does not declare",
    ],
}
WARNING_ONLY = {"warning_example_in_past"}


def validate(case_dir: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.chdir(case_dir)
    result = CliRunner().invoke(cli, ["validate", *args])
    # Never a traceback: the only way out is click's Exit with the code.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_every_fixture_has_an_expectation() -> None:
    # A fixture with its own expected.txt is checked by tests/test_checks.py.
    cases = {
        p.name
        for p in FIXTURES.iterdir()
        if p.is_dir() and not p.name.startswith("_") and not (p / "expected.txt").exists()
    }
    assert cases == set(EXPECTED)


def test_the_base_fixture_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / "_valid_base", monkeypatch)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "valid: 0 error(s), 0 warning(s)\n"


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_text_format(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / case, monkeypatch)
    assert result.stdout.splitlines() == EXPECTED[case]
    errors = sum(1 for line in EXPECTED[case] if ": warning: " not in line)
    warnings = len(EXPECTED[case]) - errors
    if case in WARNING_ONLY:
        assert result.exit_code == 0
        assert result.stderr == f"valid: 0 error(s), {warnings} warning(s)\n"
    else:
        assert result.exit_code == 1
        assert result.stderr == f"invalid: {errors} error(s), {warnings} warning(s)\n"


def test_warnings_fail_with_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / "warning_example_in_past", monkeypatch, "--strict")
    assert result.exit_code == 1


def _split(line: str) -> tuple[str, int, int, str, str]:
    file, line_no, col, message = line.split(":", 3)
    message = message[1:]
    severity = "error"
    if message.startswith("warning: "):
        severity, message = "warning", message[len("warning: "):]
    return file, int(line_no), int(col), message, severity


@pytest.mark.parametrize("case", ["several_problems", "warning_example_in_past", "yaml_syntax_error"])
def test_github_format(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / case, monkeypatch, "--format", "github")
    expected = []
    for line in EXPECTED[case]:
        file, line_no, col, message, severity = _split(line)
        expected.append(f"::{severity} file={file},line={line_no},col={col}::{message}")
    assert result.stdout.splitlines() == expected
    assert result.exit_code == (0 if case in WARNING_ONLY else 1)
    assert result.stderr == ""


def test_github_format_exact_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / "invalid_timezone", monkeypatch, "--format", "github")
    assert result.stdout == (
        "::error file=notifications.yaml,line=7,col=13::defaults.timezone: 'Europe/Berln' is not an IANA time "
        "zone (e.g. Europe/Berlin)\n"
    )


@pytest.mark.parametrize("case", ["several_problems", "warning_example_in_past", "duplicate_notification_id"])
def test_json_format(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / case, monkeypatch, "--format", "json")
    found = json.loads(result.stdout)
    assert isinstance(found, list)
    assert [{k: p[k] for k in ("file", "line", "col", "message", "severity")} for p in found] == [
        dict(zip(("file", "line", "col", "message", "severity"), _split(line), strict=True))
        for line in EXPECTED[case]
    ]
    assert result.exit_code == (0 if case in WARNING_ONLY else 1)


def test_json_format_of_a_valid_config_is_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / "_valid_base", monkeypatch, "--format", "json")
    assert json.loads(result.stdout) == []
    assert result.exit_code == 0


def test_config_option_and_a_missing_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result = validate(tmp_path, monkeypatch, "--config", "nope.yaml")
    assert result.stdout.splitlines() == [
        "nope.yaml:1:1: no such file: pass --config or run where notifications.yaml is"
    ]
    assert result.exit_code == 1


def test_the_shipped_configuration_is_valid(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(repo_root, monkeypatch)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == "valid: 0 error(s), 0 warning(s)\n"
    result = validate(repo_root, monkeypatch, "--format", "json", "--strict")
    assert json.loads(result.stdout) == []
    assert result.exit_code == 0


def test_the_real_command_never_prints_a_traceback() -> None:
    """Through the installed entry point, in a fresh process: broken YAML is a problem, exit 1."""
    engine = Path(sys.executable).with_name("engine")
    command = [str(engine)] if engine.exists() else [sys.executable, "-m", "engine.cli.main"]
    done = subprocess.run([*command, "validate"], cwd=FIXTURES / "yaml_syntax_error", capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stdout.splitlines() == EXPECTED["yaml_syntax_error"]
    assert done.stderr == "invalid: 1 error(s), 0 warning(s)\n"


def test_a_template_select_must_cover_every_enum_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[1]
    for name in ("notifications.yaml", "rules", "templates_map"):
        subprocess.run(["cp", "-r", str(root / name), str(tmp_path / name)], check=True)
    practitioner = tmp_path / "rules" / "practitioner.yaml"
    text = practitioner.read_text()
    line = text[: text.index("        rejected: practitioner_verification_rejected")].count("\n") + 1
    practitioner.write_text(text.replace("        rejected: practitioner_verification_rejected\n", ""))
    result = validate(tmp_path, monkeypatch)
    assert result.exit_code == 1
    first_case = line - 1  # the cases mapping starts at its first case, just above the removed one
    assert (
        f"rules/practitioner.yaml:{first_case}:9: practitioner_verification_status: template select 'status' can be "
        "'rejected', which no case names (add a case or a default)"
        in result.stdout.splitlines()
    )


def test_the_real_command_ends_without_freeing_and_loses_no_output(tmp_path: Path) -> None:
    """The console script ends `engine validate` with os._exit: the process still exits with the
    command's code, 0 or 1, and all of its output."""
    engine = Path(sys.executable).with_name("engine")
    command = [str(engine)] if engine.exists() else [sys.executable, "-m", "engine.cli.main"]
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([*command, "validate", "--config", str(root / "notifications.yaml"), "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, json.loads(done.stdout)) == (0, [])
    broken = subprocess.run([*command, "validate", "--format", "json"], cwd=FIXTURES / "yaml_syntax_error",
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1
    assert [p["message"] for p in json.loads(broken.stdout)] and broken.stdout.endswith("]\n")


def test_a_caller_that_goes_on_keeps_its_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Called in-process (not as the console script), validate leaves the collector as it was."""
    import gc

    from engine.cli.main import main

    root = Path(__file__).resolve().parents[1]
    frozen, enabled = gc.get_freeze_count(), gc.isenabled()
    assert main(["validate", "--config", str(root / "notifications.yaml")]) == 0
    assert (gc.get_freeze_count(), gc.isenabled()) == (frozen, enabled)
