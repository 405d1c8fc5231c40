"""Events: the envelope every event shares, checked against its type's schema and the limits of
what can be stored and sent.

Past the schema, an event is refused at the door (with the JSON path of each problem) when it
holds something the engine could accept but never store on every database or never deliver:
- a control character: NUL nowhere (PostgreSQL cannot store it), and none at all in an id or an
  address (the event id, a recipient's id, email and phone, a rule's key); text may hold tab,
  line feed and carriage return;
- an integer beyond ±(2**53 - 1): the range JSON carries exactly everywhere (RFC 7493), Courier
  included, and that the `money` filter formats to the cent; a float that is not finite;
- an id or key longer than its column (`engine/store/tables.py`): the event id and a recipient's
  id 200 characters, a rule's key 300, an idempotency or throttle key 500 once rendered.
Which data paths are recipient ids and rule keys depends on the rules the event's type triggers,
cancels or reschedules; they are worked out once per type.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..rules import expressions
from ..rules.event_schema import errors as schema_errors
from ..rules.event_schema import json_path, validator
from ..rules.model import Config, Notification
from ..rules.timeparse import parse_instant

ENVELOPE_KEYS = {"id", "type", "occurred_at", "data"}
MAX_ID = 200  # events.id, recipients.id, notifications.recipient_id, preferences.recipient_id
MAX_RULE_KEY = 300  # notifications.key: what cancel_on and reschedule_on match
MAX_STORED_KEY = 500  # notifications.idempotency_key and notifications.throttle_key
MAX_INTEGER = 2**53 - 1
ADDRESS_FIELDS = ("id", "email", "phone")
KEY = "a rule's key (what cancel_on and reschedule_on match)"  # the fields of a recipient that Courier's `to` carries

_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters but tab, LF and CR
_NOT_ID = re.compile("[\x00-\x1f\x7f]")
_JINJA_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


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


@dataclass(frozen=True)
class IdField:
    """A data path whose string is an id: no control character, at most `limit` characters."""

    path: tuple[str, ...]
    limit: int | None  # None: an address field, whose length the store does not bound
    what: str
    json_path: str


@dataclass(frozen=True)
class KeyTemplate:
    """A rule's idempotency or throttle key: the parts it reads, and its own text's length."""

    rule: Notification
    name: str
    reads: tuple[tuple[str, ...], ...]
    literal: int


@dataclass(frozen=True)
class TypeLimits:
    ids: tuple[IdField, ...]
    keys: tuple[KeyTemplate, ...]


def _validators(config: Config) -> dict[str, Any]:
    cached = config.__dict__.get("_validators")
    if cached is None:
        cached = {name: validator(config.event_schema(name)) for name in config.events}
        object.__setattr__(config, "_validators", cached)
    return cached


def type_limits(config: Config, event_type: str) -> TypeLimits:
    """The id paths and key templates of the rules an event type triggers, cancels or reschedules
    (worked out once per Config)."""
    cached: dict[str, TypeLimits] | None = config.__dict__.get("_type_limits")
    if cached is None:
        cached = {name: _limits_of(config, name) for name in config.events}
        object.__setattr__(config, "_type_limits", cached)
    return cached.get(event_type, TypeLimits((), ()))


def _limits_of(config: Config, event_type: str) -> TypeLimits:
    # A rescheduled rule is planned anew from the event, as a triggered one is.
    rules = config.by_trigger(event_type) + config.by_reschedule(event_type)
    planned = list({rule.id: rule for rule in rules}.values())
    found: dict[tuple[str, ...], IdField] = {}
    for rule in planned:
        _add_recipient_and_key(found, rule)
    for key in _matched_keys(config, event_type):
        _add_id(found, key, MAX_RULE_KEY, KEY)
    bounded = {field.path: field.limit for field in found.values() if field.limit is not None}
    return TypeLimits(tuple(found.values()), _keys_that_may_not_fit(planned, bounded))


def _add_recipient_and_key(found: dict[tuple[str, ...], IdField], rule: Notification) -> None:
    for name in ADDRESS_FIELDS:
        _add_id(found, f"{rule.audience}.{name}", MAX_ID if name == "id" else None,
                "a recipient's id" if name == "id" else "a recipient's address")
    if rule.key:
        _add_id(found, rule.key, MAX_RULE_KEY, KEY)


def _matched_keys(config: Config, event_type: str) -> Iterator[str]:
    """The paths of this event type's data that cancel_on and reschedule_on match on."""
    for rule in config.by_cancel(event_type) + config.by_reschedule(event_type):
        for match in rule.cancel_on + rule.reschedule_on:
            if match.event == event_type:
                yield match.key


