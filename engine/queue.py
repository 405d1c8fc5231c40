"""The queue: Huey on SQLite (default) or Redis, carrying only "deliver notification N now".

Far-future sends are never held in the queue: they wait as rows, and the sweep (a loop in every
`engine serve` and `engine worker`) hands each one to Huey when it falls due. A task lost by
Huey (a worker killed mid-task) leaves its row `queued`; the sweep finds it again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer, Scheduler, Worker
from huey.storage import BaseSqlStorage
from sqlalchemy.exc import SQLAlchemyError

from .health import Trouble
from .settings import SettingsError

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("engine.queue")


def make_huey(url: str, runtime: Runtime | None = None, *, name: str = "engine") -> Huey:
    """`sqlite:///path/queue.db` or `redis://host:port/db`, whose tasks run on `runtime` (None: a
    process that only hands ids to the queue, or only creates it).

    No result store: nobody reads a task's return value (the row holds the outcome), and Huey
    would keep every one of them forever.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else parsed.path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        huey: Huey = SqliteHuey(name, filename=path, fsync=False, timeout=30, results=False)
    elif parsed.scheme in ("redis", "rediss"):
        huey = RedisHuey(name, url=url, blocking=True, read_timeout=1, results=False)
    else:
        raise _not_a_queue(url)
    _register(huey, runtime)
    return huey


def _not_a_queue(url: str) -> SettingsError:
    parsed = urlparse(url)
    shown = parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl() \
        if parsed.password else url
    return SettingsError(f"ENGINE_QUEUE_URL={shown!r} is not a queue the engine can use: "
                         "set it to sqlite:///path/queue.db or redis://host:port/db")


def _register(huey: Huey, runtime: Runtime | None) -> None:
    failing = Trouble("deliveries", log)

    @huey.task(name="deliver")  # type: ignore[untyped-decorator]  # huey ships no types
    def deliver(notification_id: int) -> str:
        if runtime is None:
            raise RuntimeError("this process's queue delivers nothing: build it with make_huey(url, runtime)")
        try:
            done = str(runtime.deliver(notification_id))
        except SQLAlchemyError as exc:
            # The store failing (down, read-only): said once per state change, not as Huey's
            # traceback per task. The row stays queued or claimed, and the sweep hands it out
            # again once the store answers (a claim that went stale is taken over).
            failing.failed(exc)
            return "store failing"
        failing.ok()
        return done

    @huey.periodic_task(crontab(minute="17", hour="3"), name="cleanup")  # type: ignore[untyped-decorator]  # as above
    def cleanup() -> None:
        if runtime is not None:
            removed = runtime.cleanup()
            log.info("retention cleanup removed %s", removed)

    huey.deliver_task = deliver
    huey.runtime = runtime


def enqueuer(huey: Huey) -> Callable[[int], None]:
    def enqueue(notification_id: int) -> None:
        huey.deliver_task(notification_id)

    return enqueue


def _reopen(huey: Huey) -> None:
    """Drop a SQLite queue's connection after an error: the next use opens the file anew, so a
    connection opened while the file was read-only (or replaced) is not kept for ever."""
    if isinstance(huey.storage, BaseSqlStorage):
        with contextlib.suppress(Exception):  # already unusable: the next use opens another
            huey.storage.close()


class _RecoveringWorker(Worker):  # type: ignore[misc]  # huey ships no types: Worker is Any
    """Huey's worker, which logs a traceback on every failed read of the queue (4 threads polling
    every 0.25 s while Redis is down): here once per state change, backing off up to 5 s."""

    trouble: Trouble  # one for every worker of the consumer (set by `_consumer_classes`)

    def loop(self, now: Any = None) -> None:
        started = time.monotonic()
        try:
            task = self.huey.dequeue()
            if task is None and (self.trouble.count or self._suspiciously_quick(started)):
                _probe(self.huey)  # "nothing to do" is no proof the queue is back: a read that fails may say it
        except Exception as exc:  # noqa: BLE001 - the queue is down: wait and try again
            _reopen(self.huey)
            self.stop_flag.wait(self.trouble.failed(exc))
            return
        self.trouble.ok()
        if task is None:
            if not self.huey.storage.blocking:
                self.sleep()
            return
        self.delay = self.default_delay
        try:
            self.huey.execute(task, now)
        except Exception as exc:  # noqa: BLE001 - the queue's: Huey reports a task's own errors itself
            # What escapes Huey's execute is its storage failing around the task (the revoke
            # check, the revoke key's delete, a result): the queue is down, reported as above.
            _reopen(self.huey)
            self.stop_flag.wait(self.trouble.failed(exc))

    def _suspiciously_quick(self, started: float) -> bool:
        """A blocking read that came back empty long before its timeout (Huey takes some of the
        Redis client's errors for an empty queue), which would otherwise spin."""
        storage = self.huey.storage
        quick = time.monotonic() - started < getattr(storage, "read_timeout", 1) / 2
        return bool(getattr(storage, "blocking", False)) and quick


