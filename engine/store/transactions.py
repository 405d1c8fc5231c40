"""How the store talks to its database: one write path and the reads beside it.

Every write is `Transactions._write(op)`: op(cursor) on the driver's own cursor (the statements
of `statements.py`, no SQLAlchemy Connection set up and torn down around it), in a transaction
of its own, or on SQLite in one shared with the writes other threads hand in at the same moment
(`groupcommit`). Errors of the driver come out as SQLAlchemy's, as every other error of the
store does. Reads run either on a driver cursor (`_read`, the hot paths) or as SQLAlchemy Core
queries on `reader` (a transaction that only reads).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from .codec import Codec
from .groupcommit import GroupCommit
from .statements import Statements

T = TypeVar("T")


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything stored is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Transactions:
    """The database connections of one store, and the transactions its methods run in."""

    def __init__(self, engine: Engine, codec: Codec | None = None):
        self.engine = engine
        self.reader = engine.execution_options(read_only=True)  # for transactions that only read
        # SQLite has one writer at a time: queue this process's writers on a lock instead of
        # letting them spin in SQLite's busy handler (which sleeps up to 100 ms between tries).
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._group = GroupCommit(self._write_lock, self._cursor, self._wrap) if self._write_lock is not None else None
        self._writer: Any = None  # SQLite: the pooled connection the writes run on, kept out of the pool (`_cursor`)
        # An in-memory database lives in its one connection (`db.scratch`): everything runs on it.
        self._memory = self._write_lock is not None and engine.url.database in (None, "", ":memory:")
        self._shared: Any = engine.raw_connection().dbapi_connection if self._memory else None
        self.codec = codec or Codec()
        self.dialect = engine.dialect.name
        self.sql = Statements(self.dialect)

    def _write(self, op: Callable[[Any], T]) -> T:
        """op(cursor) in a write transaction of its own, or on SQLite in one shared with the
        writes other threads hand in at the same moment (`groupcommit`)."""
        if self._group is None:
            with self._cursor() as cur:
                return op(cur)
        return self._group.run(op)

    def _read(self, op: Callable[[Any], T]) -> T:
        """op(cursor) on a pooled connection, for reads on the hot paths (`Statements`)."""
        if self._shared is not None:
            return op(self._shared.cursor())
        conn = self.engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                return op(cur)
            finally:
                cur.close()
                if self.sql.pg:
                    conn.rollback()  # psycopg opened a transaction for the reads: end it
        except self._driver_error as exc:
            # A connection that failed (lost, most often) is dropped: handed back, the pool's
            # reset would fail again and log a traceback for each one.
            with suppress(Exception):
                conn.invalidate()
            raise self._wrap(exc) from exc
        finally:
            conn.close()  # back to the pool (or nothing, when invalidated)

    def _wrap(self, exc: BaseException) -> BaseException:
        """A driver's error as SQLAlchemy's; any other error as it is."""
        if isinstance(exc, self._driver_error):
            return DBAPIError.instance(None, None, exc, self._driver_error)
        return exc

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A write transaction on the driver's cursor, committed on success and rolled back on
        error. On SQLite the caller holds the write lock (`_write` sees to it)."""
        conn = None
        keep = self._write_lock is not None  # SQLite: one writer at a time, so one connection kept for it
        try:
            conn = self._writer if keep and self._writer is not None else self._connection(keep)
            cur = conn.cursor()
            self.sql.begin(cur)
            yield cur
            conn.commit()
        except BaseException as exc:
            if conn is not None:
                conn = self._roll_back(conn, keep)
            wrapped = self._wrap(exc)
            if wrapped is not exc:
                raise wrapped from exc
            raise
        finally:
            if keep:
                self._writer = conn
            elif conn is not None:
                conn.close()  # back to the pool (or dropped, when invalidated)

    @staticmethod
    def _roll_back(conn: Any, keep: bool) -> Any:
        """Roll back after an error; a connection that cannot (it was lost) is dropped: None."""
        try:
            conn.rollback()
            return conn
        except Exception:  # noqa: BLE001 - a lost connection: the first error is the one to tell
            with suppress(Exception):  # already gone
                conn.close() if keep else conn.invalidate()
            return None

    def _connection(self, keep: bool) -> Any:
        """A pooled connection (the pool's errors are the driver's own: `_cursor` wraps them); the one
        to keep is taken out of the pool, and closed when this store goes."""
        if self._shared is not None:
            return self._shared
        conn = self.engine.raw_connection()
        if not keep:
            return conn
        conn.detach()
        raw: Any = conn.dbapi_connection
        weakref.finalize(self, raw.close)
        return raw
