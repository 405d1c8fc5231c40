"""The checks that catch rules which pass their shape but break at run time, each with a
bad-configuration fixture: an optional field read without a guard, a required value that can be
null, a sandbox escape behind a branch no example takes, a cancel key that can never match,
problems hidden behind others, and messages that say what to write instead.

Each fixture under tests/fixtures/bad_configs/ with an `expected.txt` holds the exact lines
`engine validate` prints, run with the fixture as its working directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.lint import check_all
from engine.rules.timeparse import check_cron

FIXTURES = Path(__file__).parent / "fixtures" / "bad_configs"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "expected.txt").exists())
BOOKING = "rules/booking.yaml"


def validate(case_dir: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.chdir(case_dir)
    result = CliRunner().invoke(cli, ["validate", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def expected(case: str) -> list[str]:
    return (FIXTURES / case / "expected.txt").read_text().splitlines()


def test_there_is_a_fixture_for_each_check() -> None:
    assert set(CASES) >= {
        "optional_field_unguarded", "optional_field_required", "optional_field_in_condition",
        "required_value_can_be_null", "sandbox_escape_in_branch", "cancel_key_of_another_thing",
        "example_hidden_behind_template_key", "example_hidden_behind_shape_error", "near_misses",
        "cron_with_seconds", "tab_in_indentation", "render_refused_at_its_line",
    }


@pytest.mark.parametrize("case", CASES)
def test_each_fixture_prints_its_expected_lines(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / case, monkeypatch)
    lines = expected(case)
    assert lines, "an expected.txt must name at least one problem"
    assert result.stdout.splitlines() == lines
    errors = sum(1 for line in lines if ": warning: " not in line)
    assert result.exit_code == (1 if errors else 0)
    assert result.stderr == f"{'invalid' if errors else 'valid'}: {errors} error(s), {len(lines) - errors} warning(s)\n"


def test_an_unguarded_optional_field_in_data_is_a_warning_that_strict_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    result = validate(FIXTURES / "optional_field_unguarded", monkeypatch, "--strict")
    assert result.exit_code == 1
    assert "write {{ booking.meeting_url | default(none) }}" in result.stdout


def copy_of(case: str, tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / case, tmp_path / case)
    return tmp_path / case


def problems_after(cfg: Path, old: str, new: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    rules = cfg / BOOKING
    text = rules.read_text()
    assert text.count(old) == 1, old
    rules.write_text(text.replace(old, new))
    monkeypatch.chdir(cfg)
    _, problems = check_all("notifications.yaml")
    return [f"{p.line}:{p.col}: {p.severity}: {p.message}" for p in problems]


@pytest.mark.parametrize("guarded", [
    "{{ booking.meeting_url | default(none) }}",
    "{{ booking.meeting_url | d('') }}",
    "{{ booking.meeting_url if booking.meeting_url is defined else none }}",
    "{{ 'online' if booking.meeting_url is not defined else booking.meeting_url }}",
    "{{ booking.meeting_url is defined and booking.meeting_url.startswith('https') }}",
    "{{ booking.meeting_url is not defined or booking.meeting_url }}",
    "{% if 'meeting_url' in booking %}{{ booking.meeting_url }}{% endif %}",
    "{% if booking.meeting_url is defined %}{{ booking.meeting_url | upper }}{% else %}-{% endif %}",
])
def test_a_guarded_read_of_an_optional_field_passes(
    guarded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = copy_of("optional_field_unguarded", tmp_path)
    assert problems_after(cfg, '"{{ booking.meeting_url }}"', repr(guarded).replace("\\'", "''"), monkeypatch) == []


@pytest.mark.parametrize("unguarded", [
    "{{ booking.meeting_url | upper }}",  # upper reads it first: StrictUndefined fails
    "{{ booking.meeting_url if booking.meeting_url else none }}",  # a truth test of a missing field fails too
    "{{ (booking.meeting_url | upper) | default('') }}",
    "{% if booking.meeting_url is defined %}x{% endif %}{{ booking.meeting_url }}",  # outside the guarded branch
    "{{ booking.meeting_url is defined or booking.meeting_url }}",
])
def test_an_unguarded_read_of_an_optional_field_warns(
    unguarded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = copy_of("optional_field_unguarded", tmp_path)
    found = problems_after(cfg, '"{{ booking.meeting_url }}"', repr(unguarded).replace("\\'", "''"), monkeypatch)
    assert len(found) == 1 and found[0].startswith("55:20: warning: ") and "does not require" in found[0], found


def test_an_optional_object_is_optional_at_every_depth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # booking.venue is optional; venue.city is required inside it: reading venue.city still needs a guard
    cfg = copy_of("optional_field_unguarded", tmp_path)
    (cfg / BOOKING).write_text((cfg / BOOKING).read_text().replace(
        "            meeting_url: {type: string, format: uri}\n",
        "            meeting_url: {type: string, format: uri}\n"
        "            venue: {type: object, required: [city], properties: {city: {type: string}}}\n"))
    found = problems_after(cfg, '"{{ booking.meeting_url }}"', '"{{ booking.venue.city }}"', monkeypatch)
    # The example has no venue: the render failure this warns of happens to it, at the same line.
    assert found == [
        "56:20: error: booking_reminder: data.meeting_url: with its example event (production): render "
        "failed: 'dict object' has no attribute 'venue'",
        "56:20: warning: booking_reminder: expression '{{ booking.venue.city }}' reads 'booking.venue', which "
        "the event schema does not require (it is not in `required`): a send whose event lacks it is "
        "skipped (render failed); write `booking.venue | default(none)` there, or test "
        "`booking.venue is defined` first",
    ]
    assert problems_after(cfg, '"{{ booking.venue.city }}"',
                          '"{{ booking.venue.city if booking.venue is defined else none }}"', monkeypatch) == []


def test_the_suggested_fix_of_a_required_optional_field_is_then_refused_as_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requires + default(none) is no fix: the template would get null
    cfg = copy_of("optional_field_required", tmp_path)
    found = problems_after(
        cfg, '"{{ booking.meeting_url }}"', '"{{ booking.meeting_url | default(none) }}"', monkeypatch
    )
    assert found == [
        "55:20: error: booking_reminder: the template requires 'meeting_url', but its value "
        "'{{ booking.meeting_url | default(none) }}' can render null (`| default(none)` gives null when the "
        "field is missing): give a value the template can use (e.g. `| default('')`), or take "
        "'meeting_url' out of `requires`"
    ]
    assert (
        problems_after(cfg, "| default(none) }}", "| default('https://estuary.app/help/online') }}", monkeypatch) == []
    )


def test_a_required_value_the_schema_lets_be_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = copy_of("required_value_can_be_null", tmp_path)
    (cfg / BOOKING).write_text(
        (cfg / BOOKING)
        .read_text()
        .replace("          required: [id, start_time]\n", "          required: [id, start_time, note]\n")
        .replace("            note: {type: string}\n", "            note: {type: [string, 'null']}\n")
        .replace(
            'start_time: "2026-03-05T10:00:00Z"}\n        client',
            'start_time: "2026-03-05T10:00:00Z", note: hi}\n        client',
        )
    )
    found = problems_after(cfg, "{{ booking.note | default(none) }}", "{{ booking.note }}", monkeypatch)
    assert len(found) == 1 and "the event schema lets 'booking.note' be null" in found[0], found


def test_a_cancel_key_on_the_same_kind_of_thing_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two people (the same definition) may be one person: user.id against practitioner.id is fine.
    cfg = copy_of("cancel_key_of_another_thing", tmp_path)
    assert problems_after(cfg, "    key: booking.id\n", "    key: client.id\n", monkeypatch) == []


def test_a_reschedule_key_of_another_thing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = copy_of("cancel_key_of_another_thing", tmp_path)
    found = problems_after(cfg, "    cancel_on:\n", "    reschedule_on:\n", monkeypatch)
    assert any(p.startswith("47:14: error: booking_reminder: reschedule_on key 'client.id'") for p in found), found


def test_a_file_that_cannot_be_read_does_not_stop_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = copy_of("example_hidden_behind_shape_error", tmp_path)
    (cfg / "rules" / "thanks.yaml").write_bytes(b"notifications: \xff\n")
    monkeypatch.chdir(cfg)
    _, problems = check_all("notifications.yaml")
    assert [f"{p.file}:{p.line}: {p.message}" for p in problems] == [
        "rules/booking.yaml:55: booking_reminder: the example event is invalid: example.data.client.email: "
        "'not-an-email' is not a 'email'",
        "rules/thanks.yaml:1: not UTF-8 text (byte 15)",
    ]


@pytest.mark.parametrize("cron", ["0 0 9 * * MON", "0 9 * * MON 2026", "9 * *"])
def test_a_cron_of_other_than_five_fields_names_the_five(cron: str) -> None:
    with pytest.raises(
        ValueError, match="write the 5-field form: minute hour day month weekday.*seconds are not supported"
    ):
        check_cron(cron)


def test_the_shipped_configuration_has_no_problem(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo_root)
    config, problems = check_all("notifications.yaml")
    assert config is not None
    assert [f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems] == []
