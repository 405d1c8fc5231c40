"""Hostile rule files and events: each is refused cleanly, in bounded time and memory.

Rule files come from pull requests and events from the application, so neither is trusted. Each
test here pins one defect found by a red-team: a time zone that is a folder of the zone database,
includes that leave the configuration's folder, YAML bombs, expressions that pass validation and
then cost seconds or gigabytes, patterns that backtrack, durations that overflow, cron
expressions that never fire. The corpus in tests/fixtures/hostile_rules/ is validated by the real
command in a process limited in memory and time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from engine.cli.main import cli
from engine.core.events import Event, EventRejected, parse_event
from engine.core.timing import When, digest_period, send_time
from engine.rules import timeparse
from engine.rules.json_schema import Checker
from engine.rules.loader import load
from engine.rules.yaml_source import parse
from engine.rules.model import Digest, RateLimit, Schedule, Throttle

FIXTURES = Path(__file__).parent / "fixtures"
BASE = FIXTURES / "bad_configs" / "_valid_base"
BOOKING = "rules/booking.yaml"


def base_copy(tmp_path: Path) -> Path:
    """A copy of the small valid configuration, to break one thing in."""
    cfg = tmp_path / "cfg"
    shutil.copytree(BASE, cfg)
    return cfg


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def validate(cfg: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.chdir(cfg)
    result = CliRunner().invoke(cli, ["validate", *args])
    # Never a traceback: the only way out is click's Exit with the code.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# -- A. time zones that are folders of the zone database, or too long -------------------------
BAD_ZONES = ["Europe", "America", "Etc", "x" * 300, "Europe/" + "x" * 300, "Europe/", "a\x00b", "", "../etc/passwd"]


@pytest.mark.parametrize("name", BAD_ZONES, ids=range(len(BAD_ZONES)))
def test_zone_refuses_every_bad_name_with_a_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        timeparse.zone(name)
    assert not timeparse.is_zone(name)


@pytest.mark.parametrize("value", [None, 5, ["Europe/Berlin"], {"a": 1}])
def test_zone_refuses_values_that_are_not_strings(value: object) -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        timeparse.zone(value)  # type: ignore[arg-type]


def test_validate_reports_a_folder_as_the_default_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = base_copy(tmp_path)
    edit(cfg / "notifications.yaml", "timezone: UTC", "timezone: Europe")
    result = validate(cfg, monkeypatch)
    assert result.exit_code == 1
    assert "notifications.yaml:7:13: defaults.timezone: 'Europe' is not an IANA time zone (e.g. Europe/Berlin)" in result.stdout


def test_an_event_whose_zone_is_a_folder_is_refused_at_the_door(shipped_config) -> None:
    raw = {"id": "evt_1", "type": "user.registered", "occurred_at": "2026-03-01T10:00:00Z",
           "data": {"user": {"id": "u1", "email": "ann@example.com", "name": "Ann", "timezone": "Europe", "role": "client"},
                    "verification_url": "https://estuary.app/verify?t=1"}}
    with pytest.raises(EventRejected) as refused:
        parse_event(raw, shipped_config)
    assert refused.value.problems == [("$.data.user.timezone", "'Europe' is not a 'timezone'")]


def test_preview_refuses_a_folder_zone_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    event = {"id": "evt_1", "type": "user.registered", "occurred_at": "2026-03-01T10:00:00Z",
             "data": {"user": {"id": "u1", "email": "ann@example.com", "name": "Ann", "timezone": "America", "role": "client"},
                      "verification_url": "https://estuary.app/verify?t=1"}}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event) + "\n")
    monkeypatch.chdir(repo_root)
    result = CliRunner().invoke(cli, ["preview", "--events", str(events)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "$.data.user.timezone: 'America' is not a 'timezone'" in result.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({**event, "data": {**event["data"], "user": {**event["data"]["user"], "timezone": "UTC"}}}) + "\n")
    result = CliRunner().invoke(cli, ["preview", "--events", str(good), "--format", "html", "--tz", "Etc",
                                      "--output", str(tmp_path / "p.html")])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2
    assert "'Etc' is not an IANA time zone" in result.stderr


# -- B. durations that overflow, cron expressions that never fire ------------------------------
@pytest.mark.parametrize("text", ["999999999d", "9999999999d", "3651d", "522w", "9" * 5000 + "s", "3650d1s"])
def test_a_duration_beyond_ten_years_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="longer than 3650d"):
        timeparse.parse_duration(text)


def test_durations_up_to_ten_years_still_parse() -> None:
    assert timeparse.parse_duration("3650d") == timedelta(days=3650)
    assert timeparse.parse_duration("0000000000000000000001h30m") == timedelta(hours=1, minutes=30)


@pytest.mark.parametrize("where, old, new, line", [
    ("notifications.yaml", "include:", "rate_limits:\n  per_recipient: {limit: 5, window: 999999999d}\ninclude:",
     "notifications.yaml:13:37: rate_limits.per_recipient.window: '999999999d' is longer than 3650d (ten years), "
     "the longest duration allowed"),
    (BOOKING, "before: 24h", "before: 9999999999d",
     f"{BOOKING}:42:15: notifications.booking_reminder.schedule.before: '9999999999d' is longer than 3650d (ten years), "
     "the longest duration allowed"),
    (BOOKING, "    channels: [email]", "    throttle: {window: 999999999d}\n    channels: [email]",
     f"{BOOKING}:48:24: notifications.booking_reminder.throttle.window: '999999999d' is longer than 3650d (ten years), "
     "the longest duration allowed"),
    (BOOKING, "      before: 24h\n      of: booking.start_time", "      cron: '0 0 31 2 *'\n      of: booking.start_time",
     f"{BOOKING}:42:13: booking_reminder: cron expression '0 0 31 2 *' never fires in the next 5 years "
     "(is the day of the month in the month?)"),
    (BOOKING, "      before: 24h\n      of: booking.start_time", "      cron: '0 9 30 2 MON#5'\n      of: booking.start_time",
     f"{BOOKING}:42:13: booking_reminder: cron expression '0 9 30 2 MON#5' never fires in the next 5 years "
     "(is the day of the month in the month?)"),
], ids=["rate_limit_window", "schedule_offset", "throttle_window", "cron_31_february", "cron_fifth_monday_30_february"])
def test_validate_refuses_durations_that_overflow_and_cron_that_never_fires(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, old: str, new: str, line: str) -> None:
    cfg = base_copy(tmp_path)
    edit(cfg / where, old, new)
    result = validate(cfg, monkeypatch)
    assert result.exit_code == 1
    assert line in result.stdout.splitlines(), result.stdout


def test_no_configuration_object_holds_a_duration_that_overflows() -> None:
    with pytest.raises(ValueError, match="longer than 3650 days"):
        Throttle("{{ recipient.id }}", timedelta(days=999_999_999))
    with pytest.raises(ValueError, match="longer than 3650 days"):
        RateLimit(5, timedelta(days=999_999_999))
    with pytest.raises(ValueError, match="longer than 3650 days"):
        Schedule("after", offset=timedelta(days=999_999_999))


def test_timing_skips_what_it_cannot_compute_instead_of_raising() -> None:
    now = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    event = Event("evt_1", "booking.confirmed", datetime(2026, 3, 1, 9, tzinfo=timezone.utc), {})
    never = Schedule("cron", cron="0 0 31 2 *")
    assert send_time(never, event, ZoneInfo("Europe/Berlin"), now) == When(now, "no_cron_time")
    huge = Schedule("after")
    object.__setattr__(huge, "offset", timedelta(days=999_999_999))  # past the model's own check
    assert send_time(huge, event, ZoneInfo("UTC"), now) == When(now, "out_of_range")
    period = digest_period(Digest("week", "0 0 31 2 *"), event.occurred_at, ZoneInfo("UTC"))
    assert period.send_at == period.end


# -- B. patterns run on a linear-time engine ---------------------------------------------------
EVIL = "a" * 26 + "!"  # `^(a+)+$` on Python's re: 2**26 steps, seconds (41 characters: days)


class _NoRe:
    """Stands in for the `re` module inside jsonschema: any use is a test failure."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"re.{name} was called on event data")