def _add_id(found: dict[tuple[str, ...], IdField], path: str, limit: int | None, what: str) -> None:
    """`path` is an id; the tightest limit said of it stands."""
    steps = tuple(path.split("."))
    known = found.get(steps)
    if known is None or (limit is not None and (known.limit is None or limit < known.limit)):
        found[steps] = IdField(steps, limit, what, json_path(steps))


def _keys_that_may_not_fit(planned: list[Notification],
                           bounded: Mapping[tuple[str, ...], int]) -> tuple[KeyTemplate, ...]:
    """The key templates that may render longer than the store holds, one per shape."""
    keys: dict[tuple[Any, ...], KeyTemplate] = {}
    for rule in planned:
        for key in _key_templates(rule):
            alike = (key.name, key.reads, key.literal)  # rules sharing a key's shape: the longest id is the worst case
            if not _always_fits(key, bounded) and len(rule.id) > len(keys[alike].rule.id if alike in keys else ""):
                keys[alike] = key
    return tuple(keys.values())


def _key_templates(rule: Notification) -> Iterator[KeyTemplate]:
    # A digest's key is rendered from the recipient and the period (the engine's), not from an event.
    sources = [] if rule.digest else [("idempotency key", rule.idempotency_key)]
    if rule.throttle is not None:
        sources.append(("throttle key", rule.throttle.key))
    for name, source in sources:
        try:
            reads = tuple(ref.path for ref in expressions.analyse(source, expression=False))
        except expressions.ExpressionError:
            continue  # the rule's validation reports it; rendering it fails the send, with the reason
        yield KeyTemplate(rule, name, reads, len(_JINJA_CODE.sub("", source)))


def _always_fits(key: KeyTemplate, bounded: Mapping[tuple[str, ...], int]) -> bool:
    """Whether a key fits its column whatever the event holds, its ids being checked anyway (the
    default `{{ notification }}:{{ recipient.id }}:{{ event.id }}` does): then it costs nothing."""
    audience = tuple(key.rule.audience.split("."))
    fixed = {("notification",): len(key.rule.id), ("recipient", "id"): bounded.get(audience + ("id",)),
             ("event", "id"): MAX_ID}
    total = key.literal
    for path in key.reads:
        limit = fixed.get(path) if path in fixed else bounded.get(path)
        if limit is None:
            return False
        total += limit
    return total <= MAX_STORED_KEY


def parse_event(raw: Any, config: Config, where: str = "$") -> Event:
    """Check one envelope and its data; EventRejected with every problem, by JSON path."""
    if not isinstance(raw, Mapping):
        raise EventRejected([(where, "an event must be a JSON object")])
    when, wrong_time = _occurred_at(raw, where)
    problems = _envelope_problems(raw, where) + wrong_time + _type_and_data_problems(raw, config, where)
    if problems:
        raise EventRejected(list(dict.fromkeys(problems)))  # one of each, in the order found
    assert when is not None
    return Event(raw["id"], raw["type"], when, raw["data"])