def _probe(huey: Huey) -> None:
    """Raise if the queue does not answer (Redis PING; a read of a SQLite queue)."""
    if isinstance(huey.storage, BaseSqlStorage):
        huey.storage.sql("SELECT 1 FROM task LIMIT 1", results=True)
    else:
        huey.storage.conn.ping()


class _RecoveringScheduler(Scheduler):  # type: ignore[misc]  # huey ships no types: Scheduler is Any
    """Huey's scheduler (its `loop`, step for step) with the same once-per-state-change reporting
    for the schedule and the periodic tasks."""

    trouble: Trouble
    _next_loop: float  # set by Scheduler.__init__: monotonic times of the next loop and periodic run
    _next_periodic: float

    def loop(self, now: Any = None) -> None:
        current = self._next_loop
        self._next_loop += self.interval
        if self._next_loop < time.monotonic():  # a stall: skip an iteration rather than race
            self._next_loop = time.monotonic()
            return
        try:
            for task in self.huey.read_schedule(now):
                self.huey.enqueue(task)
            if self.periodic and self._next_periodic <= time.monotonic():
                while self._next_periodic <= time.monotonic():
                    self._next_periodic += self.periodic_task_seconds
                for task in self.huey.read_periodic(now):
                    self.huey.enqueue(task)
        except Exception as exc:  # noqa: BLE001 - the queue is down: wait and try again
            _reopen(self.huey)
            self.stop_flag.wait(self.trouble.failed(exc))
            return
        self.trouble.ok()
        self.sleep_for_interval(current, self.interval)


class _QuietConsumer(Consumer):  # type: ignore[misc]  # huey ships no types: Consumer is Any
    """A consumer that runs beside a web server (the server owns the signal handlers) and whose
    threads keep going, quietly, while the queue is down."""

    worker_class = _RecoveringWorker
    scheduler_class = _RecoveringScheduler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # before Consumer.__init__, which creates the worker and scheduler threads' objects
        self.reads, self.schedule = Trouble("queue reads", log), Trouble("queue schedule", log)
        super().__init__(*args, **kwargs)

    def _set_signal_handlers(self) -> None:
        pass

    def _create_worker(self) -> Worker:
        worker = super()._create_worker()
        worker.trouble = self.reads
        return worker

    def _create_scheduler(self) -> Scheduler:
        scheduler = super()._create_scheduler()
        scheduler.trouble = self.schedule
        return scheduler


def start_worker(runtime: Runtime, huey: Huey, workers: int, *,
                 periodic: bool = True) -> tuple[Consumer, threading.Event]:
    """Start Huey's workers and the sweep in threads of this process; returns (consumer, stop).
    `huey` is the queue `make_huey` built for `runtime`."""
    if getattr(huey, "runtime", None) is not runtime:
        raise ValueError("start_worker: the queue was built for another runtime (make_huey(url, runtime))")
    runtime.enqueue = enqueuer(huey)
    # Short polling: Huey's default backoff lets an idle worker sleep up to 10 s between polls; at
    # most 0.1 s keeps a send that falls due after idleness under half a second late (a poll of an
    # empty queue is cheap: an idle worker process, 4 workers and the sweep, uses about 1 % of a core).
    # No worker health checks: they run in Consumer.run(), which a thread-hosted consumer never calls.
    consumer = _QuietConsumer(huey, workers=workers, periodic=periodic, initial_delay=0.05, backoff=1.1,
                              max_delay=0.1, worker_type="thread", check_worker_health=False)
    consumer.start()
    stop = threading.Event()
    thread = threading.Thread(target=_sweep_loop, args=(runtime, stop, huey), name="engine-sweep", daemon=True)
    thread.start()
    return consumer, stop


def _sweep_loop(runtime: Runtime, stop: threading.Event, huey: Huey | None = None) -> None:
    """Sweep every `sweep_interval_s` for as long as the process runs: an error (the store or the
    queue down, a file read-only) is logged once, the loop backs off (up to 5 s) and tries again,
    and says so when it works again."""
    interval = runtime.settings.sweep_interval_s
    trouble = Trouble("sweep", log)
    while not stop.is_set():
        try:
            handed_out = runtime.sweep()
            if trouble.count and not handed_out and huey is not None:
                _probe(huey)  # a sweep with nothing due never reached the queue: no proof that it is back
        except Exception as exc:  # noqa: BLE001 - keep sweeping: a fault must not stop deliveries for good
            if huey is not None:
                _reopen(huey)
            stop.wait(trouble.failed(exc))
            continue
        trouble.ok()
        stop.wait(interval)
