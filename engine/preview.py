"""`engine preview`: the live engine itself, on a scratch database and a virtual clock.

Nothing here decides anything: the events go through `Runtime.ingest` and the sends through
`Runtime.sweep` and `Runtime.deliver`, on a SQLite database of their own, with a delivery
backend that records instead of sending. Only the edges differ from `engine serve`: the clock
(each event at its `occurred_at`; before it, every send due earlier goes out or is skipped, at
its own due time), the store (a scratch file) and the backend.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import takewhile
from typing import Any

from .core import policy
from .core.decide import Renderer, Send
from .core.events import Event, EventRejected, parse_event
from .delivery.base import Outcome
from .delivery.message import Message, scheduled
from .rules.model import Config
from .rules.timeparse import format_instant
from .runtime import Runtime
from .settings import Settings
from .store.db import scratch
from .store.repository import Store

FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
PENDING = {"scheduled", "queued", "sending"}
Progress = Callable[[int, int], None]  # (events done, events in all)
Step = tuple[datetime, Callable[[Runtime, datetime], Any]]  # something else that happens at a time


@dataclass
class Row:
    send: Send
    status: str  # scheduled | sent | skipped | cancelled | failed
    reason: str | None
    seq: int
    routing: str = "single"
    expires_at: datetime | None = None  # the latest it may go out (the rule's expires_after), if any

    def sort_key(self) -> tuple[datetime, str, str, int]:
        return (self.send.send_at, self.send.notification, self.send.recipient_id, self.seq)

    def as_json(self) -> dict[str, Any]:
        """The row as `engine preview --format json` writes it, its keys in this order."""
        s, expires = self.send, self.expires_at
        return {"notification": s.notification, "recipient": s.recipient_id, "channels": list(s.channels),
                "template": s.template, "send_at": format_instant(s.send_at),
                "status": "pending" if self.status in PENDING else self.status, "reason": self.reason,
                "idempotency_key": s.idempotency_key, "data": dict(s.data), "template_key": s.template_key,
                "variant": s.variant, "category": s.category, "key": s.key, "event": s.event_id or None,
                "routing": self.routing, "expires_at": format_instant(expires) if expires else None}


@dataclass
class Rejected:
    line: int
    problems: list[tuple[str, str]]


@dataclass
class Result:
    rows: list[Row]
    rejected: list[Rejected]
    duplicates: list[str]
    until: datetime | None


class RecordingBackend:
    """The preview's delivery edge: every send is accepted, nothing leaves the process."""

    name = "preview"

    def send(self, message: Message, idempotency_key: str) -> Outcome:
        return Outcome("sent", request_id=f"preview:{idempotency_key}"[:200])


def read_events(lines: Iterable[str]) -> tuple[list[tuple[int, Any]], list[Rejected]]:
    read = [(number, _json(number, line)) for number, line in enumerate(lines, 1) if line.strip()]
    return [(n, v) for n, v in read if not isinstance(v, Rejected)], [v for _, v in read if isinstance(v, Rejected)]


