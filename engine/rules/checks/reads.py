"""What a rule reads of the events it is planned from, checked against their schemas: the paths
it names (audience, key, schedule.of...), its expressions and templates, the values a template
requires, and the keys its events match on. Rules repeat the same reads of the same events, so
each check is made once and its problems given to every rule that makes it."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from .. import expressions
from ..event_schema import SchemaView
from ..model import EventType, TemplateChoice
from ..problems import Severity
from ..wording import did_you_mean
from .declarations import readable
from .findings import Finding

# Names every expression may read besides the event's data fields.
CONTEXT_NAMES = {"event", "recipient", "notification", "app"}
DIGEST_NAMES = {"items", "period_start", "period_end", "totals"}
EVENT_FIELDS = {"id", "type", "occurred_at"}  # the envelope's
APP_FIELDS = {"name", "frontend_url", "support_email"}
# Roots whose fields are not in the event schema: any person field (checked on the example at
# run time), the notification itself and a digest's period and totals.
UNCHECKED_ROOTS = {"recipient", "notification", "period_start", "period_end", "totals"}

_PLAIN_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_BUILTIN_ATTRS = {"items", "keys", "values", "get", "upper", "lower", "title", "strip", "split", "startswith",
                  "endswith", "replace"}

# A problem of a check: a message (an error that keeps the rule from being planned), or a message
# and its severity (one that does not: the example is still tried).
Found = str | tuple[str, Severity]


class EventReads:
    """The checks of what rules read of their events, each made once."""

    def __init__(self, events: Mapping[str, EventType], definitions: Mapping[str, Any],
                 broken: Collection[str] = ()):
        self.events = events
        self.view = SchemaView(definitions)
        # Event types whose schema has an error, or all of them (a definition has one): nothing is
        # read in them, and their error stands alone.
        self.broken = set(broken)
        self.known: dict[tuple[Any, ...], list[Found]] = {}  # the problems of each check already made

    def readable(self, *event_types: str) -> bool:
        """Whether the schemas of `event_types` can be read: none has an error."""
        return readable(self.broken, *event_types)

    def schema(self, event_type: str) -> dict[str, Any]:
        event = self.events.get(event_type)
        return dict(event.schema) if event else {}

    def report(self, where: tuple[Any, ...], check: tuple[Any, ...],
               problems: Callable[[], Iterator[Found]]) -> list[Finding]:
        """The problems of `check` (found the first time it is made), at `where` in the rule."""
        known = self.known.get(check)
        if known is None:
            known = self.known[check] = list(problems())
        if not known:  # most checks find nothing, and are made thousands of times
            return []
        return [Finding(where, found) if isinstance(found, str) else Finding(where, found[0], found[1], blocks=False)
                for found in known]

    def path(self, where: tuple[Any, ...], event_type: str, path: str, what: str, *, person: bool = False,
             event_name: str | None = None, date_time: bool = False) -> list[Finding]:
        """A dotted field of the event the rule names (as its audience, key...), which must be required."""
        if not path or not self.readable(event_type):
            return []
        return self.report(where, ("path", event_type, path, what, person, event_name, date_time),
                           lambda: path_problems(self.view, self.schema(event_type), path, what, person, event_name,
                                                 date_time))

    def expression(self, where: tuple[Any, ...], source: str, event_type: str, digest: bool, *, expression: bool,
                   event_name: str | None = None, role: str = "strict") -> list[Finding]:
        """An expression (or a template, `expression` False) and every field it reads."""
        if not self.readable(event_type):
            return []
        return self.report(where, ("expression", source, event_type, digest, expression, event_name, role),
                           lambda: expression_problems(self.view, source, self.schema(event_type), digest, expression,
                                                       event_name, role))

    def not_null(self, where: tuple[Any, ...], value: Any, event_type: str, on: str | None) -> list[Finding]:
        """A value the template requires must not render null."""
        if value is None:
            return [Finding(where, f"the template requires {where[-1]!r}, but its value is null: give it a value, "
                                   f"or take it out of `requires`")]
        if not expressions.is_template(value) or not self.readable(event_type):
            return []
        return self.report(where, ("null", where[-1], value, event_type, on),
                           lambda: null_problems(self.view, where[-1], value, self.schema(event_type), on))

    def match(self, where: tuple[Any, ...], kind: str, trigger: str, key: str, event_type: str,
              theirs: str) -> list[Finding]:
        """The key an event matches on against the rule's own key."""
        if trigger not in self.events or not self.readable(trigger, event_type):
            return []
        return self.report(where, ("match", kind, trigger, key, event_type, theirs),
                           lambda: match_problems(self.view, self.schema(trigger), self.schema(event_type),
                                                  kind, trigger, key, event_type, theirs))

    def cases(self, event_type: str, template: TemplateChoice, on: str | None) -> list[Finding]:
        """A selector that is a plain field with an enum must have a case for every value."""
        select = (template.select or "").strip()
        if not _PLAIN_PATH.match(select) or not self.readable(event_type):
            return []
        field = self.view.field(self.schema(event_type), tuple(select.split(".")))
        values = (field.schema or {}).get("enum")
        missing = [str(v) for v in values or () if str(v) not in template.cases]
        if not missing:
            return []
        said = f" of {on!r}" if on else ""
        values_said = ", ".join(map(repr, missing))
        return [Finding(("template", "cases"), f"template select {select!r}{said} can be {values_said}, "
                                               "which no case names (add a case or a default)")]