def test_a_backtracking_pattern_is_judged_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import jsonschema._keywords
    import jsonschema._utils

    monkeypatch.setattr(jsonschema._keywords, "re", _NoRe())
    monkeypatch.setattr(jsonschema._utils, "re", _NoRe())
    checker = Checker({"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}},
                       "patternProperties": {"^(b+)+$": {"type": "integer"}}, "additionalProperties": False})
    started = time.monotonic()
    found = sorted(e.message for e in checker.iter_errors({"code": EVIL, "b" * 26 + "!": 1, "bbb": "x"}))
    assert time.monotonic() - started < 1
    assert found == [f"'{EVIL}' does not match '^(a+)+$'", "'bbbbbbbbbbbbbbbbbbbbbbbbbb!' does not match any "
                     "of the regexes: '^(b+)+$'", "'x' is not of type 'integer'"]
    assert checker.surely_valid({"code": "aaa", "bbb": 1})


def _with_code_pattern(tmp_path: Path, pattern: str) -> Path:
    cfg = base_copy(tmp_path)
    edit(cfg / BOOKING, "            id: {type: string}\n            start_time",
         f"            id: {{type: string, pattern: '{pattern}'}}\n            start_time")
    return cfg


def test_an_event_checked_by_a_backtracking_pattern_is_refused_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jsonschema._keywords

    monkeypatch.setattr(jsonschema._keywords, "re", _NoRe())
    config = load(str(_with_code_pattern(tmp_path, "^([a-z0-9_]+)+$") / "notifications.yaml"), environ={})
    evil = config.notifications["booking_reminder"].example
    assert evil is not None
    raw = {"id": "e", "type": "booking.confirmed", "occurred_at": "2026-03-01T10:00:00Z",
           "data": {**evil.data, "booking": {**evil.data["booking"], "id": "b" * 26 + "!"}}}
    started = time.monotonic()
    with pytest.raises(EventRejected) as refused:
        parse_event(raw, config)
    assert time.monotonic() - started < 1
    assert refused.value.problems[0][0] == "$.data.booking.id"


