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
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from engine.cli.main import cli
from engine.core.decide import Send, decide
from engine.core.events import Event, EventRejected, parse_event
from engine.core.timing import When, digest_period, send_time
from engine.rules import timeparse
from engine.rules.expressions import ExpressionError, render
from engine.rules.json_schema import Checker, pattern_search
from engine.rules.loader import load
from engine.rules.model import Digest, RateLimit, Schedule, Throttle
from engine.rules.yaml_source import parse

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
    assert (
        "notifications.yaml:7:13: defaults.timezone: 'Europe' is not an IANA time zone (e.g. Europe/Berlin)"
        in result.stdout
    )


def test_an_event_whose_zone_is_a_folder_is_refused_at_the_door(shipped_config) -> None:
    raw = {
        "id": "evt_1",
        "type": "user.registered",
        "occurred_at": "2026-03-01T10:00:00Z",
        "data": {
            "user": {"id": "u1", "email": "ann@example.com", "name": "Ann", "timezone": "Europe", "role": "client"},
            "verification_url": "https://estuary.app/verify?t=1",
        },
    }
    with pytest.raises(EventRejected) as refused:
        parse_event(raw, shipped_config)
    assert refused.value.problems == [("$.data.user.timezone", "'Europe' is not a 'timezone'")]


def test_preview_refuses_a_folder_zone_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    event = {
        "id": "evt_1",
        "type": "user.registered",
        "occurred_at": "2026-03-01T10:00:00Z",
        "data": {
            "user": {"id": "u1", "email": "ann@example.com", "name": "Ann", "timezone": "America", "role": "client"},
            "verification_url": "https://estuary.app/verify?t=1",
        },
    }
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(event) + "\n")
    monkeypatch.chdir(repo_root)
    result = CliRunner().invoke(cli, ["preview", "--events", str(events)])
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "$.data.user.timezone: 'America' is not a 'timezone'" in result.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({**event, "data": {**event["data"], "user": {**event["data"]["user"], "timezone": "UTC"}}}) + "\n"
    )
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


@pytest.mark.parametrize(
    "where, old, new, line",
    [
        (
            "notifications.yaml",
            "include:",
            "rate_limits:\n  per_recipient: {limit: 5, window: 999999999d}\ninclude:",
            "notifications.yaml:13:37: rate_limits.per_recipient.window: '999999999d' "
            "is longer than 3650d (ten years), the longest duration allowed",
        ),
        (
            BOOKING,
            "before: 24h",
            "before: 9999999999d",
            f"{BOOKING}:42:15: notifications.booking_reminder.schedule.before: '9999999999d' "
            "is longer than 3650d (ten years), the longest duration allowed",
        ),
        (
            BOOKING,
            "    channels: [email]",
            "    throttle: {window: 999999999d}\n    channels: [email]",
            f"{BOOKING}:48:24: notifications.booking_reminder.throttle.window: '999999999d' "
            "is longer than 3650d (ten years), the longest duration allowed",
        ),
        (
            BOOKING,
            "      before: 24h\n      of: booking.start_time",
            "      cron: '0 0 31 2 *'\n      of: booking.start_time",
            f"{BOOKING}:42:13: booking_reminder: cron expression '0 0 31 2 *' never fires in the next 5 years "
            "(is the day of the month in the month?)",
        ),
        (
            BOOKING,
            "      before: 24h\n      of: booking.start_time",
            "      cron: '0 9 30 2 MON#5'\n      of: booking.start_time",
            f"{BOOKING}:42:13: booking_reminder: cron expression '0 9 30 2 MON#5' never fires in the next 5 years "
            "(is the day of the month in the month?)",
        ),
    ],
    ids=[
        "rate_limit_window",
        "schedule_offset",
        "throttle_window",
        "cron_31_february",
        "cron_fifth_monday_30_february",
    ],
)
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
    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    event = Event("evt_1", "booking.confirmed", datetime(2026, 3, 1, 9, tzinfo=UTC), {})
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