def _json(number: int, line: str) -> Any:
    """The value of the line, or a Rejected saying why it cannot be read."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        return Rejected(number, [("$", f"not JSON: {exc.msg} (column {exc.colno})")])
    except RecursionError:
        return Rejected(number, [("$", "not readable: nested too deeply")])


def run(config: Config, raw_events: list[tuple[int, Any]], until: datetime | None = None,
        renderer: Renderer = Renderer(), preferences: Mapping[str, policy.Preferences] | None = None,
        progress: Progress | None = None, steps: Sequence[Step] = ()) -> Result:
    """Process the events on a virtual clock; stop at `until` or when nothing is left pending.
    `steps` are other things that happen at a time (a deploy, a call of the Python API)."""
    events, rejected = _parsed(config, raw_events)
    with _collector_frozen(), scratch_runtime(config, renderer) as runtime:
        set_preferences(runtime, preferences or {})
        duplicates = replay(runtime, events, until, progress, steps)
        rows = outcomes(runtime, until or FAR_FUTURE)
    return Result(rows, rejected, duplicates, until)


def _parsed(config: Config, raw_events: list[tuple[int, Any]]) -> tuple[list[Event], list[Rejected]]:
    events, rejected = [], []
    for number, raw in raw_events:
        try:
            events.append(parse_event(raw, config))
        except EventRejected as exc:
            rejected.append(Rejected(number, exc.problems))
    return events, rejected


@contextmanager
def _collector_frozen() -> Iterator[None]:
    """The rules and the events stay for the whole run: kept out of the collector's full passes,
    which would otherwise walk all of them again and again (a run would grow faster than its input)."""
    frozen_here = gc.get_freeze_count() == 0  # a process that froze objects itself keeps them frozen
    gc.freeze()
    try:
        yield
    finally:
        if frozen_here:
            gc.unfreeze()


def set_preferences(runtime: Runtime, preferences: Mapping[str, policy.Preferences]) -> None:
    for recipient_id, prefs in preferences.items():
        runtime.store.set_preferences(recipient_id, dict(prefs), datetime(1970, 1, 1, tzinfo=UTC))


def replay(runtime: Runtime, events: Sequence[Event], until: datetime | None = None, progress: Progress | None = None,
           steps: Sequence[Step] = ()) -> list[str]:
    """Each event (and step) at its own time, after every send due before it; then the sends due
    by `until` (or all of them). Returns the ids of the events ignored as duplicates."""
    happenings, duplicates = _happenings(events, steps), list[str]()
    for done, (at, kind, i) in enumerate(takewhile(lambda h: until is None or h[0] <= until, happenings)):
        _sweep_until(runtime, at)
        if kind == 0:
            steps[i][1](runtime, at)
        else:
            duplicates += _ingest(runtime, events[i], at)
        _tell(progress, done, len(happenings))
    _sweep_until(runtime, until or FAR_FUTURE)
    _tell(progress, len(happenings), len(happenings))
    return duplicates


def _happenings(events: Sequence[Event], steps: Sequence[Step]) -> list[tuple[datetime, int, int]]:
    """(time, 0 for a step or 1 for an event, its index) in time order; at the same time, steps first."""
    return sorted([(e.occurred_at, 1, i) for i, e in enumerate(events)]
                  + [(at, 0, i) for i, (at, _) in enumerate(steps)])


def _tell(progress: Progress | None, done: int, total: int) -> None:
    """Progress every 200 happenings, and at the end."""
    if progress is not None and (done % 200 == 0 or done == total):
        progress(done, total)


def _sweep_until(runtime: Runtime, at: datetime) -> None:
    """Every send due by `at` handed out: a sweep hands out a batch at a time, so until none is left."""
    due = runtime.store.next_due()
    while due is not None and due <= at:
        runtime.sweep(at, on_time=True)
        due = runtime.store.next_due()


def _ingest(runtime: Runtime, event: Event, at: datetime) -> list[str]:
    """The event taken in at `at`; the ids of those ignored as duplicates."""
    [result] = runtime.ingest_many([[event]], at)
    if isinstance(result, Exception):
        raise result
    return list(result.duplicates)


def outcomes(runtime: Runtime, until: datetime) -> list[Row]:
    """Every row the engine recorded, and the digests still collecting when the clock stopped
    (shown pending, rendered from what they hold so far, as `engine upcoming` shows them)."""
    people = runtime.store.people()
    rows = [_row(r, people) for r in runtime.store.rows()]
    rows += _collecting(runtime, until, len(rows))
    return sorted((_delivered(row, runtime.config) for row in rows), key=Row.sort_key)


def _collecting(runtime: Runtime, until: datetime, recorded: int) -> list[Row]:
    """The digests still collecting, each as the send it makes (numbered after the rows recorded)."""
    sends = (runtime.digest_send(digest, until) for digest in runtime.store.due_digests(FAR_FUTURE, limit=None))
    made = [send for send in sends if send is not None]
    return [Row(send, send.status, send.reason, recorded + n + 1_000_000_000) for n, send in enumerate(made)]


def _delivered(row: Row, config: Config) -> Row:
    """The row with how its rule delivers it: routing, and the deadline its expiry sets."""
    rule = config.notifications.get(row.send.notification)
    if rule is None:
        return row
    return replace(row, routing=rule.routing, expires_at=policy.deadline(rule, row.send.due))


def _row(r: Mapping[str, Any], people: Mapping[str, Mapping[str, Any]]) -> Row:
    message = scheduled(r.get("message") or {})
    recipient = people.get(r["recipient_id"]) or {"id": r["recipient_id"]}
    send = Send(r["notification"], recipient, r["event_id"] or "", r["send_at"], "scheduled", r["reason"],
                tuple(r["channels"]), r["category"], r["key"], r["template_key"], r["template"],
                message.data, r["idempotency_key"], None, r["variant"], due_at=r["due_at"])
    return Row(send, r["status"], r["reason"], r["id"])


@contextmanager
def scratch_runtime(config: Config, renderer: Renderer) -> Iterator[Runtime]:
    """The live runtime on a database of its own in memory, thrown away afterwards."""
    engine = scratch()
    try:
        settings = Settings(config_path="", database_url="sqlite://", queue_url="", env=renderer.env)
        yield Runtime(settings, config, Store(engine), RecordingBackend(), dict(renderer.environ))
    finally:
        engine.dispose()
