"""Group commit: writes that threads hand in at the same moment share one transaction.

SQLite has one writer at a time, and on the hot paths a commit (with the WAL checkpoints it
sets off) costs more than the statements of a single write. A thread with a write to make
queues it and takes the write lock; whoever gets the lock first runs every write queued by
then, in order, in one transaction, and the threads whose writes it ran find them done. Each
write runs inside a savepoint: one that fails is rolled back alone and its own caller gets the
error, while the others commit. A commit that fails is every caller's error.

Writes are serialized by the lock exactly as before; only the transactions are fewer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Write(Generic[T]):
    def __init__(self, op: Callable[[Any], T]):
        self.op = op
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """`run(op)` calls op(cursor) in a write transaction shared with the writes queued with it.

    `transaction()` opens a write transaction on a cursor (the caller already holding `lock`);
    `wrap(exc)` turns a driver's error into the one callers expect."""

    def __init__(self, lock: Any, transaction: Callable[[], AbstractContextManager[Any]],
                 wrap: Callable[[BaseException], BaseException]):
        self.lock, self.transaction, self.wrap = lock, transaction, wrap
        self._queued: list[_Write[Any]] = []
        self._queue_lock = threading.Lock()

    def run(self, op: Callable[[Any], T]) -> T:
        write: _Write[T] = _Write(op)
        with self._queue_lock:
            self._queued.append(write)
        with self.lock:
            if not write.done:
                with self._queue_lock:
                    group, self._queued = self._queued, []
                self._commit(group)
        return write.outcome()

    def _commit(self, group: list[_Write[Any]]) -> None:
        try:
            with self.transaction() as cur:
                results = each_in_savepoint(cur, [write.op for write in group], self.wrap)
        except BaseException as exc:  # nothing of the group was written
            for write in group:
                write.error, write.done = exc, True
            if not isinstance(exc, Exception):
                raise
            return
        for write, (result, error) in zip(group, results, strict=True):
            write.result, write.error, write.done = result, error, True


def attempt(cur: Any, op: Callable[[Any], T]) -> tuple[bool, T | None]:
    """op(cur) in a savepoint within the open transaction: (True, its result), or (False, None)
    when it failed and what it wrote was rolled back. An error after which the database cannot
    roll back to the savepoint (it ended the transaction itself) is raised."""
    cur.execute("SAVEPOINT attempted_write")
    try:
        result = op(cur)
    except Exception as exc:
        try:
            cur.execute("ROLLBACK TO attempted_write")
        except Exception:  # the database ended the transaction itself
            raise exc from None
        cur.execute("RELEASE attempted_write")
        return False, None
    cur.execute("RELEASE attempted_write")
    return True, result


def each_in_savepoint(cur: Any, ops: Sequence[Callable[[Any], Any]],
                      wrap: Callable[[BaseException], BaseException]) -> list[tuple[Any, BaseException | None]]:
    """Run each op(cur) in a savepoint of its own within the open transaction: one that fails is
    rolled back alone and its (wrapped) error returned in its place; (result, None) for the others.
    A single op needs no savepoint: its error is the transaction's, and is raised. So is an error
    after which the database cannot roll back to the savepoint (it ended the transaction itself)."""
    if len(ops) == 1:
        return [(ops[0](cur), None)]
    results: list[tuple[Any, BaseException | None]] = []
    for op in ops:
        cur.execute("SAVEPOINT grouped_write")
        try:
            results.append((op(cur), None))
        except Exception as exc:
            try:
                cur.execute("ROLLBACK TO grouped_write")
            except Exception:  # the database ended the transaction itself: the group fails
                raise exc from None
            results.append((None, wrap(exc)))
        cur.execute("RELEASE grouped_write")
    return results
