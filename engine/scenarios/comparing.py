"""Comparing what a scenario expects with what the rules sent: each expectation paired with one send."""

from __future__ import annotations

from typing import Any, cast

from .model import EXACT_KEYS, EXPECT_REQUIRED, Expected, Match

Row = dict[str, Any]


def checked(expected: list[Expected], produced: list[Row], match: Match) -> list[Row]:
    """The sends the expectations speak for: all of them, or those of the notifications named."""
    if match == "all":
        return list(produced)
    named = {e["notification"] for e in expected}
    return [row for row in produced if row["notification"] in named]


def matches(expected: Expected, row: Row) -> bool:
    given = cast(dict[str, Any], expected)
    if any(given[k] != row[k] for k in (*EXPECT_REQUIRED, *(k for k in EXACT_KEYS if k in given))):
        return False
    return all(name in row["data"] and row["data"][name] == value for name, value in expected.get("data", {}).items())


def compare(expected: list[Expected], produced: list[Row], match: Match = "all") -> tuple[list[Expected], list[Row]]:
    """(expected but not produced, produced but not expected), pairing each expectation with one send.
    A maximum matching, so a loose expectation (no reason, no data) never takes the one send a
    stricter one needed while another would have done."""
    rows = checked(expected, produced, match)
    partner = _pairing(expected, rows)
    paired = set(partner.values())
    return [e for i, e in enumerate(expected) if i not in paired], [r for i, r in enumerate(rows) if i not in partner]


def _pairing(expected: list[Expected], rows: list[Row]) -> dict[int, int]:
    """Row index -> expectation index, grown one augmenting path per expectation (Kuhn's algorithm)."""
    partner: dict[int, int] = {}
    for e in range(len(expected)):
        _augment(expected, rows, partner, e, set())
    return partner


def _augment(expected: list[Expected], rows: list[Row], partner: dict[int, int], e: int, seen: set[int]) -> bool:
    for r in (r for r, row in enumerate(rows) if r not in seen and matches(expected[e], row)):
        seen.add(r)
        if r not in partner or _augment(expected, rows, partner, partner[r], seen):
            partner[r] = e
            return True
    return False
