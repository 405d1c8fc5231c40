"""Database engines and migrations: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from .checkpoint import BACKSTOP_PAGES, CHECKPOINTER

MIGRATIONS = Path(__file__).with_name("migrations")


def connect(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and foreign keys."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite(url, parsed.database)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    event.listen(engine, "connect", _pragmas)
    _begin_explicitly(engine)
    if database and database != ":memory:" and not database.startswith("file:"):
        CHECKPOINTER.watch(engine, database)
    return engine


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself so a transaction holds the write lock from its start.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # checkpoints run on a thread of their own (checkpoint.py); a writer only past this
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cur.close()


def _begin_explicitly(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        # Writers take the lock up front (no deadlocking lock upgrades); readers use a plain
        # BEGIN, which in WAL mode never blocks a writer nor waits for one.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")


_SCRATCH: list[sqlite3.Connection] = []
_SCRATCH_LOCK = threading.Lock()


def scratch() -> Engine:
    """A database in memory with every migration applied, for one run of `engine preview`: one
    connection, shared by everything that uses the engine, and gone with it. The migrated schema is
    made once per process and copied (migrating takes far longer than copying)."""
    with _SCRATCH_LOCK:
        if not _SCRATCH:
            empty = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            upgrade(empty)
            _SCRATCH.append(empty.raw_connection().dbapi_connection)  # type: ignore[arg-type]
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        _SCRATCH[0].backup(db)
    db.execute("PRAGMA foreign_keys=ON")
    engine = create_engine("sqlite://", poolclass=StaticPool, creator=lambda: db)
    _begin_explicitly(engine)
    return engine


def _wal(cur: Any) -> None:
    """Switch to WAL. On a new file, connections doing this at once (processes starting together)
    get "database is locked" straight away, without SQLite's busy handler: wait and try again."""
    deadline = time.monotonic() + 30
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every migration (idempotent); safe to run from several processes at once on PostgreSQL."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7262736)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")




def is_current(engine: Engine) -> bool:
    """Whether the database has every migration applied."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision() == head
