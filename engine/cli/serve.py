"""`engine serve`: the ingest hook and a worker in one process."""

from __future__ import annotations

import logging
import signal
import threading

import click

from .common import config_option, runtime, settings, setup_logging

log = logging.getLogger("engine")


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="Delivery threads (default $ENGINE_WORKERS or 4).")
@click.option("--no-worker", is_flag=True, help="Serve the hook only; run `engine worker` elsewhere.")
@config_option
def command(host: str, port: int, workers: int | None, no_worker: bool, config_path: str | None) -> None:
    """Run the HTTP hook and a delivery worker (embedded SQLite defaults)."""
    from .. import metrics
    from ..health import Readiness, report_fatal_signals
    from ..http.app import build_app
    from ..http.listening import ListeningServer
    from ..http.server import raise_open_file_limit, server_config
    from ..queue import make_huey, start_worker

    report_fatal_signals()  # a SIGBUS or SIGSEGV (a SQLite file made unwritable) says where it struck
    setup_logging(settings(config_path))
    rt = runtime(config_path)
    announce(rt)
    metrics.declare(rt.config.notifications)
    huey = make_huey(rt.settings.queue_url, rt)
    readiness = Readiness(rt.store.engine, rt.settings.queue_url)  # after make_huey: the queue file exists
    watching = threading.Event()
    readiness.watch_files(watching)
    consumer = stop = None
    if not no_worker:
        consumer, stop = start_worker(rt, huey, workers or rt.settings.workers)
    else:
        from ..queue import enqueuer

        rt.enqueue = enqueuer(huey)
    # uvicorn re-raises SIGTERM once it has shut down; with the default handler that kills the process
    # before `finally` stops the worker gracefully (tasks in flight would be cut off mid-send).
    signal.signal(signal.SIGTERM, _exit)
    try:
        log.debug("open-file limit %s", raise_open_file_limit())
        server = ListeningServer(server_config(build_app(rt, readiness), host, port, log_config=None))
        server.run()
        if not server.started:  # the port is taken, say: uvicorn has logged why
            raise SystemExit(3)
    finally:
        watching.set()
        readiness.close()
        if stop is not None:
            stop.set()
        if consumer is not None:
            consumer.stop(graceful=True)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def announce(rt) -> None:  # type: ignore[no-untyped-def]
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
