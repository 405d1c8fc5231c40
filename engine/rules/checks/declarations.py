"""What every file of a configuration declares, gathered across files: definitions, event types
and notifications, each name once; the event schemas checked as JSON Schemas the engine can run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..event_schema import pattern_problems
from ..json_schema import schema_error, subschemas
from ..model import EventType
from ..problems import Mark, Problem
from ..wording import dotted, where
from ..yaml_source import Document

# What stands for "a definition is broken" among the names of broken event schemas: every
# event schema may reference a definition.
ANY_SCHEMA = "*"


@dataclass(frozen=True)
class RawRule:
    """A notification as its file has it, before its meaning is checked."""

    doc: Document
    id: str
    raw: dict[str, Any]
    mark: Mark  # where its key stands


@dataclass
class Declared:
    definitions: dict[str, Any] = field(default_factory=dict)
    events: dict[str, EventType] = field(default_factory=dict)
    rules: list[RawRule] = field(default_factory=list)
    broken_schemas: set[str] = field(default_factory=set)  # event types whose schema has an error, or ANY_SCHEMA
    problems: list[Problem] = field(default_factory=list)


class _Gatherer:
    def __init__(self) -> None:
        self.declared = Declared()
        self.seen: dict[str, dict[str, Mark]] = {"definition": {}, "event": {}, "notification": {}}
        self.pattern_properties = False  # whether any event schema or definition uses patternProperties
        self.unevaluated: list[tuple[Mark, tuple[Any, ...]]] = []  # where unevaluatedProperties stand

    def first(self, kind: str, name: str, mark: Mark) -> bool:
        """Whether `name` is declared here first; a problem when it was declared before."""
        seen = self.seen[kind]
        if name in seen:
            said = f"{kind} {name!r} is declared twice (also at {where(seen[name])})"
            self.declared.problems.append(Problem.at(mark, said))
            return False
        seen[name] = mark
        return True

    def definition(self, doc: Document, name: str, fragment: Any) -> None:
        if self.first("definition", name, doc.mark(("definitions", name), key=True)):
            self.declared.definitions[name] = fragment
            if self.pattern_problems(doc, ("definitions", name), fragment):
                self.declared.broken_schemas.add(ANY_SCHEMA)

    def event(self, doc: Document, type_name: str, raw: Any) -> None:
        first = self.first("event", type_name, doc.mark(("events", type_name), key=True))
        if first and isinstance(raw, dict) and isinstance(raw.get("schema"), dict):
            self.declared.events[type_name] = EventType(type_name, raw["schema"], str(raw.get("description", "")))
            if self.schema_problems(doc, type_name, raw["schema"]):
                self.declared.broken_schemas.add(type_name)

    def notification(self, doc: Document, rule_id: str, raw: Any) -> None:
        mark = doc.mark(("notifications", rule_id), key=True)
        if self.first("notification", rule_id, mark) and isinstance(raw, dict):
            self.declared.rules.append(RawRule(doc, rule_id, raw, mark))

    def schema_problems(self, doc: Document, type_name: str, schema: dict[str, Any]) -> bool:
        """Whether an event schema is not one: no valid JSON Schema, or a pattern the engine cannot run."""
        at = ("events", type_name, "schema")
        exc = schema_error(schema)
        if exc is not None:
            said = f"events.{type_name}.schema: not a valid JSON Schema: {exc.message}"
            self.declared.problems.append(Problem.at(doc.mark(at + tuple(exc.absolute_path)), said))
        return self.pattern_problems(doc, at, schema) or exc is not None

    def pattern_problems(self, doc: Document, at: tuple[Any, ...], schema: Any) -> bool:
        """Patterns run on event data, on a linear-time engine: one it cannot run is refused."""
        found = [Problem.at(doc.mark(path), f"{dotted(path)}: {message}")
                 for path, message in pattern_problems(schema, at)]
        self.declared.problems.extend(found)
        for node, path in subschemas(schema, at):
            if "patternProperties" in node:
                self.pattern_properties = True
            if "unevaluatedProperties" in node:
                self.unevaluated.append((doc.mark(path + ("unevaluatedProperties",), key=True), path))
        return bool(found)

    def unevaluated_problems(self) -> None:
        """jsonschema reads patternProperties with Python's backtracking `re` when it judges an
        `unevaluatedProperties` (through any $ref), so the two keywords may not meet in the
        event schemas of one configuration."""
        if self.pattern_properties and self.unevaluated:
            self.declared.broken_schemas.add(ANY_SCHEMA)
            for mark, path in self.unevaluated:
                said = (f"{dotted(path)}: unevaluatedProperties cannot be used where event schemas use "
                        f"patternProperties; use additionalProperties")
                self.declared.problems.append(Problem.at(mark, said))


def gather(docs: Iterable[Document]) -> Declared:
    """Everything `docs` declare, in file order, with the problems found on the way."""
    gatherer = _Gatherer()
    for doc in docs:
        for name, fragment in (doc.data.get("definitions") or {}).items():
            gatherer.definition(doc, name, fragment)
        for type_name, raw in (doc.data.get("events") or {}).items():
            gatherer.event(doc, type_name, raw)
        for rule_id, raw in (doc.data.get("notifications") or {}).items():
            gatherer.notification(doc, rule_id, raw)
    gatherer.unevaluated_problems()
    return gatherer.declared
