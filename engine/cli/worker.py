"""`engine worker`: a delivery worker alone (the sweep and Huey's consumer), for scaling out."""

from __future__ import annotations

import signal
import threading
from typing import Any

import click

from .common import config_option
from .serve import start_process, stop_worker


@click.command("worker")
@click.option("--workers", default=None, type=int, help="Delivery threads (default $ENGINE_WORKERS or 4).")
@click.option("--no-periodic", is_flag=True, help="Do not run the daily retention cleanup here.")
@click.option("--metrics-port", default=None, type=click.IntRange(1, 65535),
              help="Serve /healthz, /readyz and /metrics on this port.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="The address of --metrics-port.")
@config_option
def command(workers: int | None, no_periodic: bool, metrics_port: int | None, metrics_host: str,
            config_path: str | None) -> None:
    """Deliver due notifications until stopped (SIGINT/SIGTERM)."""
    from .. import metrics
    from ..queue import start_worker

    rt, huey, readiness, done = start_process(config_path)
    metrics.watch_store(rt.store, rt.settings.metrics_refresh_s)
    server = _serve_health(readiness, metrics_host, metrics_port) if metrics_port else None
    consumer, stop = start_worker(rt, huey, workers or rt.settings.workers, periodic=not no_periodic)
    _wait_for_a_stop_signal(done)
    stop_worker(consumer, stop)
    if server is not None:
        server.should_exit = True
    readiness.close()


def _wait_for_a_stop_signal(done: threading.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


def _started_on_a_thread(server: Any) -> bool:
    """Runs `server` on a daemon thread and waits until it listens, or its thread has ended without."""
    import time

    thread = threading.Thread(target=server.run, name="engine-health-http", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    return bool(server.started)


def _serve_health(readiness: Any, host: str, port: int) -> Any:
    """uvicorn on a thread of its own (it leaves the signals to the main thread there); raises
    click's error when the port cannot be had, before any delivery starts."""
    from ..http.app import health_app
    from ..http.listening import ListeningServer
    from ..http.server import server_config

    server = ListeningServer(server_config(health_app(readiness), host, port, log_config=None))
    server.serves = " (/healthz, /readyz, /metrics)"
    if not _started_on_a_thread(server):  # uvicorn has logged why (the port is taken, say)
        raise click.ClickException(f"--metrics-port {port}: could not listen on {host}:{port}")
    return server
