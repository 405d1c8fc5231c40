"""The preview at volume: copies of examples.jsonl with ids of their own get, each, exactly
what one copy gets (nothing leaks between recipients, bookings or conversations), and a long
run reports its progress. Speed is measured in bench/preview.py, not here."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from bench.preview import check_copies, copies
from engine.preview import run

PER_COPY = 38  # events in examples.jsonl
COPIES = 50  # bench/preview.py checks 2 632 copies (100 016 events) the same way


def test_copies_each_get_exactly_what_one_copy_gets(shipped_config: Any) -> None:
    seen: list[tuple[int, int]] = []
    result = run(
        shipped_config, list(enumerate(copies(COPIES * PER_COPY), 1)), progress=lambda d, t: seen.append((d, t))
    )
    assert not result.rejected and not result.duplicates
    one = run(shipped_config, list(enumerate(copies(PER_COPY), 1)))
    assert len(result.rows) == COPIES * len(one.rows) and len(one.rows) > 50
    assert check_copies([r.as_json() for r in result.rows], COPIES)
    assert seen[-1] == (COPIES * PER_COPY, COPIES * PER_COPY) and len(seen) > 5  # progress came along the way


def test_a_copy_that_differs_is_caught(shipped_config: Any) -> None:
    rows = [r.as_json() for r in run(shipped_config, list(enumerate(copies(2 * PER_COPY), 1))).rows]
    rows[-1] = {**rows[-1], "status": "skipped" if rows[-1]["status"] != "skipped" else "sent"}
    assert not check_copies(rows, 2)


def test_every_send_due_before_an_event_goes_out_first_however_many(shipped_config: Any) -> None:
    """The sweep hands out sends a batch at a time: the preview sweeps until none is due before
    the next event, so 1 200 reminders due at one instant all go out before a cancel a second later."""
    from datetime import datetime, timedelta

    from tests.runtime.support import booking_cancelled, booking_confirmed

    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    start = t0 + timedelta(days=3)
    due = start - timedelta(hours=24)
    events = [booking_confirmed(f"c{i}", f"bk{i}", start, t0, client=f"usr_c_{i}", practitioner=f"usr_p_{i}")
              for i in range(600)]
    events.append(booking_cancelled("x599", "bk599", start, due + timedelta(seconds=1), client="usr_c_599",
                                    practitioner="usr_p_599"))  # the booking whose reminders were scheduled last
    rows = [r.as_json() for r in run(shipped_config, list(enumerate(events, 1))).rows]
    day_before = [
        r for r in rows if r["notification"] in ("client_booking_reminder_24h", "practitioner_session_reminder_24h")
    ]
    assert len(day_before) == 1200 and {r["status"] for r in day_before} == {"sent"}
    later = [r for r in rows if r["key"] == "bk599" and r["notification"].endswith("_30m")]
    assert len(later) == 2 and {r["status"] for r in later} == {"cancelled"}
