"""Which rules an event triggers, cancels or reschedules: a pure function of (config, event)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..rules import expressions
from ..rules.model import Config, Match, Notification
from .events import Event


def read_path(data: Any, path: str) -> Any:
    """The value at a dotted path; KeyError naming the missing step."""
    value = data
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            raise KeyError(step)
        value = value[step]
    return value


def app_context(config: Config) -> dict[str, Any]:
    """What an expression sees as `app`: the product's name and addresses."""
    return {"name": config.app.name, "frontend_url": config.app.frontend_url, "support_email": config.app.support_email}


def context(config: Config, rule: Notification, event: Event, recipient: dict[str, Any] | None) -> dict[str, Any]:
    """The names an expression sees: event, recipient, notification, app, and the event's data
    fields (a data field with one of those names hides the built-in one)."""
    return {
        "event": {"id": event.id, "type": event.type, "occurred_at": event.occurred_at.isoformat()},
        "recipient": recipient or {},
        "notification": rule.id,
        "app": app_context(config),
        **event.data,
    }


def condition_holds(config: Config, rule: Notification, event: Event, recipient: dict[str, Any] | None = None) -> bool:
    if not rule.condition:
        return True
    return bool(expressions.evaluate(rule.condition, context(config, rule, event, recipient)))


@dataclass(frozen=True)
class Hit:
    rule: Notification
    match: Match
    key: str


def _hits(rules: tuple[Notification, ...], matches_of: str, event: Event) -> Iterator[Hit]:
    for rule in rules:
        for match in getattr(rule, matches_of):
            if match.event == event.type:
                try:
                    yield Hit(rule, match, str(read_path(event.data, match.key)))
                except KeyError:
                    continue


def triggered(config: Config, event: Event) -> tuple[Notification, ...]:
    return config.by_trigger(event.type)


def cancelled(config: Config, event: Event) -> list[Hit]:
    return list(_hits(config.by_cancel(event.type), "cancel_on", event))


def rescheduled(config: Config, event: Event) -> list[Hit]:
    return list(_hits(config.by_reschedule(event.type), "reschedule_on", event))