def test_an_event_checked_by_a_backtracking_pattern_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jsonschema._keywords

    monkeypatch.setattr(jsonschema._keywords, "re", _NoRe())
    config = load(str(_with_code_pattern(tmp_path, "^([a-z0-9_]+)+$") / "notifications.yaml"))
    evil = config.notifications["booking_reminder"].example
    assert evil is not None
    raw = {"id": "e", "type": "booking.confirmed", "occurred_at": "2026-03-01T10:00:00Z",
           "data": {**evil.data, "booking": {**evil.data["booking"], "id": "b" * 26 + "!"}}}
    started = time.monotonic()
    with pytest.raises(EventRejected) as refused:
        parse_event(raw, config)
    assert time.monotonic() - started < 1
    assert refused.value.problems[0][0] == "$.data.booking.id"


@pytest.mark.parametrize(
    "pattern, line",
    [
        (
            "^(?=a)b$",
            f"{BOOKING}:20:41: events.booking.confirmed.schema.properties.booking.properties.id.pattern: the pattern "
            "'^(?=a)b$' cannot be used: patterns run on a linear-time engine, without lookaround or backreferences",
        ),
        (
            "^(a)\\1$",
            f"{BOOKING}:20:41: events.booking.confirmed.schema.properties.booking.properties.id.pattern: the pattern "
            "'^(a)\\\\1$' cannot be used: patterns run on a linear-time engine, without lookaround or backreferences",
        ),
    ],
    ids=["lookahead", "backreference"],
)
def test_validate_refuses_a_pattern_the_linear_engine_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 pattern: str, line: str) -> None:
    result = validate(_with_code_pattern(tmp_path, pattern), monkeypatch)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [line]


def test_validate_refuses_unevaluated_properties_beside_pattern_properties(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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


@pytest.mark.parametrize(
    "pattern, says",
    [
        ("/etc/*", "include: '/etc/*' must name files inside the configuration's folder (no absolute path, no '..')"),
        (
            "/proc/self/status",
            "include: '/proc/self/status' must name files inside the configuration's folder (no absolute path, no "
            "'..')",
        ),
        (
            "/dev/zero",
            "include: '/dev/zero' must name files inside the configuration's folder (no absolute path, no '..')",
        ),
        ("../*", "include: '../*' must name files inside the configuration's folder (no absolute path, no '..')"),
        (
            "rules/../../../etc/passwd",
            "include: 'rules/../../../etc/passwd' must name files inside the configuration's folder "
            "(no absolute path, no '..')",
        ),
        (
            "notifications.yaml",
            "include: 'notifications.yaml': 'notifications.yaml' is notifications.yaml itself, which cannot "
            "include itself",
        ),
        ("none/*.yaml", "include: 'none/*.yaml' matches no file"),
    ],
    ids=["absolute_glob", "proc", "device", "parent", "parent_inside", "itself", "nothing"],
)
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


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: os.mkfifo(p), "cannot read file: it is a FIFO, not a regular file"),
        (lambda p: p.mkdir(), "cannot read file: it is a folder, not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "cannot read file: it is a device, not a regular file"),
        (
            lambda p: p.write_bytes(b"# " + b"x" * (3 * 1024 * 1024)),
            "the file is larger than 2 MB (2097152 bytes): split it into several files",
        ),
    ],
    ids=["fifo", "folder", "device", "too_large"],
)
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
LAUGHS = "".join(f"{a}: &{a} [{', '.join([f'*{b}'] * 10)}]\n" for b, a in zip("abcdefgh", "bcdefghi", strict=True))
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


# -- B. expressions that pass validation yet cost seconds or gigabytes -----------------------
# Each reads no field, so validation evaluates it under the render's bounds even where no example
# reaches it (behind a condition), and refuses it; the renderer refuses it again at run time.
COSTLY = [
    (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "loops would turn more than 100000 times",
    ),
    ("{{ ([[0] * 10000] * 10000) | sum(start=[]) }}", "the sum filter adds numbers"),
    ("{{ [1] | slice(10**8) | list }}", "the slice filter making this many lists is not allowed"),
    ("{{ '%*s' % (10**9, 'x') }}", "a format width this large is not allowed"),
    ("{{ '{:>{}}'.format('x', 10**9) }}", "a format width this large is not allowed"),
    ("{{ dict.fromkeys(range(100000), 'x' * 10000) }}", "characters and items once written out is not allowed"),
    ("{% if booking.id == 'never' %}{{ ['x' * 10000] * 10000 }}{% endif %}", "a repetition of more than 1048576"),
    ("{% if booking.id == 'never' %}{{ (['x' * 10000] * 100) | join | length }}{% endif %}", ""),
    ("{{ [1] | batch(10**8, 'x') | list }}", "the batch filter making this many lists is not allowed"),
    ("{{ [[1]] | tojson(indent=10**6) }}", "the tojson filter this indented is not allowed"),
    ("{{ ('x\\n' * 5000) | indent('y' * 9000) }}", "the indent filter this wide is not allowed"),
    ("{% for x in booking recursive %}{{ loop(x) }}{% endfor %}", "a recursive loop is not allowed"),
]


