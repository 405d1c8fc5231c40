"""`engine backtest`: recorded events replayed through a candidate configuration, sending nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli.main import cli
from engine.clock import utcnow
from engine.store.tables import notifications
from tests.test_diff import copy, to_48h


def test_backtest_reports_what_a_candidate_would_have_sent_differently(tmp_path: Path, live_runtime: Any) -> None:
    live, candidate = copy(tmp_path / "live"), copy(tmp_path / "candidate")
    to_48h(candidate)
    rt = live_runtime(live)
    now = utcnow()
    start = now + timedelta(days=5)
    person = lambda pid: {"id": pid, "email": f"{pid}@example.com", "name": pid, "timezone": "Europe/Paris"}  # noqa: E731
    rt.emit(
        {
            "id": "evt_bt",
            "type": "booking.confirmed",
            "occurred_at": (now - timedelta(hours=1)).isoformat(),
            "data": {
                "booking": {
                    "id": "bk_bt",
                    "start_time": start.isoformat(),
                    "end_time": (start + timedelta(hours=1)).isoformat(),
                    "service": {"id": "s", "name": "Yoga"},
                },
                "client": person("c_bt"),
                "practitioner": person("p_bt"),
            },
        },
        now=now,
    )
    with rt.store.engine.connect() as conn:
        before = conn.scalar(select(func.count()).select_from(notifications))
    result = CliRunner().invoke(cli, ["backtest", str(candidate), "--since", "7d", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["events"] == 1
    assert {(c["kind"], c["notification"]) for c in report["changes"]} == {
        ("moved", "client_booking_reminder_24h"), ("moved", "practitioner_session_reminder_24h")}
    with rt.store.engine.connect() as conn:  # nothing written, nothing sent
        assert conn.scalar(select(func.count()).select_from(notifications)) == before
    markdown = CliRunner().invoke(cli, ["backtest", str(candidate), "--since", "7d"]).output
    assert markdown.startswith("1 recorded event(s) since 7d ago replayed.")
    assert "| moved | `client_booking_reminder_24h` |" in markdown
