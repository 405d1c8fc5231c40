"""What `engine preview` shows is what the live engine does: every scenario of tests/scenarios/
runs through the preview (the runtime on a scratch database in memory) and through the live
runtime on a real store (a SQLite file, PostgreSQL), with the real claim and delivery path, the
outbox backend and the same virtual clock; the outcomes must be identical, row for row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.core.events import parse_event
from engine.delivery import OutboxBackend
from engine.preview import FAR_FUTURE, Row, outcomes, replay, run, set_preferences
from engine.rules.timeparse import parse_instant
from engine.scenarios import load_scenario, preferences_of, steps
from tests.test_scenarios import SCENARIOS


def canonical(rows: list[Row]) -> list[str]:
    return sorted(json.dumps(r.as_json(), sort_keys=True, default=str) for r in rows)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_the_live_engine_does_what_the_preview_shows(path: Path, db_url: str, make_runtime: Any, config: Any) -> None:
    scenario = load_scenario(path)
    until = parse_instant(scenario["until"]) if scenario.get("until") else None
    preview = run(config, list(enumerate(scenario["events"], 1)), until, preferences=preferences_of(scenario),
                  steps=steps(scenario))
    rt = make_runtime(db_url, backend=OutboxBackend())
    set_preferences(rt, preferences_of(scenario))
    duplicates = replay(rt, [parse_event(e, rt.config) for e in scenario["events"]], until, steps=steps(scenario))
    live = outcomes(rt, until or FAR_FUTURE)
    assert canonical(live) == canonical(preview.rows)
    assert duplicates == preview.duplicates
    assert live, "a scenario that sends nothing proves nothing"
