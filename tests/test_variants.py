"""A/B template variants: chosen per recipient, the same every time; validated like any key."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine.cli.main import cli
from engine.clock import utcnow
from engine.diff import compare
from engine.lint import check_all
from engine.preview import run

BASE = Path(__file__).parent / "fixtures" / "bad_configs" / "_valid_base"
VARIANTS = """    template:
      variants:
        control: {key: booking_reminder, weight: 70}
        short: {key: booking_reminder_short, weight: 30}
"""


def config_dir(tmp_path: Path, variants: str = VARIANTS, short_id: str | None = "BOOKING_REMINDER_SHORT_V1") -> Path:
    cfg = tmp_path / "cfg"
    shutil.copytree(BASE, cfg)
    rules = cfg / "rules" / "booking.yaml"
    rules.write_text(rules.read_text().replace("    template: booking_reminder\n", variants))
    mapping = "booking_reminder: BOOKING_REMINDER_V1\n" + (f"booking_reminder_short: {short_id}\n" if short_id else "")
    (cfg / "templates_map" / "production.yaml").write_text(mapping)
    return cfg


def load(cfg: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(cfg)
    return check_all("notifications.yaml")


def booking(i: int) -> dict:
    return {"id": f"e{i}", "type": "booking.confirmed", "occurred_at": "2026-03-01T10:00:00Z",
            "data": {"booking": {"id": f"b{i}", "start_time": "2026-03-05T10:00:00Z"},
                     "client": {"id": f"c{i}", "email": f"c{i}@example.com", "name": "C", "timezone": "UTC"}}}


def test_each_recipient_always_gets_the_same_variant_in_the_declared_proportions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, problems = load(config_dir(tmp_path), monkeypatch)
    assert config is not None, problems
    events = [(i, booking(i)) for i in range(2000)]
    first = {r.send.recipient_id: (r.send.variant, r.send.template) for r in run(config, events).rows}
    again = {r.send.recipient_id: (r.send.variant, r.send.template) for r in run(config, list(reversed(events))).rows}
    assert first == again
    counts = Counter(v for v, _ in first.values())
    assert set(counts) == {"control", "short"}
    assert 0.65 < counts["control"] / 2000 < 0.75
    assert {t for v, t in first.values() if v == "short"} == {"BOOKING_REMINDER_SHORT_V1"}
    assert run(config, events[:1]).rows[0].as_json()["variant"] in ("control", "short")


def test_a_variant_key_missing_from_the_templates_map_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, problems = load(config_dir(tmp_path, short_id=None), monkeypatch)
    assert config is None
    assert [f"{p.file}:{p.line}: {p.message}" for p in problems if p.severity == "error"] == [
        "rules/booking.yaml:51: booking_reminder: unknown template key 'booking_reminder_short': add it to "
        "templates_map/production.yaml; did you mean 'booking_reminder'?",
    ]


def test_weights_adding_up_to_zero_are_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zero = VARIANTS.replace("weight: 70", "weight: 0").replace("weight: 30", "weight: 0")
    config, problems = load(config_dir(tmp_path, zero), monkeypatch)
    assert config is None
    assert any("variant weights add up to 0" in p.message for p in problems)


def test_a_diff_shows_recipients_moved_to_another_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before, _ = load(config_dir(tmp_path / "a"), monkeypatch)
    after, _ = load(config_dir(tmp_path / "b", VARIANTS.replace("weight: 70", "weight: 0")), monkeypatch)
    events = [(i, booking(i)) for i in range(50)]
    rows = [[r.as_json() for r in run(c, events).rows] for c in (before, after)]
    changes = compare("test", rows[0], rows[1])
    moved = {r["recipient"] for r in rows[0] if r["variant"] == "control"}
    assert {c.recipient for c in changes} == moved
    assert all(c.kind == "changed" and any(d.startswith("template") for d in c.details) for c in changes)


def test_engine_stats_counts_by_variant(tmp_path: Path, live_runtime: Any) -> None:
    rt = live_runtime(config_dir(tmp_path))
    now = utcnow()
    for i in range(40):
        event = booking(i)
        event["occurred_at"] = now.isoformat()
        event["data"]["booking"]["start_time"] = (now + timedelta(days=3)).isoformat()
        rt.emit(event, now=now)
    result = CliRunner().invoke(cli, ["stats", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r["scheduled"] for r in json.loads(result.output) if r["notification"] == "booking_reminder"}
    assert set(rows) == {"control", "short"} and sum(rows.values()) == 40
