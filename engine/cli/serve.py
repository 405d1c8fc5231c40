"""`engine serve`: the ingest hook and a worker in one process."""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING

import click

from .common import config_option, runtime, settings, setup_logging

if TYPE_CHECKING:
    from huey import Huey
    from huey.consumer import Consumer

    from ..health import Readiness
    from ..runtime import Runtime

log = logging.getLogger("engine")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="Delivery threads (default $ENGINE_WORKERS or 4).")
@click.option("--no-worker", is_flag=True, help="Serve the hook only; run `engine worker` elsewhere.")
@config_option
def command(host: str, port: int, workers: int | None, no_worker: bool, config_path: str | None) -> None:
    """Run the HTTP hook and a delivery worker (embedded SQLite defaults)."""
    rt, huey, readiness, watching = start_process(config_path)
    worker = _delivery(rt, huey, None if no_worker else workers or rt.settings.workers)
    # uvicorn re-raises SIGTERM once it has shut down; with the default handler that kills the process
    # before `finally` stops the worker gracefully (tasks in flight would be cut off mid-send).
    signal.signal(signal.SIGTERM, _exit)
    try:
        _serve(rt, readiness, host, port)
    finally:
        watching.set()
        readiness.close()
        if worker is not None:
            stop_worker(*worker)


def start_process(config_path: str | None) -> tuple[Runtime, Huey, Readiness, threading.Event]:
    """What `serve` and `worker` do first: the runtime, said in the log, its queue, and the readiness
    checks, watching the data files until the event is set."""
    from ..health import Readiness, report_fatal_signals
    from ..queue import make_huey

    report_fatal_signals()  # a SIGBUS or SIGSEGV (a SQLite file made unwritable) says where it struck
    rt = _announced_runtime(config_path)
    huey = make_huey(rt.settings.queue_url, rt)
    readiness = Readiness(rt.store.engine, rt.settings.queue_url)  # after make_huey: the queue file exists
    watching = threading.Event()
    readiness.watch_files(watching)
    return rt, huey, readiness, watching


def _announced_runtime(config_path: str | None) -> Runtime:
    from .. import metrics

    setup_logging(settings(config_path))
    rt = runtime(config_path)
    announce(rt)
    metrics.declare(rt.config.notifications)
    return rt


def _delivery(rt: Runtime, huey: Huey, threads: int | None) -> tuple[Consumer, threading.Event] | None:
    """A worker of `threads` threads in this process; None: no worker here, the ids go to the
    queue for an `engine worker` elsewhere."""
    from ..queue import enqueuer, start_worker

    if threads is None:
        rt.enqueue = enqueuer(huey)
        return None
    return start_worker(rt, huey, threads)


def stop_worker(consumer: Consumer, stop: threading.Event) -> None:
    """The sweep first, then Huey's consumer, letting the tasks in flight finish."""
    stop.set()
    consumer.stop(graceful=True)


def _serve(rt: Runtime, readiness: Readiness, host: str, port: int) -> None:
    """The hook, in this thread until it stops; exit status 3 when it could not listen."""
    from ..http.app import build_app
    from ..http.listening import ListeningServer
    from ..http.server import raise_open_file_limit, server_config

    log.debug("open-file limit %s", raise_open_file_limit())
    server = ListeningServer(server_config(build_app(rt, readiness), host, port, log_config=None))
    server.run()
    if not server.started:  # the port is taken, say: uvicorn has logged why
        raise SystemExit(3)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def announce(rt: Runtime) -> None:
    s = rt.settings
    log.info("config %s: %d notifications, %d event types, env %s", s.config_path, len(rt.config.notifications),
             len(rt.config.events), s.env)
    log.info("store %s, queue %s", _safe(s.database_url), _safe(s.queue_url))
    if rt.backend.name == "outbox":
        log.warning("no COURIER_AUTH_TOKEN: sends are recorded in the local outbox (database and log), not delivered")
    if not s.ingest_token and not s.ingest_secret:
        log.warning("no ENGINE_INGEST_TOKEN or ENGINE_INGEST_SECRET: the hook accepts unauthenticated events "
                    "from this machine only")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
