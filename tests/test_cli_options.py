"""The commands' duration and time options (engine/cli/common.py: `Duration`, `Instant`): read with
the engine's own parsers, and a bad value refused before the command does anything, with the
parser's message naming the option, exit code 2."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click
import pytest

from engine.cli.common import Duration, Instant, Span
from engine.cli.main import main

NOT_A_DURATION = "is not a duration (write e.g. 30m, 24h, 3d, 1h30m)"
NOT_AN_INSTANT = "is not an RFC 3339 date-time with an offset (e.g. 2026-03-01T10:00:00Z)"
NEITHER = "is neither a duration (1d, 90m) nor a time with its offset (2026-03-01T10:00:00Z)"

REFUSED = [  # (command line, what stderr's last line says)
    (["stats", "--since", "a while"], f"Invalid value for '--since': 'a while' {NOT_A_DURATION}"),
    (["stats", "--since", "99999d"],
     "Invalid value for '--since': '99999d' is longer than 3650d (ten years), the longest duration allowed"),
    (["upcoming", "--within", "soon"], f"Invalid value for '--within': 'soon' {NOT_A_DURATION}"),
    (["backtest", "candidate", "--since", "1 week"],
     f"Invalid value for '--since': '1 week' {NOT_A_DURATION}"),
    (["preview", "--events", "events.jsonl", "--until", "2026-03-08"],
     f"Invalid value for '--until': '2026-03-08' {NOT_AN_INSTANT}"),
    (["retry", "--since", "yesterday"], f"Invalid value for '--since': 'yesterday' {NEITHER}"),
    (["retry", "--until", "2026-03-01T10:00:00"],
     f"Invalid value for '--until': '2026-03-01T10:00:00' {NEITHER}"),
]


@pytest.mark.parametrize("args, says", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_bad_duration_or_time_is_refused_with_the_parsers_message(
        args: list[str], says: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # nothing here for a command that went on to read it
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"Error: {says}", err
    assert "Traceback" not in err


def test_a_duration_keeps_how_it_was_written() -> None:
    assert Duration().convert("1h30m", None, None) == Span("1h30m", timedelta(minutes=90))


@pytest.mark.parametrize("text, expected", [
    ("2026-03-01T11:00:00+01:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ("2026-03-01T10:00:00.250Z", datetime(2026, 3, 1, 10, 0, 0, 250_000, tzinfo=UTC)),
])
def test_a_time_is_read_in_utc(text: str, expected: datetime) -> None:
    for kind in (Instant(), Instant(ago=True)):
        found = kind.convert(text, None, None)
        assert found == expected and found.utcoffset() == timedelta(0)


def test_a_time_can_be_a_duration_back_from_now_only_where_asked() -> None:
    before = datetime.now(UTC)
    found = Instant(ago=True).convert("90m", None, None)
    assert before - timedelta(minutes=90, seconds=5) <= found <= datetime.now(UTC) - timedelta(minutes=90)
    with pytest.raises(click.BadParameter, match=re.escape(NOT_AN_INSTANT)):
        Instant().convert("90m", None, None)