@pytest.mark.parametrize("expression, says", COSTLY, ids=[f"costly{i}" for i in range(len(COSTLY))])
def test_validate_refuses_what_no_data_can_make_cheap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      expression: str, says: str) -> None:
    cfg = base_copy(tmp_path)
    quoted = expression.replace("'", "''")
    edit(cfg / BOOKING, '      booking_id: "{{ booking.id }}"', f"      booking_id: '{quoted}'")
    started = time.monotonic()
    result = validate(cfg, monkeypatch)
    assert time.monotonic() - started < 10
    if not says:  # 1 MB made behind a condition: within the bounds, so valid (the render then cuts it)
        assert result.exit_code == 0, result.stdout
        return
    assert result.exit_code == 1
    assert [line for line in result.stdout.splitlines() if says in line], result.stdout


@pytest.mark.parametrize("expression, says", COSTLY, ids=[f"costly{i}" for i in range(len(COSTLY))])
def test_the_renderer_refuses_them_again_in_bounded_time_and_memory(expression: str, says: str) -> None:
    import tracemalloc

    context = {"booking": {"id": "never"}}  # the conditions hold
    tracemalloc.start()
    started = time.monotonic()
    try:
        if says:
            with pytest.raises(ExpressionError):
                render(expression, context)
        else:
            assert render(expression, context) == 1_000_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 200 * 1024 * 1024


# Expressions validation cannot judge (they read fields): the data decides what they cost, and
# the render's budget stops them.
DATA = {"text": "x" * 20_000, "items": list(range(1000)), "id": "i" * 100}


@pytest.mark.parametrize(
    "expression, says",
    [
        ("{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}", "takes more than 100000 steps"),
        (
            "{% for a in id %}{% for b in id %}{% for c in id %}{% endfor %}{% endfor %}{% endfor %}",
            "takes more than 100000 steps",
        ),
        ("{{ ([text] * 100) | join | length }}", "a repetition of more than 1048576"),
        ("{{ dict.fromkeys(items, text) }}", "once written out is not allowed"),
        (
            "{{ dict.fromkeys(items, text).values() | map('upper') | list | length }}",
            "makes more than 16777216 characters",
        ),
        ("{{ items | map('string') | join(text) | length }}", "a join longer than 1048576"),
        ("{{ '{0!r}'.format(dict.fromkeys(items, text)) }}", "once written out is not allowed"),
        ("{{ '%s' % (dict.fromkeys(items, text),) }}", "once written out is not allowed"),
        ("{{ ''.join(dict.fromkeys(items, text).values()) | length }}", "a join longer than 1048576"),
        ("{{ text | wordwrap(1, wrapstring=text) }}", "the wordwrap filter this narrow is not allowed"),
        ("{{ items | sum(start=items) }}", "the sum filter adds numbers"),
        ("{{ dict.fromkeys(items, text) ~ '' }}", "a value larger than 1048576 characters"),
    ],
)
def test_a_costly_expression_that_reads_fields_is_stopped_by_the_render_budget(expression: str, says: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=re.escape(says)):
        render(expression, dict(DATA))
    assert time.monotonic() - started < 5