@pytest.mark.parametrize("pattern, line", [
    ("^(?=a)b$", f"{BOOKING}:20:41: events.booking.confirmed.schema.properties.booking.properties.id.pattern: the pattern "
                 "'^(?=a)b$' cannot be used: patterns run on a linear-time engine, without lookaround or backreferences"),
    ("^(a)\\1$", f"{BOOKING}:20:41: events.booking.confirmed.schema.properties.booking.properties.id.pattern: the pattern "
                 "'^(a)\\\\1$' cannot be used: patterns run on a linear-time engine, without lookaround or backreferences"),
], ids=["lookahead", "backreference"])
def test_validate_refuses_a_pattern_the_linear_engine_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 pattern: str, line: str) -> None:
    result = validate(_with_code_pattern(tmp_path, pattern), monkeypatch)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [line]


def test_validate_refuses_unevaluated_properties_beside_pattern_properties(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = base_copy(tmp_path)
    edit(cfg / BOOKING, "          required: [id, start_time]\n",
         "          required: [id, start_time]\n          unevaluatedProperties: false\n"
         "          patternProperties: {'^x_': {type: string}}\n")
    result = validate(cfg, monkeypatch)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{BOOKING}:19:11: events.booking.confirmed.schema.properties.booking: unevaluatedProperties cannot be used "
        "where event schemas use patternProperties; use additionalProperties"]


# -- B. includes stay inside the configuration's folder, and read regular files only ----------
def _includes(cfg: Path, *patterns: str) -> None:
    edit(cfg / "notifications.yaml", "  - rules/*.yaml", "\n".join(f"  - {p!r}" for p in ("rules/*.yaml", *patterns)))


INCLUDE_LINE = 14  # the line of the first pattern after rules/*.yaml in notifications.yaml


@pytest.mark.parametrize("pattern, says", [
    ("/etc/*", "include: '/etc/*' must name files inside the configuration's folder (no absolute path, no '..')"),
    ("/proc/self/status", "include: '/proc/self/status' must name files inside the configuration's folder (no absolute path, no '..')"),
    ("/dev/zero", "include: '/dev/zero' must name files inside the configuration's folder (no absolute path, no '..')"),
    ("../*", "include: '../*' must name files inside the configuration's folder (no absolute path, no '..')"),
    ("rules/../../../etc/passwd", "include: 'rules/../../../etc/passwd' must name files inside the configuration's folder "
                                  "(no absolute path, no '..')"),
    ("notifications.yaml", "include: 'notifications.yaml': 'notifications.yaml' is notifications.yaml itself, which cannot "
                           "include itself"),
    ("none/*.yaml", "include: 'none/*.yaml' matches no file"),
], ids=["absolute_glob", "proc", "device", "parent", "parent_inside", "itself", "nothing"])
def test_an_include_may_not_leave_the_configurations_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           pattern: str, says: str) -> None:
    cfg = base_copy(tmp_path)
    _includes(cfg, pattern)
    result = validate(cfg, monkeypatch)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"notifications.yaml:{INCLUDE_LINE}:5: {says}"]


