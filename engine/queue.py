"""The queue: Huey on SQLite (default) or Redis, carrying only "deliver notification N now".

Far-future sends are never held in the queue: they wait as rows, and the sweep (a loop in every
`engine serve` and `engine worker`) hands each one to Huey when it falls due. A task lost by
Huey (a worker killed mid-task) leaves its row `queued`; the sweep finds it again.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from huey import Huey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

log = logging.getLogger("engine.queue")

_runtime: Any = None  # the Runtime the tasks use in this process; set by start_worker()


def make_huey(url: str) -> Huey:
    """`sqlite:///path/queue.db` or `redis://host:port/db`.

    No result store: nobody reads a task's return value (the row holds the outcome), and Huey
    would keep every one of them forever.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url.split("sqlite:///", 1)[1] if url.startswith("sqlite:///") else parsed.path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        huey: Huey = SqliteHuey("engine", filename=path, fsync=False, timeout=30, results=False)
    elif parsed.scheme in ("redis", "rediss"):
        huey = RedisHuey("engine", url=url, blocking=True, read_timeout=1, results=False)
    else:
        raise ValueError(f"ENGINE_QUEUE_URL={url!r}: use sqlite:///path/queue.db or redis://host:port/db")
    _register(huey)
    return huey


def _register(huey: Huey) -> None:
    @huey.task(name="deliver")
    def deliver(notification_id: int) -> str:
        if _runtime is None:
            raise RuntimeError("no runtime in this worker")
        return _runtime.deliver(notification_id)

    @huey.periodic_task(crontab(minute="17", hour="3"), name="cleanup")
    def cleanup() -> None:
        if _runtime is not None:
            removed = _runtime.cleanup()
            log.info("retention cleanup removed %s", removed)

    huey.deliver_task = deliver  # type: ignore[attr-defined]


def enqueuer(huey: Huey) -> Any:
    def enqueue(notification_id: int) -> None:
        huey.deliver_task(notification_id)  # type: ignore[attr-defined]

    return enqueue


class _QuietConsumer(Consumer):
    """A consumer that runs beside a web server: the server owns the signal handlers."""

    def _set_signal_handlers(self) -> None:
        pass


def start_worker(runtime: Any, huey: Huey, workers: int, *, periodic: bool = True) -> tuple[Consumer, threading.Event]:
    """Start Huey's workers and the sweep in threads of this process; returns (consumer, stop)."""
    global _runtime
    _runtime = runtime
    runtime.enqueue = enqueuer(huey)
    # Short polling: Huey's default backoff lets an idle worker sleep up to 10 s between polls.
    consumer = _QuietConsumer(huey, workers=workers, periodic=periodic, initial_delay=0.05, backoff=1.1,
                              max_delay=0.25, worker_type="thread", check_worker_health=False)  # health checks run in Consumer.run(), which a thread-hosted consumer never calls
    consumer.start()
    stop = threading.Event()
    thread = threading.Thread(target=_sweep_loop, args=(runtime, stop), name="engine-sweep", daemon=True)
    thread.start()
    return consumer, stop


def _sweep_loop(runtime: Any, stop: threading.Event) -> None:
    interval = runtime.settings.sweep_interval_s
    while not stop.is_set():
        try:
            runtime.sweep()
        except Exception:  # keep sweeping: a database hiccup must not stop deliveries for good
            log.exception("sweep failed; trying again")
            stop.wait(1.0)
        stop.wait(interval)
