"""The validated configuration as frozen, typed objects. Nothing downstream sees raw YAML."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal

from .problems import Mark
from .timeparse import MAX_DURATION

IfPast = Literal["skip", "send_now"]
Routing = Literal["single", "all"]  # Courier's routing methods: the first channel that reaches, or every one


def _bounded(duration: timedelta, what: str) -> None:
    """No configuration holds a duration that datetime arithmetic could overflow with: the
    loader refuses them with a message, and a Config built by other code fails here, once,
    rather than at every send that adds or subtracts it."""
    if abs(duration) > MAX_DURATION:
        raise ValueError(f"{what} {duration} is longer than {MAX_DURATION.days} days")


@dataclass(frozen=True)
class App:
    name: str
    frontend_url: str
    support_email: str


@dataclass(frozen=True)
class Window:
    start: time
    end: time

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # spans midnight


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window: timedelta

    def __post_init__(self) -> None:
        _bounded(self.window, "a rate limit window of")


@dataclass(frozen=True)
class Category:
    name: str
    opt_out: bool


@dataclass(frozen=True)
class EventType:
    type: str
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Match:
    event: str
    key: str  # dotted path into that event's data


@dataclass(frozen=True)
class Schedule:
    kind: Literal["once", "after", "before", "cron"]
    offset: timedelta = timedelta(0)
    of: str | None = None  # a date-time path; None means the event's occurred_at
    cron: str | None = None
    if_past: IfPast = "send_now"
    window: Window | None = None
    outside_window: Literal["defer", "skip"] = "defer"
    quiet_hours: bool = False  # the window is the complement of defaults.quiet_hours

    def __post_init__(self) -> None:
        _bounded(self.offset, "a schedule offset of")


@dataclass(frozen=True)
class TemplateChoice:
    key: str | None = None  # a fixed key, or...
    select: str | None = None  # ...an expression whose value picks one of `cases`
    cases: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None
    variants: tuple[tuple[str, str, int], ...] = ()  # ...or A/B variants: (name, key, weight)

    def keys(self) -> list[str]:
        found = [self.key] if self.key else list(self.cases.values()) + [key for _, key, _ in self.variants]
        if self.default:
            found.append(self.default)
        return list(dict.fromkeys(found))

    def variant_for(self, notification: str, recipient_id: str) -> tuple[str, str] | None:
        """(variant, template key) for a recipient: the same every time, in every process."""
        total = sum(weight for _, _, weight in self.variants)
        if not total:
            return None
        digest = hashlib.sha256(f"{notification}:{recipient_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % total
        for name, key, weight in self.variants:
            if point < weight:
                return name, key
            point -= weight
        return None  # unreachable: point < total


@dataclass(frozen=True)
class Throttle:
    key: str  # a template
    window: timedelta
    limit: int = 1

    def __post_init__(self) -> None:
        _bounded(self.window, "a throttle window of")


@dataclass(frozen=True)
class Totals:
    """A digest's sums per currency: `amount` and `currency` are dotted paths into each item."""

    amount: str
    currency: str


@dataclass(frozen=True)
class Digest:
    period: Literal["day", "week", "month"]
    send: str  # cron
    totals: Totals | None = None


@dataclass(frozen=True)
class Batch:
    """Events collected per key for `window` after the first one, then sent as one notification
    whose data has `items` (the events' data, the latest `max_items` of them) and `count`."""

    key: str  # a template
    window: timedelta
    max_items: int | None = None

    def __post_init__(self) -> None:
        _bounded(self.window, "a batch window of")


@dataclass(frozen=True)
class ExampleEvent:
    id: str
    type: str
    occurred_at: str
    data: Mapping[str, Any]
    mark: Mark | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Notification:
    id: str
    triggers: tuple[str, ...]
    audience: str
    category: str
    template: TemplateChoice
    schedule: Schedule
    channels: tuple[str, ...]
    condition: str | None = None
    key: str | None = None
    cancel_on: tuple[Match, ...] = ()
    reschedule_on: tuple[Match, ...] = ()
    requires: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = "{{ notification }}:{{ recipient.id }}:{{ event.id }}"
    throttle: Throttle | None = None
    digest: Digest | None = None
    batch: Batch | None = None
    example: ExampleEvent | None = None
    enabled: bool = True
    description: str = ""
    routing: Routing = "single"
    expires_after: timedelta | None = None  # a send later than its due time plus this is skipped, `expired`
    mark: Mark | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.expires_after is not None:
            _bounded(self.expires_after, "expires_after of")


@dataclass(frozen=True)
class Config:
    """Everything `engine` needs, validated and defaulted once."""

    app: App
    timezone: str
    categories: Mapping[str, Category]
    events: Mapping[str, EventType]
    notifications: Mapping[str, Notification]
    templates: Mapping[str, Mapping[str, str]]  # env -> key -> Courier template id
    rate_limit: RateLimit | None = None
    quiet_hours: Window | None = None
    retention: Mapping[str, timedelta] = field(default_factory=dict)
    definitions: Mapping[str, Any] = field(default_factory=dict)
    root: str = "notifications.yaml"

    def __post_init__(self) -> None:
        for name, period in self.retention.items():
            _bounded(period, f"retention.{name} of")

    def by_trigger(self, event_type: str) -> tuple[Notification, ...]:
        return self._index()["trigger"].get(event_type, ())

    def by_cancel(self, event_type: str) -> tuple[Notification, ...]:
        return self._index()["cancel"].get(event_type, ())

    def by_reschedule(self, event_type: str) -> tuple[Notification, ...]:
        return self._index()["reschedule"].get(event_type, ())

    def _index(self) -> dict[str, dict[str, tuple[Notification, ...]]]:
        # Built once per Config: matching an event is a dict lookup however many rules exist.
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = _by_event(self.notifications.values())
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def event_schema(self, event_type: str) -> dict[str, Any]:
        """The full JSON Schema of an event type's data, with the shared definitions."""
        schema = dict(self.events[event_type].schema)
        schema.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        schema["$defs"] = {**self.definitions, **schema.get("$defs", {})}
        return schema

    def template_id(self, env: str, key: str, environ: Mapping[str, str] | None = None) -> str | None:
        override = (environ or {}).get(f"COURIER_{key.upper()}_TEMPLATE")
        return override or self.templates.get(env, {}).get(key)


def _by_event(rules: Iterable[Notification]) -> dict[str, dict[str, tuple[Notification, ...]]]:
    """The enabled rules by the events that trigger them, cancel their sends, or reschedule them."""
    index: dict[str, dict[str, list[Notification]]] = {"trigger": {}, "cancel": {}, "reschedule": {}}
    for rule in rules:
        if not rule.enabled:
            continue
        for trigger in rule.triggers:
            index["trigger"].setdefault(trigger, []).append(rule)
        for m in rule.cancel_on:
            index["cancel"].setdefault(m.event, []).append(rule)
        for m in rule.reschedule_on:
            index["reschedule"].setdefault(m.event, []).append(rule)
    return {k: {t: tuple(v) for t, v in d.items()} for k, d in index.items()}
