"""Write events in the caller's transaction; relay them to the engine, oldest first.

An event row commits or rolls back with the caller's own changes, so the engine hears of exactly
what happened. The relay marks rows sent only once the engine has answered 202; a relay that dies
before that leaves them pending, and the next pass sends them again, which the engine, keeping
each event id once, takes as duplicates.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.utils import timezone

from ..client import Client
from ..errors import (
    BadRequest,
    EngineError,
    EngineRefused,
    EventRefused,
    PayloadTooLarge,
)
from ..events import MAX_BATCH, Event, dumps, envelope
from .models import OutboxEvent

log = logging.getLogger("engine_client.relay")

# What the engine says of one event that will never change on a retry: the row is set aside.
PERMANENT = (BadRequest, EventRefused, PayloadTooLarge)


def _row(event: Event) -> OutboxEvent:
    env = envelope(event)
    # Encoded now, so that a value JSON cannot carry fails in the caller's code, not in the relay.
    plain = json.loads(dumps(env))
    return OutboxEvent(event_id=env["id"], event_type=env["type"], envelope=plain)


def emit_on_commit(event: Event, using: str = DEFAULT_DB_ALIAS) -> str:
    """Queue `event` in the current transaction (it is sent only if the transaction commits);
    returns its id (a new sortable one when the event has none)."""
    row = _row(event)
    row.save(using=using)
    return str(row.event_id)


def emit_many_on_commit(events: Iterable[Event], using: str = DEFAULT_DB_ALIAS) -> list[str]:
    rows = [_row(e) for e in events]
    OutboxEvent.objects.using(using).bulk_create(rows)
    return [r.event_id for r in rows]


@dataclass
class Relayed:
    sent: int = 0
    refused: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.refused

    def add(self, other: Relayed) -> None:
        self.sent += other.sent
        self.refused += other.refused


def _claim(batch: int, using: str) -> list[OutboxEvent]:
    """The oldest pending rows, locked; none while an older row is in another relay's hands, so two
    relays never send out of order (the second waits). SQLite has no row locks: run one relay there."""
    pending = OutboxEvent.objects.using(using).filter(status=OutboxEvent.PENDING).order_by("id")
    rows = list(pending.select_for_update(skip_locked=True)[:batch])
    if rows and connections[using].features.has_select_for_update_skip_locked:
        head = pending.values_list("id", flat=True).first()
        if head is not None and head < rows[0].id:
            return []
    return rows


def _mark_sent(rows: list[OutboxEvent], using: str) -> None:
    OutboxEvent.objects.using(using).filter(id__in=[r.id for r in rows]).update(
        status=OutboxEvent.SENT, sent_at=timezone.now())


def _refuse(row: OutboxEvent, exc: EngineRefused, using: str) -> None:
    log.error("the engine refused event %s (%s), set aside as refused: %s", row.event_id, row.event_type, exc)
    OutboxEvent.objects.using(using).filter(id=row.id).update(status=OutboxEvent.REFUSED, last_error=str(exc)[:2000])


def _send_each(client: Client, rows: list[OutboxEvent], using: str) -> Relayed:
    """One request per row, in order: what a refused batch falls back to, to find the culprits."""
    done = Relayed()
    for row in rows:
        try:
            client.emit(row.envelope)
        except PERMANENT as exc:
            _refuse(row, exc, using)
            done.refused += 1
            continue
        _mark_sent([row], using)
        done.sent += 1
    return done


def relay_batch(client: Client, batch: int = 100, using: str = DEFAULT_DB_ALIAS) -> Relayed:
    """Send the oldest pending rows (at most `batch`) in one request and mark them sent.

    Raises EngineUnavailable (nothing marked: the rows stay pending) and EngineRefused for a
    request-wide refusal such as a 401. An event the engine refuses is marked refused, with why.
    """
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH} events")
    with transaction.atomic(using=using):
        rows = _claim(batch, using)
        if not rows:
            return Relayed()
        try:
            client.emit_many([r.envelope for r in rows])
        except PERMANENT:
            return _send_each(client, rows, using)
        _mark_sent(rows, using)
        return Relayed(sent=len(rows))


def relay(client: Client, batch: int = 100, using: str = DEFAULT_DB_ALIAS,
          stop: threading.Event | None = None) -> Relayed:
    """Relay batch after batch until nothing is left to claim (or `stop` is set)."""
    total = Relayed()
    while not (stop and stop.is_set()):
        done = relay_batch(client, batch, using)
        total.add(done)
        if not done.handled:
            break
    return total


def relay_forever(client: Client, batch: int, interval: float, using: str, stop: threading.Event) -> None:
    """Relay until `stop` is set, looking again every `interval` seconds once the outbox is empty.
    An engine or database that fails pauses the relay for `interval`; the rows stay pending."""
    while not stop.is_set():
        try:
            done = relay(client, batch, using, stop)
            if done.handled:
                log.info("relayed %d event(s), %d refused", done.sent, done.refused)
        except EngineRefused as exc:  # such as a 401: a setting to fix, while the rows wait
            log.error("relay paused, the engine refuses the relay's requests: %s", exc)
        except EngineError as exc:
            log.warning("relay paused: %s", exc)
        except DatabaseError as exc:
            log.warning("relay paused, the database failed: %s", exc)
            connections[using].close()  # a new connection on the next pass
        stop.wait(interval)