def test_a_send_whose_render_runs_out_of_budget_is_recorded_skipped(tmp_path: Path) -> None:
    cfg = base_copy(tmp_path)
    loops = ("{% for a in booking.id %}{% for b in booking.id %}{% for c in booking.id %}"
             "{% endfor %}{% endfor %}{% endfor %}")
    edit(cfg / BOOKING, '      booking_id: "{{ booking.id }}"', f'      booking_id: "{{{{ booking.id }}}}{loops}"')
    config = load(str(cfg / "notifications.yaml"))  # the example's 4-character id: 64 turns
    example = config.notifications["booking_reminder"].example
    assert example is not None
    raw = {"id": "evt_costly", "type": "booking.confirmed", "occurred_at": "2026-03-01T10:00:00Z",
           "data": {**example.data, "booking": {**example.data["booking"], "id": "b" * 100}}}
    started = time.monotonic()
    decisions = decide(config, parse_event(raw, config), datetime(2026, 3, 1, 10, tzinfo=UTC))
    assert time.monotonic() - started < 5
    assert [(d.status, d.reason) for d in decisions if isinstance(d, Send)] == [
        ("skipped", "render failed: refused by the sandbox: the expression takes more than 100000 steps "
                    "(loop turns, calls, filters, operators)")]


# -- C. the hostile corpus, validated by the real command under a memory and time limit -------
CORPUS = FIXTURES / "hostile_rules"
LIMIT_BYTES = 1024 ** 3  # RLIMIT_AS of the validating process
LIMIT_SECONDS = 20


def _huge_strings(cfg: Path) -> None:
    edit(cfg / BOOKING, "notifications:\n", "notifications:\n  ? " + "X" * 1_000_000 + "\n  : {description: x}\n")
    edit(
        cfg / BOOKING,
        '      booking_id: "{{ booking.id }}"',
        '      booking_id: "{{ booking.id }}' + "z" * 900_000 + '"',
    )


def _folder_outside(cfg: Path) -> None:
    outside = cfg.parent / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text("definitions: {}\n")
    (cfg / "rules" / "elsewhere").symlink_to(outside, target_is_directory=True)


def _many_files(cfg: Path) -> None:
    (cfg / "rules" / "many").mkdir()
    for i in range(1001):
        (cfg / "rules" / "many" / f"r{i}.yaml").write_text("definitions: {}\n")


def _root_fifo(cfg: Path) -> None:
    (cfg / "notifications.yaml").unlink()
    os.mkfifo(cfg / "notifications.yaml")