def path_problems(view: SchemaView, schema: Mapping[str, Any], path: str, what: str, person: bool,
                  event_name: str | None, date_time: bool) -> Iterator[str]:
    field = view.field(schema, tuple(path.split(".")))
    on = f" of {event_name!r}" if event_name else ""
    if field.schema is None:
        yield _undeclared(view, schema, path, field.missing, f"{what} {path!r}: the event schema{on}")
        return
    if not field.required:
        yield f"{what} {path!r}: the event schema{on} must declare it as required (add it to `required`)"
        return
    if date_time and field.schema.get("format") != "date-time":
        yield f"{what} {path!r}: the event schema{on} must declare it as a string with format: date-time"
    missing = [p for p in ("id", "email") if p not in field.schema.get("properties", {})] if person else []
    if missing:
        yield f"{what} {path!r} is not a person (no {', '.join(missing)} in its schema)"


def _undeclared(view: SchemaView, schema: Mapping[str, Any], path: str, missing: Any, said: str) -> str:
    """`said` does not declare the step `missing` of `path`, with the name it may have meant."""
    steps = tuple(path.split("."))
    prefix = steps[:steps.index(missing)] if missing in steps else ()
    known = view.field(schema, prefix).schema or {}
    return f"{said} does not declare {missing!r}{did_you_mean(missing, known.get('properties', {}), prefix)}"


def context_names(view: SchemaView, schema: Mapping[str, Any], digest: bool) -> set[str]:
    """The names an expression may start with."""
    if digest:  # a digest renders from its collected items, not from one event
        return CONTEXT_NAMES | DIGEST_NAMES
    return set(view.resolve(schema).get("properties", {})) | CONTEXT_NAMES


def expression_problems(view: SchemaView, source: str, schema: Mapping[str, Any], digest: bool, expression: bool,
                        event_name: str | None, role: str = "strict") -> Iterator[Found]:
    on = f" (in {event_name!r})" if event_name else ""
    try:
        refs = expressions.analyse(source, expression=expression)
    except expressions.ExpressionError as exc:
        yield f"expression {source!r}: {exc}"
        return
    names = context_names(view, schema, digest)
    for ref in refs:
        yield from _reference_problems(view, source, schema, ref, names, on, role, expression)


def _reference_problems(view: SchemaView, source: str, schema: Mapping[str, Any], ref: expressions.Reference,
                        names: set[str], on: str, role: str, expression: bool) -> Iterator[Found]:
    root = ref.path[0]
    if root not in names:
        yield f"expression {source!r} reads {root!r}, which the event does not declare{on}{did_you_mean(root, names)}"
    elif root in _FIXED_FIELDS:
        fields, said = _FIXED_FIELDS[root]
        if len(ref.path) > 1 and ref.path[1] not in fields:
            yield f"expression {source!r} reads {root}.{ref.path[1]}; {said}"
    elif root == "items":
        if ref.index and len(ref.path) > 1:
            yield from read_problems(view, source, schema, ref.path[1:], on)
    elif root not in UNCHECKED_ROOTS:
        yield from read_problems(view, source, schema, ref.path, on, ref, role, expression)


# What the engine provides beside the event's data: the envelope and the app's settings.
_FIXED_FIELDS = {"event": (EVENT_FIELDS, "the envelope has id, type, occurred_at"),
                 "app": (APP_FIELDS, "app has name, frontend_url, support_email")}


