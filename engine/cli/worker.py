"""`engine worker`: a delivery worker alone (the sweep and Huey's consumer), for scaling out."""

from __future__ import annotations

import signal
import threading

import click

from .common import config_option, runtime, setup_logging
from .serve import announce


@click.command("worker")
@click.option("--workers", default=None, type=int, help="Delivery threads (default $ENGINE_WORKERS or 4).")
@click.option("--no-periodic", is_flag=True, help="Do not run the daily retention cleanup here.")
@config_option
def command(workers: int | None, no_periodic: bool, config_path: str | None) -> None:
    """Deliver due notifications until stopped (SIGINT/SIGTERM)."""
    from ..queue import make_huey, start_worker

    setup_logging()
    rt = runtime(config_path)
    announce(rt)
    huey = make_huey(rt.settings.queue_url)
    consumer, stop = start_worker(rt, huey, workers or rt.settings.workers, periodic=not no_periodic)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    stop.set()
    consumer.stop(graceful=True)
