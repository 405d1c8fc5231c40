"""WAL checkpoints on a thread of their own: writers no longer copy the WAL back themselves, and
the process's checkpoint thread does it for every file it has opened."""

from __future__ import annotations

import gc
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from sqlalchemy import text

from engine.store.checkpoint import BACKSTOP_PAGES, Checkpointer
from engine.store.db import connect


def _fill(engine, rows: int = 2000) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)"))
        conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "x" * 200} for _ in range(rows)])


def test_writers_leave_checkpoints_to_the_thread(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_PAGES
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_checkpoint_copies_the_wal_back_once_per_change(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    engine = connect(f"sqlite:///{db}")
    _fill(engine, 1)
    with closing(sqlite3.connect(db)):  # an open connection: closing the last one would checkpoint by itself
        _fill(engine)
        before = db.stat().st_size
        assert os.path.getsize(f"{db}-wal") > 400_000  # the rows are in the WAL, not yet in the file
        checkpointer = Checkpointer(interval=3600)
        checkpointer.watch(engine, str(db))
        assert checkpointer.checkpoint_if_changed(str(db.resolve())) is True
        assert db.stat().st_size > before + 400_000  # copied back into the database file
        assert checkpointer.checkpoint_if_changed(str(db.resolve())) is False  # nothing new since
        _fill(engine, 10)
        assert checkpointer.checkpoint_if_changed(str(db.resolve())) is True
    engine.dispose()


def test_the_process_thread_checkpoints_by_itself(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    engine = connect(f"sqlite:///{db}")
    _fill(engine, 1)
    with closing(sqlite3.connect(db)):
        _fill(engine)
        before = db.stat().st_size
        deadline = time.monotonic() + 10
        while db.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stat().st_size > before, "the checkpoint thread did not copy the WAL back"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2001
    engine.dispose()


def test_a_removed_database_is_not_created_again(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    checkpointer = Checkpointer(interval=3600)
    (tmp_path / "d.db-wal").write_bytes(b"")  # a WAL left behind, its database gone
    assert checkpointer.checkpoint_if_changed(str(db)) is False
    assert not db.exists()


def test_a_file_is_forgotten_with_its_last_engine(tmp_path: Path) -> None:
    db = str((tmp_path / "e.db").resolve())
    checkpointer = Checkpointer(interval=3600)
    engines = [connect(f"sqlite:///{db}") for _ in range(2)]
    for engine in engines:
        checkpointer.watch(engine, db)
    del engine
    assert checkpointer._files[db] == 2
    engines.pop().dispose()
    gc.collect()
    assert checkpointer._files[db] == 1
    engines.pop().dispose()
    gc.collect()
    assert db not in checkpointer._files
