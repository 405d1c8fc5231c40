"""Events: the envelope every event shares, checked against its type's schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from ..rules.event_schema import errors as schema_errors, validator
from ..rules.model import Config
from ..rules.timeparse import parse_instant

ENVELOPE_KEYS = {"id", "type", "occurred_at", "data"}
MAX_ID = 200


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    occurred_at: datetime
    data: Mapping[str, Any]

    def envelope(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "occurred_at": self.occurred_at.isoformat(), "data": self.data}


class EventRejected(Exception):
    """The event is refused; `problems` lists (JSON path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))


def _validators(config: Config) -> dict[str, Any]:
    cached = config.__dict__.get("_validators")
    if cached is None:
        cached = {name: validator(config.event_schema(name)) for name in config.events}
        object.__setattr__(config, "_validators", cached)
    return cached


def parse_event(raw: Any, config: Config, where: str = "$") -> Event:
    """Check one envelope and its data; EventRejected with every problem, by JSON path."""
    if not isinstance(raw, Mapping):
        raise EventRejected([(where, "an event must be a JSON object")])
    problems: list[tuple[str, str]] = []
    for key in sorted(ENVELOPE_KEYS - set(raw)):
        problems.append((where, f"'{key}' is a required property"))
    for key in sorted(set(raw) - ENVELOPE_KEYS):
        problems.append((f"{where}.{key}", "unknown envelope field (allowed: id, type, occurred_at, data)"))
    event_id, event_type, occurred = raw.get("id"), raw.get("type"), raw.get("occurred_at")
    if "id" in raw and (not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID):
        problems.append((f"{where}.id", f"must be a non-empty string of at most {MAX_ID} characters"))
    when = None
    if "occurred_at" in raw:
        try:
            when = parse_instant(occurred)
        except (ValueError, TypeError) as exc:
            problems.append((f"{where}.occurred_at", str(exc)))
    known = isinstance(event_type, str) and event_type in config.events
    if "type" in raw and not known:
        problems.append((f"{where}.type", f"unknown event type {event_type!r}"))
    data = raw.get("data")
    if "data" in raw and not isinstance(data, Mapping):
        problems.append((f"{where}.data", "must be an object"))
    elif known and isinstance(data, Mapping):
        prefix = (where + ".data")
        for path, message in schema_errors(_validators(config)[event_type], data):
            problems.append((prefix + path[1:], message))
    if problems:
        raise EventRejected(problems)
    assert when is not None
    return Event(event_id, event_type, when, data)