# What git cannot hold, made in the copy.
BUILT = {
    "include_fifo": lambda cfg: os.mkfifo(cfg / "rules" / "pipe.yaml"),
    "include_symlink_escape": lambda cfg: (cfg / "rules" / "escape.yaml").symlink_to("/etc/passwd"),
    "include_symlink_folder_escape": _folder_outside,
    "many_included_files": _many_files,
    "root_fifo": _root_fifo,
    "huge_file": lambda cfg: (cfg / "rules" / "huge.yaml").write_text("# " + "x" * 50_000_000),
    "many_values": lambda cfg: (cfg / "rules" / "values.yaml").write_text(
        "definitions:\n  v: [" + "1," * 900_000 + "1]\n"
    ),
    "huge_strings": _huge_strings,
}
TOO_MANY = "more than 250000 values in one file"
OUTSIDE = "must name files inside the configuration's folder (no absolute path, no '..')"
# case -> what the output must say (each, somewhere)
SAYS: dict[str, list[str]] = {
    "alias_bomb": [f"rules/bomb.yaml:3:40: {TOO_MANY} (with every use of an alias counted: an alias bomb?)"],
    "alias_bomb_templates_map": [
        f"templates_map/production.yaml:2:43: {TOO_MANY} (with every use of an alias counted: an alias bomb?)"
    ],
    "deep_flow": ["rules/deep.yaml:3:1007: nesting deeper than 64 levels"],
    "deep_block": ["rules/deep.yaml:", "nesting deeper than 64 levels"],
    "include_absolute": [f"include: '/etc/*' {OUTSIDE}"],
    "include_proc": [f"include: '/proc/self/status' {OUTSIDE}"],
    "include_dev_zero": [f"include: '/dev/zero' {OUTSIDE}"],
    "include_parent": [f"include: '../../../../../../etc/passwd' {OUTSIDE}"],
    "include_self": ["include: 'notifications.yaml': 'notifications.yaml' is notifications.yaml itself"],
    "include_fifo": ["include: 'rules/pipe.yaml': 'rules/pipe.yaml' is a FIFO, not a regular file"],
    "include_symlink_escape": [
        "'rules/escape.yaml' leads outside the configuration's folder (through a symbolic link)"
    ],
    "include_symlink_folder_escape": ["'rules/elsewhere/secret.yaml' leads outside the configuration's folder"],
    "include_directory": ["include: 'rules/folder.yaml': 'rules/folder.yaml' is a folder, not a regular file"],
    "include_in_rule_file": ["rules/nested.yaml:2:1: 'include' belongs in notifications.yaml, not in a rule file"],
    "many_included_files": ["include: 'rules/many/*.yaml' matches 1001 files; at most 1000 may be included"],
    "root_fifo": ["notifications.yaml:1:1: cannot read file: it is a FIFO, not a regular file"],
    "huge_file": ["rules/huge.yaml:1:1: the file is larger than 2 MB (2097152 bytes): split it into several files"],
    "many_values": [f"rules/values.yaml:2:499997: {TOO_MANY} (split it into several files)"],
    "huge_strings": ["characters left out ...]", "expression longer than 2000 characters"],
    "costly_expressions": [
        "loops would turn more than 100000 times",
        "the sum filter adds numbers",
        "the slice filter making this many lists",
        "a format width this large is not allowed",
        "once written out is not allowed",
        "a repetition of more than 1048576",
        "the batch filter making this many lists",
        "a recursive loop is not allowed",
    ],
    "pattern_backtracking": ["does not match '^(a+)+$'"],
    "pattern_lookaround": [
        "cannot be used: patterns run on a linear-time engine, without lookaround or backreferences"
    ],
    "durations_overflow": [
        "schedule.before: '9999999999d' is longer than 3650d",
        "throttle.window: '999999999d' is longer",
        "rate_limits.per_recipient.window: '999999999d' is longer",
        "retention.events: '99999999999999999999w' is longer",
    ],
    "cron_never_fires": ["cron expression '0 0 31 2 *' never fires in the next 5 years"],
    "timezone_folder": ["notifications.yaml:7:13: defaults.timezone: 'Europe' is not an IANA time zone"],
    "timezone_folder_in_example": ["example.data.client.timezone: 'America' is not a 'timezone'"],
    "python_tags": ["tags such as '!!python/object/apply:os.system' are not allowed"],
}


def _limited() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))


def run_validate(cfg: Path) -> tuple[int, str, float, float]:
    """`engine validate` in `cfg`, limited: (exit code, output, seconds, peak RSS in MB)."""
    engine = Path(sys.executable).with_name("engine")
    command = [str(engine)] if engine.exists() else [sys.executable, "-m", "engine.cli.main"]
    out = cfg.parent / "validate.out"
    started = time.monotonic()
    with open(out, "wb") as sink:
        proc = subprocess.Popen([*command, "validate"], cwd=cfg, stdout=sink, stderr=subprocess.STDOUT,
                                preexec_fn=_limited, env={**os.environ, "NO_COLOR": "1"})
        while True:  # os.wait4 gives this child's own peak RSS
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > LIMIT_SECONDS:
                proc.kill()
                proc.wait()
                raise AssertionError(f"engine validate still running after {LIMIT_SECONDS} s")
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, out.read_text(errors="replace"), time.monotonic() - started, usage.ru_maxrss / 1024


def test_every_corpus_case_has_an_expectation() -> None:
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(SAYS)


@pytest.mark.parametrize("case", sorted(SAYS))
def test_validate_refuses_the_hostile_corpus(tmp_path: Path, case: str) -> None:
    cfg = base_copy(tmp_path)
    shutil.copytree(CORPUS / case, cfg, dirs_exist_ok=True, ignore=shutil.ignore_patterns("README.md"))
    if case in BUILT:
        BUILT[case](cfg)
    code, output, seconds, peak_mb = run_validate(cfg)
    print(json.dumps({"case": case, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1)}))
    assert code == 1, output[-3000:]
    assert "Traceback" not in output and "Error:" not in output, output[-3000:]
    for says in SAYS[case]:
        assert says in output, (says, output[-3000:])
    assert output.rstrip().splitlines()[-1].startswith("invalid: ")


