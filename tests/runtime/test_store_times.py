"""`Statements.time` writes each UTC time once and keeps it: a time kept is the one a fresh
conversion gives, whatever came before it (the two readings of a wall time when clocks go back,
naive and aware times, both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.store.statements import Statements

BERLIN = ZoneInfo("Europe/Berlin")
TIMES = [
    datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN),  # the clocks go back at 03:00: 02:30 comes twice
    datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN, fold=1),
    datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 30),
    datetime(2026, 10, 25, 0, 30, 0, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_kept_time_is_what_a_fresh_conversion_gives(dialect: str) -> None:
    kept = Statements(dialect)
    for value in TIMES * 2 + [t + timedelta(seconds=s) for t in TIMES for s in range(5000)]:
        assert kept.time(value) == Statements(dialect).time(value), value
    assert kept.time(TIMES[0]) != kept.time(TIMES[1])