def test_an_include_reads_regular_files_inside_the_folder_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = base_copy(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("definitions: {}\n")
    (cfg / "rules" / "escape.yaml").symlink_to("/etc/passwd")
    (cfg / "rules" / "elsewhere").symlink_to(outside, target_is_directory=True)
    (cfg / "rules" / "folder.yaml").mkdir()
    os.mkfifo(cfg / "rules" / "pipe.yaml")
    (cfg / "rules" / "zero.yaml").symlink_to("/dev/zero")
    (cfg / "rules" / "same.yaml").symlink_to("booking.yaml")  # inside: read once, with booking.yaml
    _includes(cfg, "rules/elsewhere/*.yaml")
    result = validate(cfg, monkeypatch)
    assert result.exit_code == 1
    first = "notifications.yaml:13:5: include: 'rules/*.yaml': "
    assert result.stdout.splitlines() == [
        first + "'rules/escape.yaml' leads outside the configuration's folder (through a symbolic link)",
        first + "'rules/folder.yaml' is a folder, not a regular file",
        first + "'rules/pipe.yaml' is a FIFO, not a regular file",
        first + "'rules/zero.yaml' leads outside the configuration's folder (through a symbolic link)",
        "notifications.yaml:14:5: include: 'rules/elsewhere/*.yaml': 'rules/elsewhere/secret.yaml' leads outside the "
        "configuration's folder (through a symbolic link)",
    ]


@pytest.mark.parametrize("make, says", [
    (lambda p: os.mkfifo(p), "cannot read file: it is a FIFO, not a regular file"),
    (lambda p: p.mkdir(), "cannot read file: it is a folder, not a regular file"),
    (lambda p: p.symlink_to("/dev/zero"), "cannot read file: it is a device, not a regular file"),
    (lambda p: p.write_bytes(b"# " + b"x" * (3 * 1024 * 1024)), "the file is larger than 2 MB (2097152 bytes): split it into several files"),
], ids=["fifo", "folder", "device", "too_large"])
def test_the_root_file_is_read_only_when_it_is_a_bounded_regular_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     make: object, says: str) -> None:
    make(tmp_path / "notifications.yaml")  # type: ignore[operator]
    result = validate(tmp_path, monkeypatch)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"notifications.yaml:1:1: {says}"]


def test_a_message_quoting_a_huge_value_is_shortened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = base_copy(tmp_path)
    edit(cfg / BOOKING, "notifications:\n", "notifications:\n  ? " + "X" * 1_000_000 + "\n  : {description: x}\n")
    result = validate(cfg, monkeypatch)
    assert result.exit_code == 1
    assert len(result.stdout) < 20_000
    assert "characters left out ...]" in result.stdout


# -- B. YAML bombs: aliases, values, nesting, size ------------------------------------------------
LAUGHS = "".join(f"{a}: &{a} [{', '.join([f'*{b}'] * 10)}]\n" for b, a in zip("abcdefgh", "bcdefghi"))
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + LAUGHS


@pytest.mark.parametrize("text, says", [
    (BILLION_LAUGHS, "more than 250000 values in one file (with every use of an alias counted: an alias bomb?)"),
    ("x: [" + ", ".join(["1"] * 300_000) + "]\n", "more than 250000 values in one file (split it into several files)"),
    ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nesting deeper than 64 levels"),
    ("x:\n  " + "- " * 500 + "deep\n", "nesting deeper than 64 levels"),
    ("".join("  " * i + f"k{i}:\n" for i in range(100)) + "  " * 100 + "end: 1\n", "nesting deeper than 64 levels"),
    ("# " + "x" * (2 * 1024 * 1024), "the file is larger than 2 MB (2097152 bytes): split it into several files"),
], ids=["billion_laughs", "many_values", "deep_flow", "deep_block_sequence", "deep_mapping", "too_large"])
def test_a_yaml_bomb_is_a_problem_found_quickly(text: str, says: str) -> None:
    started = time.monotonic()
    doc, problems = parse(text, "bomb.yaml")
    assert time.monotonic() - started < 10  # under a second on an idle machine
    assert [p.message for p in problems][:1] == [says]


def test_aliases_of_a_sensible_size_still_work() -> None:
    doc, problems = parse("a: &person {id: p1, email: a@example.com}\nb: *person\nc: [*person, *person]\n", "ok.yaml")
    assert problems == []
    assert doc.data["c"] == [{"id": "p1", "email": "a@example.com"}] * 2
