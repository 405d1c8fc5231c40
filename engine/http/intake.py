"""The hook's intake: one thread per process decides and stores what `POST /events` accepted.

A request is read, authenticated and checked on the event loop; its events are then queued
here. One thread takes everything queued by then (up to `MAX_EVENTS`), decides it and writes it
in one transaction, each request in a savepoint of its own (`Runtime.ingest_many`), and answers
every request of the group with one wake-up of its event loop. A request's answer still waits
for its own commit, and a request whose deciding or writing fails fails alone.

One thread, not one pool thread a request: dozens of threads would take turns at the store's
write lock and at the interpreter lock, and one transaction for a group writes far less often
than one for each request (`bench/ingest.py` measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from typing import Any

from ..core.events import Event
from ..store.repository import IngestResult

log = logging.getLogger(__name__)

MAX_EVENTS = 1000  # a group stops growing past this many events (one transaction's worth)
IDLE_S = 60.0  # an intake with nothing to do for this long lets its thread end (the next request starts one)

_Item = tuple[asyncio.AbstractEventLoop, "asyncio.Future[IngestResult]", list[Event]]


class IntakeClosed(RuntimeError):
    pass


class Intake:
    def __init__(self, runtime: Any, idle_s: float = IDLE_S):
        self.runtime, self.idle_s = runtime, idle_s
        self._queue: deque[_Item] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def submit(self, events: list[Event]) -> IngestResult:
        """Decide and store `events` (checked by `Runtime.parse`) with whatever else is queued;
        returns once they are committed, or raises the error that kept them out."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        with self._cv:
            if self._closed:
                raise IntakeClosed("the hook is shutting down")
            self._queue.append((loop, future, events))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
                self._thread.start()
            self._cv.notify()
        return await future

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _take(self) -> list[_Item] | None:
        with self._cv:
            while not self._queue and not self._closed:
                if not self._cv.wait(self.idle_s) and not self._queue:
                    self._thread = None  # idle: this thread ends; `submit` starts another
                    return None
            if not self._queue:
                return None
            group = [self._queue.popleft()]
            events = len(group[0][2])
            while self._queue and events + len(self._queue[0][2]) <= MAX_EVENTS:
                item = self._queue.popleft()
                group.append(item)
                events += len(item[2])
            return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            outcomes: list[Any]
            try:
                outcomes = self.runtime.ingest_many([events for _, _, events in group])
            except BaseException as exc:  # noqa: BLE001 - the transaction failed: every request of the group fails
                if not isinstance(exc, Exception):
                    log.error("intake interrupted: %r", exc)
                outcomes = [exc] * len(group)
            self._answer(group, outcomes)

    @staticmethod
    def _answer(group: list[_Item], outcomes: list[Any]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[IngestResult], Any]]] = {}
        for (loop, future, _), outcome in zip(group, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits for these answers
                loop.call_soon_threadsafe(_resolve, answers)


def _resolve(answers: list[tuple[asyncio.Future[IngestResult], Any]]) -> None:
    for future, outcome in answers:
        if future.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