def read_problems(view: SchemaView, source: str, schema: Mapping[str, Any], path: tuple[str, ...], on: str = "",
                  ref: expressions.Reference | None = None, role: str = "strict",
                  expression: bool = False) -> Iterator[Found]:
    """What is wrong with reading `path`: a step the schema does not declare, or (for a
    `ref` read from one event) an optional step read with nothing to guard it."""
    node: Mapping[str, Any] = view.resolve(schema)
    for i, step in enumerate(path):
        resolved = view.resolve(node)
        if resolved.get("type") == "array" or step in _BUILTIN_ATTRS:
            return  # list/str methods and indexes are beyond a static check
        props = resolved.get("properties")
        if props is None:
            return
        if step not in props:
            yield (f"expression {source!r} reads {'.'.join(path[:i + 1])!r}, which the event schema does not declare"
                   f"{on}{did_you_mean(step, props, path[:i])}")
            return
        if ref is not None and step not in resolved.get("required", ()) and not ref.optional_ok(i):
            yield _optional_read(source, path[:i + 1], on, role, expression)
            return
        node = props[step]


def _optional_read(source: str, path: tuple[str, ...], on: str, role: str, expression: bool) -> tuple[str, Severity]:
    """The problem of reading an optional field with nothing to guard it, and how to fix it."""
    dotted = ".".join(path)
    fix = _guard(source, dotted, expression)
    said = (f"expression {source!r} reads {dotted!r}, which the event schema{on} does not require "
            f"(it is not in `required`)")
    if role == "required":
        return (f"{said}: the template requires this value, and a send whose event lacks it is skipped; add "
                f"{path[-1]!r} to `required` in the event schema, or take it out of `requires` and write "
                f"{fix}"), "error"
    if role == "data":
        return f"{said}: a send whose event lacks it is skipped (render failed); write {fix}", "warning"
    return f"{said}: an event that lacks it fails here and its send is skipped; write {fix}", "error"


def _guard(source: str, dotted: str, expression: bool) -> str:
    """How to read the optional field `dotted` in `source` safely."""
    lone = not expression and re.fullmatch(r"\{\{\s*" + re.escape(dotted) + r"\s*\}\}", source.strip())
    return (f"{{{{ {dotted} | default(none) }}}}" if lone
            else f"`{dotted} is defined and ...`, or `{dotted} | default(none)`" if expression
            else f"`{dotted} | default(none)` there, or test `{dotted} is defined` first")


def null_problems(view: SchemaView, name: str, source: str, schema: Mapping[str, Any],
                  on: str | None) -> Iterator[Found]:
    try:
        found = expressions.nullable(source, expression=False)
    except expressions.ExpressionError:
        return  # reported by the expression check
    if found is None:
        return
    why = found.why or next((f"the event schema{f' of {on!r}' if on else ''} lets {'.'.join(path)!r} be null"
                             for path in found.paths if _allows_null(view.field(schema, path).schema)), None)
    if why:
        yield (f"the template requires {name!r}, but its value {source!r} can render null ({why}): give a value the "
               f"template can use (e.g. `| default('')`), or take {name!r} out of `requires`"), "error"


def _allows_null(schema: Mapping[str, Any] | None) -> bool:
    kind = (schema or {}).get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind) or None in ((schema or {}).get("enum") or ())


def match_problems(view: SchemaView, mine_schema: Mapping[str, Any], their_schema: Mapping[str, Any], kind: str,
                   trigger: str, key: str, event_type: str, theirs: str) -> Iterator[Found]:
    """A key of the ids of two different kinds of thing (`client.id` against `booking.id`) never matches."""
    mine_path, their_path = tuple(key.split(".")), tuple(theirs.split("."))
    if mine_path == their_path or not _an_id(mine_path) or not _an_id(their_path):
        return
    mine = view.field(mine_schema, mine_path[:-1]).schema
    other = view.field(their_schema, their_path[:-1]).schema
    if mine is None or other is None or view.same_kind(mine, other):
        return
    same = view.field(their_schema, mine_path).schema is not None
    fix = f"did you mean key: {key}?" if same else "match on the id of the same thing"
    yield (f"{kind} key {theirs!r} of {event_type!r} can never match the notification's key {key!r} of {trigger!r}: "
           f"one is the id of a {their_path[-2]}, the other of a {mine_path[-2]}; {fix}"), "error"


def _an_id(path: tuple[str, ...]) -> bool:
    """Whether `path` is the id of a thing (`booking.id`)."""
    return len(path) >= 2 and path[-1] == "id"
