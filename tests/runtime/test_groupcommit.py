"""Group commit on a real SQLite file: writes handed in together share a transaction, and each
caller gets its own result or its own error."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from engine.store.groupcommit import GroupCommit


class Db:
    def __init__(self, path: str):
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        self.lock = threading.Lock()
        self.transactions = 0
        self.fail_commit = False

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        self.transactions += 1
        try:
            yield cur
            if self.fail_commit:
                raise sqlite3.OperationalError("disk I/O error")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def keys(self) -> set[str]:
        return {k for k, in self.conn.execute("SELECT k FROM t")}


def insert(key: str) -> Any:
    def op(cur: Any) -> str:
        cur.execute("INSERT INTO t VALUES (?)", (key,))
        return key
    return op


def wrap(exc: BaseException) -> BaseException:
    return RuntimeError(f"wrapped: {exc}") if isinstance(exc, sqlite3.Error) else exc


def queued(db: Db, group: GroupCommit, ops: list[Any]) -> list[Any]:
    """Hand in every op while the write lock is held, so that one writer takes them all."""
    results: list[Any] = [None] * len(ops)

    def call(i: int) -> None:
        try:
            results[i] = group.run(ops[i])
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(ops))]
    with db.lock:
        for t in threads:
            t.start()
        while len(group._queued) < len(ops):
            threading.Event().wait(0.001)
    for t in threads:
        t.join(10)
    return results


@pytest.fixture
def db(tmp_path: Any) -> Db:
    return Db(str(tmp_path / "g.db"))


def test_writes_handed_in_together_share_one_transaction(db: Db) -> None:
    group = GroupCommit(db.lock, db.transaction, wrap)
    assert queued(db, group, [insert(f"k{i}") for i in range(6)]) == [f"k{i}" for i in range(6)]
    assert db.transactions == 1
    assert db.keys() == {f"k{i}" for i in range(6)}


def test_a_failing_write_fails_alone(db: Db) -> None:
    group = GroupCommit(db.lock, db.transaction, wrap)
    db.conn.execute("INSERT INTO t VALUES ('taken')")
    results = queued(db, group, [insert("a"), insert("taken"), insert("b")])
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], RuntimeError) and "UNIQUE" in str(results[1])
    assert db.keys() == {"taken", "a", "b"}


def test_a_failed_commit_is_every_callers_error(db: Db) -> None:
    group = GroupCommit(db.lock, db.transaction, wrap)
    db.fail_commit = True
    results = queued(db, group, [insert("a"), insert("b")])
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert db.keys() == set()


def test_a_write_alone_raises_its_own_error(db: Db) -> None:
    group = GroupCommit(db.lock, db.transaction, wrap)
    with pytest.raises(ValueError, match="bad"):
        group.run(lambda cur: (_ for _ in ()).throw(ValueError("bad")))
    assert group.run(insert("after")) == "after"
    assert db.keys() == {"after"}