def _envelope_problems(raw: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """Missing and unknown envelope fields, and a wrong event id."""
    problems = [(where, f"'{key}' is a required property") for key in sorted(ENVELOPE_KEYS - set(raw))]
    problems += [(f"{where}.{key}", "unknown envelope field (allowed: id, type, occurred_at, data)")
                 for key in sorted(set(raw) - ENVELOPE_KEYS)]
    if "id" in raw:
        problems += id_problems(f"{where}.id", raw["id"], MAX_ID, "an event id")
    return problems


def _occurred_at(raw: Mapping[str, Any], where: str) -> tuple[datetime | None, list[tuple[str, str]]]:
    if "occurred_at" not in raw:
        return None, []
    try:
        return parse_instant(raw["occurred_at"]), []
    except (ValueError, TypeError) as exc:
        return None, [(f"{where}.occurred_at", str(exc))]


def _type_and_data_problems(raw: Mapping[str, Any], config: Config, where: str) -> list[tuple[str, str]]:
    """An unknown type, data that is not an object, and, for a known type, the data's own problems."""
    event_type: Any = raw.get("type")
    data: Any = raw.get("data")
    known = isinstance(event_type, str) and event_type in config.events
    problems = [(f"{where}.type", f"unknown event type {event_type!r}")] if "type" in raw and not known else []
    if "data" in raw and not isinstance(data, Mapping):
        return problems + [(f"{where}.data", "must be an object")]
    if known and isinstance(data, Mapping):
        return problems + _data_problems(config, event_type, raw.get("id"), data, where + ".data")
    return problems


def _data_problems(config: Config, event_type: str, event_id: Any, data: Mapping[str, Any],
                   prefix: str) -> list[tuple[str, str]]:
    """The data against its type's schema, then its values, ids and keys against what can be stored."""
    problems = [(prefix + path[1:], message) for path, message in schema_errors(_validators(config)[event_type], data)]
    limited = _limit_problems(config, event_type, event_id if isinstance(event_id, str) else "", data, prefix)
    ids = {path for path, _ in limited}  # an id's own message says it better than the text's
    return problems + [p for p in value_problems(data, prefix) if p[0] not in ids] + limited


def id_problems(path: str, value: Any, limit: int | None, what: str) -> list[tuple[str, str]]:
    """The problems of an id (`what` names it in the message): not a non-empty string, longer than
    `limit`, or holding a control character; [] for a good one."""
    if not isinstance(value, str) or not value:
        return [(path, f"must be a non-empty string ({what})")]
    if limit is not None and len(value) > limit:
        return [(path, f"is {len(value)} characters long; {what} may have at most {limit}")]
    bad = _NOT_ID.search(value)
    if bad:
        return [(path, f"holds the control character U+{ord(bad.group()):04X}; {what} may hold none")]
    return []


def value_problems(data: Mapping[str, Any], prefix: str) -> list[tuple[str, str]]:
    """Control characters in any text or field name, integers beyond ±MAX_INTEGER, NaN and infinity."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(data, prefix)]
    while stack:
        node, path = stack.pop()
        for key, value in _items(node, path, problems):
            kind = type(value)  # exact types: parsed JSON holds no subclasses, and bool is not int here
            if kind is dict or kind is list:
                stack.append((value, _step(path, key)))
                continue
            problem = _scalar_problem(kind, value)
            if problem:
                problems.append((_step(path, key), problem))
    return problems


def _items(node: Any, path: str, problems: list[tuple[str, str]]) -> Any:
    """The (key or index, value) pairs of a list or an object; a problem for an object whose field
    names hold a control character."""
    if isinstance(node, list):
        return enumerate(node)
    if _NOT_TEXT.search("".join(key for key in node if isinstance(key, str))):
        problems.append((path, "a field name holds a control character"))
    return node.items()


def _scalar_problem(kind: type, value: Any) -> str | None:
    if kind is str:
        bad = _NOT_TEXT.search(value)
        return (f"holds the control character U+{ord(bad.group()):04X}; text may hold only tab, line feed and "
                "carriage return") if bad else None
    if kind is int:
        return None if -MAX_INTEGER <= value <= MAX_INTEGER else (
            f"is out of range: integers must lie within ±{MAX_INTEGER} (2**53 - 1)")
    if kind is float and not math.isfinite(value):
        return "must be a finite number"
    return None


def _step(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def _text(value: Any) -> str | None:
    """A scalar as a key or an id renders it; None for what has no such text (an object, a list,
    nothing, an integer refused for its size)."""
    if type(value) is str:
        return value
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INTEGER <= value <= MAX_INTEGER:
        return None
    return str(value)


def _read(value: Any, path: tuple[str, ...]) -> Any:
    # Event data is parsed JSON: dicts, lists and scalars (a typing.Mapping check costs ten times more).
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _limit_problems(config: Config, event_type: str, event_id: str, data: Mapping[str, Any],
                    prefix: str) -> list[tuple[str, str]]:
    limits = type_limits(config, event_type)
    problems = []
    for field in limits.ids:
        value = _text(_read(data, field.path))
        if value:  # an empty id is the schema's to refuse
            problems.extend(id_problems(prefix + field.json_path[1:], value, field.limit, field.what))
    longest: dict[str, tuple[int, str]] = {}  # one message per path: the longest key it makes
    for key in limits.keys:
        found = _key_length(key, event_id, data)
        if found is not None and found[0] > longest.get(found[1], (0, ""))[0]:
            longest[found[1]] = (found[0], f"makes the {key.name} of {key.rule.id} {found[0]} characters long; "
                                           f"at most {MAX_STORED_KEY} can be stored")
    problems.extend((prefix + path[1:], message) for path, (_, message) in longest.items())
    return problems


def _key_length(key: KeyTemplate, event_id: str, data: Mapping[str, Any]) -> tuple[int, str] | None:
    """(length, JSON path of its longest data part) when a key template renders longer than the
    store holds, else None. The length is the sum of what the template reads and of its own text:
    exact for plain lookups such as `{{ notification }}:{{ booking.id }}`, the kind keys are made of."""
    roots: dict[str, Any] = {"notification": key.rule.id, "event": {"id": event_id},
                             "recipient": _read(data, tuple(key.rule.audience.split(".")))}
    length, longest = key.literal, (0, "$")
    for path in key.reads:
        value = _text(_read(roots, path) if path[0] in roots else _read(data, path))
        if value is None:
            continue
        size = len(value)
        length += size
        if path[0] not in roots and size > longest[0]:
            longest = (size, json_path(path))
    return (length, longest[1]) if length > MAX_STORED_KEY else None
