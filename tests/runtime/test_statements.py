"""The hot-path statements write exactly what the SQLAlchemy Core tables write.

SQLite compares times as text: a time bound by `Statements.time` must be the very text that
`tables.UTCDateTime` stores, or a due-row query would miss rows written the other way.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import sqlite

from engine.store.db import connect, upgrade
from engine.store.statements import Statements, like_prefix
from engine.store.tables import UTCDateTime, events, history, notifications

from .support import NOW

TIMES = [NOW, NOW.replace(microsecond=0), datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-7))),
         datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5)]


@pytest.mark.parametrize("value", TIMES)
def test_a_sqlite_time_is_the_text_the_core_type_stores(value: datetime) -> None:
    dialect = sqlite.dialect()
    impl = UTCDateTime().dialect_impl(dialect)
    core = impl.bind_processor(dialect)(impl.process_bind_param(value, dialect))
    assert Statements("sqlite").time(value) == core


@pytest.mark.parametrize("prefix, matches, misses", [
    ("cancelled by ", ["cancelled by booking.cancelled", "cancelled by "], ["rescheduled by x", "cancelled b"]),
    ("50%_a/b", ["50%_a/b", "50%_a/bc"], ["50x_a/b", "50%ya/b", "500_a/b"]),
])
def test_like_prefix_matches_only_the_prefix(prefix: str, matches: list[str], misses: list[str]) -> None:
    conn = sqlite3.connect(":memory:")
    for value in matches + misses:
        found = conn.execute("SELECT ? LIKE ? ESCAPE '/'", (value, like_prefix(prefix))).fetchone()[0]
        assert bool(found) == (value in matches), value


def test_migration_0003_keeps_one_creation_entry(db_url: str) -> None:
    # A database written before 0003 holds a creation entry in the history table; after the
    # upgrade, Store.history shows each state once, as for rows written since.
    from alembic import command

    from engine.store.db import alembic_config
    from engine.store.repository import Store

    engine = connect(db_url)
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0002")
    created, claimed = NOW, NOW + timedelta(hours=1)
    row = {"notification": "n", "recipient_id": "usr_1", "category": "c", "channels": ["email"], "idempotency_key": "k",
           "send_at": created, "status": "sent", "attempts": 1, "created_at": created, "updated_at": claimed}
    with engine.begin() as conn:
        sent_id = conn.execute(notifications.insert().values(**row).returning(notifications.c.id)).scalar_one()
        skipped_id = conn.execute(
            notifications.insert()
            .values(**{**row, "idempotency_key": "k2", "status": "skipped", "reason": "quiet"})
            .returning(notifications.c.id)
        ).scalar_one()
        conn.execute(history.insert(), [
            {"notification_id": sent_id, "status": "scheduled", "reason": None, "at": created},
            {"notification_id": skipped_id, "status": "skipped", "reason": "quiet", "at": created},
            {"notification_id": sent_id, "status": "sending", "reason": "attempt 1", "at": claimed},
            {"notification_id": sent_id, "status": "sent", "reason": None, "at": claimed},
        ])
    upgrade(engine)
    store = Store(engine)
    assert [(h["status"], h["reason"]) for h in store.history(sent_id)] == [
        ("scheduled", None),
        ("sending", "attempt 1"),
        ("sent", None),
    ]
    assert [(h["status"], h["reason"], h["at"]) for h in store.history(skipped_id)] == [("skipped", "quiet", created)]
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM notification_history")) == 2
    engine.dispose()


def test_rows_written_by_statements_read_back_through_the_core_tables(tmp_path: Any) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'x.db'}")
    upgrade(engine)
    sql = Statements("sqlite")
    with engine.begin() as conn:
        cur = sql.cursor(conn)
        cur.execute(sql.insert_events(1), ("evt_1", "t", sql.time(TIMES[2]), sql.time(NOW), "{}"))
        assert cur.fetchall() == [("evt_1",)]
        cur.execute(sql.insert_events(1), ("evt_1", "t", sql.time(TIMES[2]), sql.time(NOW), "{}"))
        assert cur.fetchall() == []  # a stored id is a duplicate
    with engine.connect() as conn:
        assert (
            conn.execute(select(events.c.occurred_at).where(events.c.occurred_at == TIMES[2])).scalar_one() == TIMES[2]
        )
    engine.dispose()


def test_migration_0004_keeps_one_live_row_of_a_key_the_sent_one_first(db_url: str) -> None:
    from alembic import command

    from engine.store.db import alembic_config
    from engine.store.repository import Store

    engine = connect(db_url)
    command.upgrade(alembic_config(engine), "0003")
    row = {"notification": "n", "recipient_id": "usr_1", "category": "c", "channels": ["email"], "idempotency_key": "k",
           "send_at": NOW, "status": "scheduled", "attempts": 0, "created_at": NOW, "updated_at": NOW}
    with engine.begin() as conn:
        ids = [
            conn.execute(notifications.insert().values(**{**row, **extra}).returning(notifications.c.id)).scalar_one()
            for extra in (
                {},
                {"status": "sent"},
                {"status": "cancelled"},
                {},
                {"idempotency_key": "other"},
                {"idempotency_key": "k2"},
                {"idempotency_key": "k2", "status": "sending"},
                {"idempotency_key": "k3"},
                {"idempotency_key": "k3", "status": "queued"},
            )
        ]
    upgrade(engine)
    statuses = {r["id"]: (r["status"], r["reason"]) for r in Store(engine).notifications(limit=20)}
    duplicate = ("skipped", "a duplicate of another send with the same idempotency key")
    assert [statuses[i] for i in ids] == [
        duplicate, ("sent", None), ("cancelled", None), duplicate, ("scheduled", None),  # the sent row is kept
        duplicate, ("sending", None),  # then the one being sent
        ("scheduled", None), duplicate,  # else the oldest
    ]
    engine.dispose()


@pytest.mark.parametrize("number", [10**29, -(10**25), 2**64, -(2**63) - 1, 2**63, 12345678901234567890123])
def test_integers_beyond_64_bits_stay_exact(number: int) -> None:
    # orjson reads such an integer as a float; the codec and the hook must not.
    from engine.http.body import parse_json
    from engine.jsontext import from_json
    from engine.store.codec import Codec

    body = json.dumps({"data": {"order": number, "note": "x"}})
    assert parse_json(body.encode())["data"]["order"] == number
    assert Codec().loads(Codec().dumps({"order": number})) == {"order": number}
    assert from_json(body) == from_json(body.encode()) == {"data": {"order": number, "note": "x"}}
    assert type(from_json(body)["data"]["order"]) is int


@pytest.mark.parametrize("pairs", [1, 4])
def test_ended_by_cancel_searches_the_match_index(tmp_path: Any, pairs: int) -> None:
    # An OR of the pairs had SQLite's planner scan every cancelled row through the due index.
    engine = connect(f"sqlite:///{tmp_path / 'plan.db'}")
    upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(tmp_path / "plan.db")
    plan = conn.execute(
        "EXPLAIN QUERY PLAN " + Statements("sqlite").ended_by_cancel(pairs), ["rule", "bk_1", "x%", "x%"] * pairs
    ).fetchall()
    conn.close()
    searches = [row[3] for row in plan if row[3].startswith(("SEARCH", "SCAN"))]
    assert len(searches) == pairs and all("USING INDEX ix_notifications_match" in s for s in searches), plan
