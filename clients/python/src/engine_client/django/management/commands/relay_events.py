"""`manage.py relay_events`: hand the outbox to the engine, oldest first, until stopped."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from engine_client.django.outbox import relay, relay_forever
from engine_client.django.settings import client as configured_client
from engine_client.errors import EngineError
from engine_client.events import MAX_BATCH


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


class Command(BaseCommand):
    help = "Relay the events queued by emit_on_commit to the notification engine, oldest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="relay what is pending, then exit (1 if the engine is unavailable)"
        )
        parser.add_argument(
            "--batch", type=_positive(int), default=100, help=f"events per request (1-{MAX_BATCH}, default 100)"
        )
        parser.add_argument(
            "--interval",
            type=_positive(float),
            default=1.0,
            help="seconds between looks at an empty outbox (default 1)",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the database alias of the outbox")

    def handle(self, *args: Any, once: bool, batch: int, interval: float, database: str, **options: Any) -> None:
        if batch > MAX_BATCH:
            raise CommandError(f"--batch is at most {MAX_BATCH} (the engine's limit per request)")
        client = configured_client()
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())  # the batch in hand is finished first
        try:
            if once:
                self._once(client, batch, database)
            else:
                relay_forever(client, batch, interval, database, stop)
        finally:
            client.close()
            connections[database].close()

    def _once(self, client: Any, batch: int, database: str) -> None:
        try:
            done = relay(client, batch, database)
        except EngineError as exc:
            raise CommandError(f"stopped: {exc}") from None
        self.stdout.write(f"relayed {done.sent} event(s), {done.refused} refused")
