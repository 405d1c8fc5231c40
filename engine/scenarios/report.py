"""The report of a scenario's run, as a person reads it: pass or fail, and on failure what differs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, cast

from .comparing import checked
from .model import EXACT_KEYS, EXPECT_REQUIRED, Expected, Scenario
from .running import Outcome

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_SPECIAL = re.compile(r"^(?:y|n|yes|no|on|off|true|false|null)$", re.IGNORECASE)  # YAML 1.1 would read these


def report(outcome: Outcome) -> str:
    """What a person reads: pass or fail, and on failure what was expected but not produced,
    what was produced but not expected (with lines to paste if that is right), and every send."""
    if outcome.problems:
        where = [f"  {p.file}:{p.line}:{p.col}: {p.message}" for p in outcome.problems]
        return "\n".join([_title("ERROR", outcome.scenario), *where])
    return _title("PASS ", outcome.scenario) if outcome.passed else "\n".join(_failure(outcome))


def headline(description: str) -> str:
    """The first sentence of a description, for the one line a passing scenario gets."""
    first = re.split(r"(?<=[.!?:;])\s", " ".join(description.split()), maxsplit=1)[0]
    return first.rstrip(".:;")


def _title(verdict: str, scenario: Scenario) -> str:
    return f"{verdict} {Path(scenario['path']).stem}: {headline(scenario['description'])}"


def _failure(outcome: Outcome) -> list[str]:
    scenario = outcome.scenario
    return [_title("FAIL ", scenario), f"  {scenario['path']} (match: {scenario['match']}): {scenario['description']}",
            *_missing(outcome), *_unexpected(outcome), *_duplicates(outcome), *_everything(outcome)]


def _missing(outcome: Outcome) -> list[str]:
    items = sorted(outcome.missing, key=lambda m: (m["send_at"], m["notification"]))
    lines = [line for item in items for line in (f"    - {_line(item)}", *_near_misses(item, outcome.produced))]
    return ["  expected, but the rules did not produce:", *lines] if lines else []


def _unexpected(outcome: Outcome) -> list[str]:
    rows = outcome.unexpected
    return ["  produced, but not expected:", *(f"    + {_line(row)}" for row in rows),
            "  if these are right, add them under `expect:`:", *(f"  - {as_yaml(row)}" for row in rows)] if rows else []


def _duplicates(outcome: Outcome) -> list[str]:
    return [f"  duplicate event ids: expected {outcome.scenario['expect_duplicates']}, "
            f"the engine ignored {outcome.duplicates}"] if outcome.duplicates_differ else []


def _near_misses(item: Expected, produced: list[dict[str, Any]]) -> list[str]:
    """The sends of the same notification to the same person, with the fields the item checks."""
    return [f"        the rules produced: {_got(item, row)}" for row in produced
            if (row["notification"], row["recipient"]) == (item["notification"], item["recipient"])]


def _got(item: Expected, row: dict[str, Any]) -> str:
    got = f"{row['send_at']} {row['status']}" + (f" ({row['reason']})" if row["reason"] else "")
    got += "".join(f"  {k}={_shown(row[k])}" for k in EXACT_KEYS[1:] if k in item)
    return got + (f"  data: {({k: row['data'].get(k, '<absent>') for k in item['data']})}" if "data" in item else "")


def _everything(outcome: Outcome) -> list[str]:
    scope = checked(outcome.scenario["expect"], outcome.produced, outcome.scenario["match"])
    kept = {id(row) for row in scope}
    note = "; · = not checked, match: only" if len(scope) < len(outcome.produced) else ""
    return [f"  everything the rules produced (send_at order{note}):",
            *(f"    {' ' if id(row) in kept else '·'} {_line(row)}" for row in outcome.produced)]


def _line(row: Expected | dict[str, Any]) -> str:
    reason = f"  ({row['reason']})" if row.get("reason") else ""
    return (f"{row['send_at']}  {row['notification']:<42} {row['recipient']:<14} "
            f"{row['status']:<9}{reason}{_also_checked(row)}").rstrip()


def _also_checked(row: Expected | dict[str, Any]) -> str:
    """For an expectation: what else it checks, and where it is written; nothing for a send."""
    if "line" not in row:
        return ""
    given = cast(dict[str, Any], row)
    extra = "".join(f"  {k}={_shown(given[k])}" for k in EXACT_KEYS[1:] if k in given)
    return extra + (f"  data⊇{given['data']}" if given.get("data") else "") + f"  [scenario line {given['line']}]"


def _shown(value: Any) -> str:
    """A checked field as the report writes it: a list of channels as in the scenario file."""
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else str(value)


def as_yaml(row: dict[str, Any]) -> str:
    """One send as an `expect:` entry, in the flow style scenario files use."""
    keys = [*EXPECT_REQUIRED, *(["reason"] if row.get("reason") else [])]
    return "{" + ", ".join(f"{k}: {_scalar(row[k])}" for k in keys) + "}"


def _scalar(value: str) -> str:
    return value if _PLAIN.match(value) and not _SPECIAL.match(value) else json.dumps(value, ensure_ascii=False)
