"""The deliver task when the store fails under it: one line when it starts failing and one when it
recovers, never Huey's traceback per task (a read-only database during a burst of sends)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from huey import SqliteHuey
from sqlalchemy.exc import OperationalError

from engine.queue import _register


class StoreFailing:
    """A runtime whose store fails its first `failures` deliveries, as a read-only file does."""

    def __init__(self, failures: int):
        self.failures = failures

    def deliver(self, notification_id: int) -> str:
        if self.failures:
            self.failures -= 1
            raise OperationalError("UPDATE notifications ...", {}, sqlite3.OperationalError("disk I/O error"))
        return "sent"


def test_a_store_failing_under_deliveries_is_said_once_per_state_change(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    huey = SqliteHuey("deliveries", filename=str(tmp_path / "queue.db"))
    _register(huey, StoreFailing(3))
    with caplog.at_level(logging.INFO):
        done = [huey.deliver_task.call_local(i) for i in range(5)]
    assert done == ["store failing"] * 3 + ["sent"] * 2
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    failing = "deliveries failing: OperationalError: (sqlite3.OperationalError) disk I/O error (1 time)"
    assert said == [("ERROR", failing), ("WARNING", "deliveries recovered after 3 failures")], said
    assert not any(r.exc_info for r in caplog.records)