# -- D. a costly expression that passes validation cannot stall a live engine ------------------
FOUR_LOOPS = (
    "{% for a in booking.id %}{% for b in booking.id %}{% for c in booking.id %}{% for d in booking.id %}"
    "{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
)  # 256 turns for the example's id, 1.6e9 for 200 characters


def _booking(event_id: str, booking_id: str) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "booking.confirmed",
        "occurred_at": "2026-03-01T10:00:00Z",
        "data": {
            "booking": {"id": booking_id, "start_time": "2099-03-05T10:00:00Z"},
            "client": {"id": f"c_{event_id}", "email": "ada@example.com", "name": "Ada", "timezone": "Europe/Berlin"},
        },
    }


def test_a_costly_expression_cannot_stall_engine_serve(tmp_path: Path) -> None:
    import threading

    import httpx

    from tests.support.courier_standin import CourierStandin
    from tests.support.engine_process import Engine, engine_env

    cfg = base_copy(tmp_path)
    edit(cfg / BOOKING, '      booking_id: "{{ booking.id }}"', f'      booking_id: "{{{{ booking.id }}}}{FOUR_LOOPS}"')
    with CourierStandin(token="tok") as courier:
        engine = Engine(cfg, engine_env(cfg, courier.url)).start()
        base = f"http://127.0.0.1:{engine.port}"
        try:
            answers: dict[str, httpx.Response] = {}

            def post_costly() -> None:
                answers["costly"] = httpx.post(f"{base}/events", json=_booking("evt_costly", "b" * 200), timeout=60)

            costly = threading.Thread(target=post_costly)
            costly.start()
            slowest = 0.0
            started = time.monotonic()
            while time.monotonic() - started < 2:  # the hook stays responsive while the costly event is decided
                for probe in ("healthz", "readyz"):
                    t0 = time.monotonic()
                    assert httpx.get(f"{base}/{probe}", timeout=5).status_code == 200, probe
                    slowest = max(slowest, time.monotonic() - t0)
                time.sleep(0.05)
            t0 = time.monotonic()
            cheap = httpx.post(f"{base}/events", json=_booking("evt_cheap", "bk_2"), timeout=10)
            cheap_seconds = time.monotonic() - t0
            costly.join(30)
            assert not costly.is_alive(), "the costly event was still being decided after 30 s"
            rows = httpx.get(f"{base}/notifications", timeout=10).json()["notifications"]
        finally:
            engine.stop()
    print(json.dumps({"probe_slowest_s": round(slowest, 3), "cheap_event_s": round(cheap_seconds, 3)}))
    assert slowest < 1.5
    assert cheap.status_code == 202 and cheap_seconds < 3
    assert answers["costly"].status_code == 202
    by_event = {row["event_id"]: row for row in rows}
    assert by_event["evt_costly"]["status"] == "skipped"
    assert by_event["evt_costly"]["reason"].startswith("render failed: refused by the sandbox: the expression takes ")
    assert by_event["evt_cheap"]["status"] in ("scheduled", "queued")


@pytest.mark.parametrize("pattern, text", [
    (r"^\S+$", "a\x1cb"), (r"^[a-z]+$", "abc\n"), (r"^\d+$", "\u0663"), (r"^\w+$", "é"), (r"^[\d]+$", "\u0663"),
    (r"[]a]", "]"), (r"[[]", "["), (r"a\Z", "a\n"), (r"(?m)^a$", "a\nb"), (r"\\d", "\\d"), (r"[\w-]+", "-"),
    (r"^[A-Z]{3}$", "USD\n"), (r"^(?:\d+[wdhms])+$", "3d"), (r"\W", "é"), (r"[\D]", "a"), (r"[a&&b]", "&"),
    (r"^\s*$", " \x1c\n"), (r"^(a+)+$", "aaaa"),
])
@pytest.mark.filterwarnings("ignore::FutureWarning")  # Python's re warns of `[[]` and `&&`, which it reads literally
def test_patterns_keep_the_meaning_pythons_re_gave_them(pattern: str, text: str) -> None:
    assert pattern_search(pattern)(text) is bool(re.search(pattern, text))
