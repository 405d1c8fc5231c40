"""What `POST /events` reads: the engine's own envelope (one, or `{"events": [...]}`), or CloudEvents
1.0 in JSON, one structured event (`application/cloudevents+json`) or a batch
(`application/cloudevents-batch+json`).

Every format becomes the engine's envelope (`engine.core.events`), checked by the one door
(`Runtime.parse`); a problem the door finds is then reported at the path the sender's body has.
The mapping is written down in docs/ingest.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH = 1000
CLOUDEVENT = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
SPECVERSION = "1.0"

# CloudEvents attribute -> envelope field; the other attributes are checked, then left out.
TO_ENVELOPE = {"id": "id", "type": "type", "time": "occurred_at", "data": "data"}
FROM_ENVELOPE = {field: attribute for attribute, field in TO_ENVELOPE.items()}
CONTEXT = {"specversion", "source", "subject", "datacontenttype", "dataschema"}
_ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")  # CloudEvents 1.0: lower-case ASCII letters and digits
_PLAIN_KEY = re.compile(r"\w{1,50}", re.ASCII)  # a name a JSON path can carry as it is
_JSON_MEDIA = re.compile(r"application/(?:[\w.+-]+\+)?json", re.ASCII)
_PARSED_PATH = re.compile(r"\$(?:\.events\[(\d+)\])?(.*)", re.DOTALL)
_REQUIRED = re.compile(r"^'(\w+)' is a required property")


class FormatRefused(Exception):
    """The body's shape is refused before any event is read: `status` 413 or 422."""

    def __init__(self, status: int, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.problems = status, message, problems or []


@dataclass(frozen=True)
class Batch:
    """The envelopes a body holds, for `Runtime.parse`, and what its format refuses on its own."""

    envelopes: list[Any]
    cloudevents: bool = False
    batch: bool = False  # a CloudEvents batch (a native batch is `{"events": [...]}`, which the door's paths name)
    problems: list[tuple[str, str]] = field(default_factory=list)

    def translate(self, problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The door's problems (paths `$...` for one event, `$.events[i]...` for several), as the
        body spells them."""
        if not self.cloudevents:
            return problems
        return [self._translated(path, message) for path, message in problems]

    def _translated(self, path: str, message: str) -> tuple[str, str]:
        found = _PARSED_PATH.fullmatch(path)
        assert found is not None  # the door's paths all start at `$`
        index, rest = int(found.group(1) or 0), found.group(2)
        head, dot, tail = rest[1:].partition(".") if rest.startswith(".") else ("", "", rest)
        if head in FROM_ENVELOPE:
            rest = f".{FROM_ENVELOPE[head]}{dot}{tail}"
        required = _REQUIRED.match(message)
        if required and required.group(1) in FROM_ENVELOPE:
            message = f"'{FROM_ENVELOPE[required.group(1)]}' is a required property"
        return (f"$[{index}]" if self.batch else "$") + rest, message


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def read(content_type: str | None, payload: Any) -> Batch:
    """The envelopes of a parsed body, by its Content-Type; FormatRefused for a batch that is empty,
    not a list, or longer than MAX_BATCH."""
    kind = media_type(content_type)
    if kind == CLOUDEVENT:
        envelope, problems = cloudevent(payload, "$")
        return Batch([envelope], cloudevents=True, problems=problems)
    if kind == CLOUDEVENTS_BATCH:
        return _cloudevents_batch(payload)
    return _native(payload)


def _native(payload: Any) -> Batch:
    if not (isinstance(payload, dict) and set(payload) == {"events"}):
        return Batch([payload])
    batch = payload["events"]
    if not isinstance(batch, list) or not batch:
        raise FormatRefused(422, "events must be a non-empty list", [("$.events", "must be a non-empty list")])
    _bounded(batch)
    return Batch(batch)


def _cloudevents_batch(payload: Any) -> Batch:
    if not isinstance(payload, list) or not payload:
        raise FormatRefused(422, "a CloudEvents batch must be a non-empty JSON array",
                            [("$", "must be a non-empty array")])
    _bounded(payload)
    envelopes, problems = [], []
    for i, item in enumerate(payload):
        envelope, found = cloudevent(item, f"$[{i}]")
        envelopes.append(envelope)
        problems.extend(found)
    return Batch(envelopes, cloudevents=True, batch=True, problems=problems)


def _bounded(batch: list[Any]) -> None:
    if len(batch) > MAX_BATCH:
        raise FormatRefused(413, f"at most {MAX_BATCH} events per request")


def cloudevent(raw: Any, where: str) -> tuple[Any, list[tuple[str, str]]]:
    """(the envelope a structured CloudEvent maps to, the problems of its other attributes). What is
    not an object is handed on as it is: the door says what is wrong with it."""
    if not isinstance(raw, dict):
        return raw, []
    envelope = {TO_ENVELOPE[name]: value for name, value in raw.items() if name in TO_ENVELOPE}
    problems = []
    for name in ("specversion", "source"):
        if name not in raw:
            problems.append((where, f"'{name}' is a required property"))
    for name, value in raw.items():
        problem = _attribute_problem(name, value)
        if problem:
            problems.append((f"{where}.{name}" if _PLAIN_KEY.fullmatch(name) else where, problem))
    return envelope, problems


def _attribute_problem(name: str, value: Any) -> str | None:
    if name in TO_ENVELOPE:
        return None  # the door checks these as the envelope's fields
    if name == "specversion":
        return None if value == SPECVERSION else f"must be '{SPECVERSION}' (CloudEvents {SPECVERSION})"
    if name == "source":
        return None if isinstance(value, str) and value else "must be a non-empty string (a URI-reference)"
    if name == "data_base64":
        return "binary data is not accepted: send the event's data as a JSON object in 'data'"
    if value is None:  # the JSON format's way of leaving an optional attribute out
        return None
    if name == "datacontenttype":
        return None if _is_json_media(value) else "must be application/json (the engine reads data as JSON)"
    if name in CONTEXT:
        return None if isinstance(value, str) else "must be a string"
    return _extension_problem(name, value)


def _is_json_media(value: Any) -> bool:
    return isinstance(value, str) and _JSON_MEDIA.fullmatch(media_type(value)) is not None


def _extension_problem(name: str, value: Any) -> str | None:
    if not _ATTRIBUTE_NAME.fullmatch(name):
        return (f"{name[:50]!r} is not a CloudEvents attribute name (at most 20 lower-case ASCII letters or digits; "
                "the envelope's own fields go in 'data')")
    if isinstance(value, (dict, list)):
        return "an extension attribute must be a string, a number or a boolean"
    return None
