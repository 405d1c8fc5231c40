"""A batch's buckets are found by a range of the digests' key: exactly the buckets that start
with the batch's prefix, on both databases (SQLite compares bytes, PostgreSQL's range is in the
"C" collation), and the one still collecting whose send time is after the item's, earliest first."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.store.db import connect, upgrade
from engine.store.statements import Statements, prefix_end

from .support import NOW, message_sent

TEXTS = ["n:u:ab@", "n:u:ab@2026", "n:u:ab", "n:u:abc@", "n:u:ab?", "n:u:aB@1", "N:u:ab@1", "n:u:ab@\U0010ffff",
         "n:u:ab@\U0010ffffx", "n:u:ab@\ud7ff", "n:u:ab@é", "n:u:ab@~", "n:u:ab\x00", "n:u:ab@\x00"]
PREFIXES = ["n:u:ab@", "n:u:ab", "n:u:ab@\U0010ffff", "n:u:ab@\ud7ff", "a"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_range_holds_exactly_the_texts_that_start_with_the_prefix(prefix: str) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO t VALUES (?)", [(t,) for t in TEXTS])
    found = {v for (v,) in conn.execute("SELECT v FROM t WHERE v >= ? AND v < ?", (prefix, prefix_end(prefix)))}
    assert found == {t for t in TEXTS if t.startswith(prefix)}


def test_a_batch_is_found_by_its_prefix_only(db_url: str) -> None:
    engine = connect(db_url)
    upgrade(engine)
    sql = Statements(engine.dialect.name)
    rows = [("n:u:ab@1", "collecting", 2), ("n:u:ab@2", "collecting", 1), ("n:u:ab@0", "closed", 0),
            ("n:u:ab@3", "collecting", -1), ("n:u:aB@4", "collecting", 0), ("n:u:abc@5", "collecting", 0),
            ("n:u:ab", "collecting", 0)]
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.executemany(sql.open_digest, [(b, "n", "u", "{}", sql.time(NOW), sql.time(NOW),
                                           sql.time(NOW + timedelta(hours=h))) for b, _, h in rows])
        cur.executemany(sql.native("UPDATE digests SET status = ? WHERE bucket = ?"), [(s, b) for b, s, _ in rows])

        def found(prefix: str, notification: str = "n") -> str | None:
            cur.execute(sql.collecting_batch, sql.batch_binds(notification, "u", prefix, NOW - timedelta(minutes=1)))
            row = cur.fetchone()
            return row[0] if row else None

        assert found("n:u:ab@") == "n:u:ab@2"  # the earliest still collecting and not yet due at the item's time
        assert found("n:u:aB@") == "n:u:aB@4"
        assert found("n:u:abc@") == "n:u:abc@5"
        assert found("n:u:ab@", notification="m") is None
        assert found("n:u:x@") is None
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()


def _digest_rows(rt: Any) -> tuple[list[Any], list[Any]]:
    with rt.store.engine.connect() as conn:
        digests = conn.execute(text("SELECT bucket, status FROM digests ORDER BY bucket"))
        items = conn.execute(text("SELECT bucket, event_id, item FROM digest_items ORDER BY bucket, event_id"))
        return [tuple(r) for r in digests], [tuple(r) for r in items]


def test_one_ingest_of_interleaved_batch_items_writes_what_one_by_one_writes(
        db_url: str, tmp_path: Path, make_runtime: Any) -> None:
    # Items of two conversations, a second recipient and messages after their batch's window:
    # the second item of a key looks for its batch after the items before it are written.
    plan = [("a", 0, "usr_c_1"), ("b", 1, "usr_c_1"), ("a", 2, "usr_c_1"), ("a", 3, "usr_c_2"),
            ("b", 4, "usr_c_1"), ("a", 12, "usr_c_1"), ("b", 12, "usr_c_1"), ("a", 13, "usr_c_1")]
    raw = [message_sent(f"evt_{i}", f"msg_{i}", f"conv_{c}", NOW + timedelta(minutes=m), to=to)
           for i, (c, m, to) in enumerate(plan)]
    together, alone = make_runtime(db_url), make_runtime(f"sqlite:///{tmp_path / 'alone.db'}")
    together.ingest(raw, now=NOW)
    for event in raw:
        alone.ingest([event], now=NOW)
    digests, items = _digest_rows(together)
    assert (digests, items) == _digest_rows(alone)
    assert len(digests) == 5 and len(items) == 8


def test_a_batch_lookup_reads_the_recipients_digests_not_every_one_collecting(db_url: str) -> None:
    """With thousands of digests collecting for other recipients, the lookup of one recipient's
    batch is a search of an index by recipient or by key range, never a scan of the table or of
    the due index's collecting rows."""
    engine = connect(db_url)
    upgrade(engine)
    sql = Statements(engine.dialect.name)
    conn = engine.raw_connection()
    try:
        cur = conn.cursor()
        cur.executemany(sql.open_digest, [(f"n:usr_{i}:conv_{i}@1", "n", f"usr_{i}", "{}", sql.time(NOW),
                                           sql.time(NOW), sql.time(NOW + timedelta(minutes=10))) for i in range(3000)])
        cur.execute("ANALYZE")
        explain = "EXPLAIN " if sql.pg else "EXPLAIN QUERY PLAN "
        cur.execute(explain + sql.collecting_batch, sql.batch_binds("n", "usr_7", "n:usr_7:conv_7@", NOW))
        plan = " ".join(str(part) for row in cur.fetchall() for part in row)
        assert "ix_digests_due" not in plan and "Seq Scan" not in plan and "SCAN digests" not in plan, plan
        assert "ix_digests_recipient" in plan or "sqlite_autoindex_digests" in plan, plan
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()
