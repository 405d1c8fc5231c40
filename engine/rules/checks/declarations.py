"""What every file of a configuration declares, gathered across files: definitions, event types
and notifications, each name once; the event schemas checked as JSON Schemas the engine can run."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from ..event_schema import pattern_problems
from ..json_schema import schema_error, subschemas
from ..model import EventType
from ..problems import Mark, Problem
from ..wording import did_you_mean, dotted, known, where
from ..yaml_source import Document

# What stands for "a definition is broken" among the names of broken event schemas: every
# event schema may reference a definition.
ANY_SCHEMA = "*"
DEFS = "#/$defs/"


def readable(broken_schemas: AbstractSet[str], *event_types: str) -> bool:
    """Whether the schemas of `event_types` can be read: none has an error (whose message then
    stands alone), and no definition has one."""
    return not broken_schemas or (ANY_SCHEMA not in broken_schemas and broken_schemas.isdisjoint(event_types))


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
        self.references: list[tuple[Document, tuple[Any, ...], Any]] = []  # (file, path, schema) of every schema

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
            at = ("definitions", name)
            if self.invalid(doc, at, fragment) | self.pattern_problems(doc, at, fragment):
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
        return self.invalid(doc, at, schema) | self.pattern_problems(doc, at, schema)

    def invalid(self, doc: Document, at: tuple[Any, ...], schema: Any) -> bool:
        """Whether the schema at `at` is no valid JSON Schema (a problem says why); its references
        are checked once every definition is known."""
        self.references.append((doc, at, schema))
        exc = schema_error(schema) if isinstance(schema, dict) else None
        if exc is not None:
            said = f"{dotted(at)}: not a valid JSON Schema: {exc.message}"
            self.declared.problems.append(Problem.at(doc.mark(at + tuple(exc.absolute_path)), said))
        return exc is not None

    def dangling_references(self) -> None:
        """Every `$ref` points inside the schema it is read in (an event's schema with every
        definition under `$defs`): nothing is fetched from elsewhere, and nothing is missing."""
        definitions = self.declared.definitions
        for doc, at, schema in self.references:
            own = schema.get("$defs") if isinstance(schema, dict) else None
            whole = {**schema, "$defs": {**definitions, **(own if isinstance(own, dict) else {})}} \
                if at[0] == "events" and isinstance(schema, dict) else {"$defs": definitions}
            for node, path in subschemas(schema, at):
                why = _unresolved(whole, node.get("$ref"), definitions)
                if why:
                    self.declared.problems.append(Problem.at(doc.mark(path + ("$ref",)), f"{dotted(path)}.$ref: {why}"))
                    self.declared.broken_schemas.add(at[1] if at[0] == "events" else ANY_SCHEMA)

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


def gather(docs: Iterable[Document], broken_schemas: Collection[str] = ()) -> Declared:
    """Everything `docs` declare, in file order, with the problems found on the way. A section
    that is not a mapping declares nothing (its shape error says why); references are not
    checked while a definition is broken (`broken_schemas` holds ANY_SCHEMA)."""
    gatherer = _Gatherer()
    for doc in docs:
        for name, fragment in _section(doc, "definitions"):
            gatherer.definition(doc, name, fragment)
        for type_name, raw in _section(doc, "events"):
            gatherer.event(doc, type_name, raw)
        for rule_id, raw in _section(doc, "notifications"):
            gatherer.notification(doc, rule_id, raw)
    gatherer.unevaluated_problems()
    if ANY_SCHEMA not in broken_schemas and ANY_SCHEMA not in gatherer.declared.broken_schemas:
        gatherer.dangling_references()
    return gatherer.declared


def _unresolved(whole: Mapping[str, Any], ref: Any, definitions: Mapping[str, Any]) -> str | None:
    """Why `ref`, read inside the schema `whole`, points at nothing it holds; None when it does."""
    if not isinstance(ref, str):
        return None
    if not ref.startswith("#"):
        return f"{ref!r} is no reference inside the event schemas: refer to a definition, as '{DEFS}NAME'"
    try:
        Registry().with_resource("", DRAFT202012.create_resource(whole)).resolver().lookup(ref)
    except Unresolvable:
        name = ref[len(DEFS):] if ref.startswith(DEFS) else ref
        return f"{ref!r} points at nothing{did_you_mean(name, definitions)}{known(definitions)}"
    return None


def _section(doc: Document, name: str) -> Iterable[tuple[Any, Any]]:
    found = doc.data.get(name)
    return found.items() if isinstance(found, dict) else ()
