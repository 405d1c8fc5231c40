"""The preview at volume: copies of examples.jsonl with ids of their own get, each, exactly
what one copy gets (nothing leaks between recipients, bookings or conversations), and a long
run reports its progress. Speed is measured in bench/preview.py, not here."""

from __future__ import annotations

from typing import Any

from bench.preview import check_copies, copies
from engine.preview import run

PER_COPY = 38  # events in examples.jsonl
COPIES = 50  # bench/preview.py checks 2 632 copies (100 016 events) the same way


def test_copies_each_get_exactly_what_one_copy_gets(shipped_config: Any) -> None:
    seen: list[tuple[int, int]] = []
    result = run(shipped_config, list(enumerate(copies(COPIES * PER_COPY), 1)), progress=lambda d, t: seen.append((d, t)))
    assert not result.rejected and not result.duplicates
    one = run(shipped_config, list(enumerate(copies(PER_COPY), 1)))
    assert len(result.rows) == COPIES * len(one.rows) and len(one.rows) > 50
    assert check_copies([r.as_json() for r in result.rows], COPIES)
    assert seen[-1] == (COPIES * PER_COPY, COPIES * PER_COPY) and len(seen) > 5  # progress came along the way


def test_a_copy_that_differs_is_caught(shipped_config: Any) -> None:
    rows = [r.as_json() for r in run(shipped_config, list(enumerate(copies(2 * PER_COPY), 1))).rows]
    rows[-1] = {**rows[-1], "status": "skipped" if rows[-1]["status"] != "skipped" else "sent"}
    assert not check_copies(rows, 2)
