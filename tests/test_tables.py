"""`engine stats` and `engine upcoming` for people and for pipes: at 80 columns nothing is cut (no
id, time or number), piped output is TSV with a header, --tz shows times in that zone with their
offset, and a rate with nothing to measure it on is n/a. Against a real SQLite store."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from engine.cli.main import main
from engine.cli.stats import COLUMNS as STATS_COLUMNS
from engine.cli.stats import summarise, table_rows
from engine.cli.tables import Column, print_rows, record_lines
from tests.runtime.support import booking_confirmed, person

LONG_CLIENT = "usr_c_" + "k" * 90  # ids may be up to 200 characters
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def engine(repo_root: Path, live_runtime: Callable[[Path], Any], monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`engine ARGS` with a store holding two bookings (one for a client with a 96-character id) and
    three welcomes sent through the outbox; stdout is a pipe, as under capsys."""
    rt = live_runtime(repo_root)
    for name in [n for n in os.environ if n.startswith("COURIER_")]:
        monkeypatch.delenv(name)
    rt.emit(booking_confirmed("evt_t1", "bk_t1", NOW + timedelta(hours=20), NOW, client=LONG_CLIENT), now=NOW)
    rt.emit(booking_confirmed("evt_t2", "bk_t2", NOW + timedelta(hours=30), NOW), now=NOW)
    for i in range(3):
        rt.send_now("client_welcome", person(f"usr_w{i}"), example=True, now=NOW)

    def run(*args: str, columns: int = 80) -> tuple[int, str, str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_nothing_cut(out: str, values: list[str], width: int = 80) -> None:
    assert "…" not in out
    assert all(cell_len(line) <= width for line in out.splitlines()), max(out.splitlines(), key=cell_len)
    joined = "".join(line.strip() for line in out.splitlines())
    for value in values:
        assert value in out or value in joined, f"{value!r} is not shown whole"


def test_stats_at_80_columns_with_200_000_sends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    summary = summarise([
        {"notification": "practitioner_weekly_earnings_summary", "variant": "a_longer_variant_name", "status": "sent",
         "delivery_status": "delivered", "count": 200_000},
        {"notification": "practitioner_weekly_earnings_summary", "variant": "a_longer_variant_name", "status": "sent",
         "delivery_status": None, "count": 123_457},
        {"notification": "client_booking_reminder_24h", "variant": None, "status": "failed", "delivery_status": None,
         "count": 200_001},
    ])
    rows = table_rows(summary)
    print_rows(STATS_COLUMNS, rows, "table", "Notifications")
    out = capsys.readouterr().out
    assert_nothing_cut(out, [v for row in rows for v in row if v])
    assert "sent: 323457" in out and "failed: 200001" in out and "delivery: 61.8%" in out
    assert "delivery: n/a" in out  # the reminder: nothing sent, so nothing delivered or not


def test_a_table_that_fits_is_a_table_and_free_text_folds_between_words(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    columns = [Column("when"), Column("count", numeric=True), Column("note", text=True)]
    rows = [["2026-03-09T23:00:00+09:00", "200000", "will be skipped because the recipient opted out of it long ago"]]
    print_rows(columns, rows, "table", "Fits")
    out = capsys.readouterr().out
    assert "┃ when" in out and "2026-03-09T23:00:00+09:00 │ 200000 │" in out
    assert_nothing_cut(out, ["2026-03-09T23:00:00+09:00", "200000"])
    assert " ".join(out.replace("│", " ").split()).count("recipient opted out") == 1


def test_a_pair_wider_than_the_line_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = record_lines([Column("id"), Column("recipient")], ["row", "r" * 150], 80)
    assert lines[0] == "row" and all(cell_len(line) <= 80 for line in lines)
    assert "".join(line.strip() for line in lines[1:]) == "recipient: " + "r" * 150


def test_upcoming_at_80_columns_in_tokyo(engine: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = engine("upcoming", "--within", "48h", "--format", "table", "--tz", "Asia/Tokyo")
    assert code == 0, err
    reminder = (NOW + timedelta(hours=20) - timedelta(minutes=30)).astimezone(
        timezone(timedelta(hours=9))).isoformat(timespec="seconds")
    assert reminder.endswith("+09:00")
    assert_nothing_cut(out, [LONG_CLIENT, reminder, "client_booking_reminder_30m", "CLIENT_BOOKING_REMINDER_30M_V1"])
    assert "(times in Asia/Tokyo)" in out
    assert "Z" not in "".join(line for line in out.splitlines() if "+09:00" in line)


def test_upcoming_piped_is_tsv_with_a_header(engine: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = engine("upcoming", "--within", "48h", "--tz", "America/New_York")
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split("\t") == ["send_at", "notification", "recipient", "template", "status", "note"]
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == 6 for row in rows) and rows
    assert {r[2] for r in rows} >= {LONG_CLIENT, "usr_c_1", "usr_p_1"}
    for row in rows:
        shown = datetime.fromisoformat(row[0])
        assert shown.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))
    code, out, _ = engine("upcoming", "--within", "48h", "--format", "json", "--tz", "America/New_York")
    assert all(json.loads(line)["send_at"].endswith("Z") for line in out.splitlines())  # json stays UTC


def test_stats_says_n_a_without_webhooks(engine: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = engine("stats")
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split("\t") == [c.name for c in STATS_COLUMNS]
    row = next(line.split("\t") for line in lines if line.startswith("client_welcome\t"))
    welcome = dict(zip(header.split("\t"), row, strict=True))
    assert welcome["sent"] == "3" and (welcome["delivery"], welcome["failure"], welcome["open"]) == (
        "n/a",
        "0.0%",
        "n/a",
    )
    code, out, _ = engine("stats", "--format", "table")
    assert_nothing_cut(out, ["client_welcome", "practitioner_booking_notification"])
    assert "delivery: n/a" in out


def test_bad_time_zone_is_refused(
    engine: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = engine("upcoming", "--tz", "Mars/Olympus")
    assert code == 2 and "'Mars/Olympus' is not an IANA time zone" in err
