"""One notification built from its blocks, each checked against the rest of the configuration.

A rule with an error is not built; its problems are all reported. An error that does not block
(an unknown category, a template key missing from an environment...) still keeps the rule from
the configuration, but leaves it in the partial one, so that its example is tried too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ..model import Category, EventType, Notification, Window
from ..problems import Problem
from ..wording import dotted
from . import batching, blocks
from .declarations import ANY_SCHEMA, RawRule
from .findings import Checked, Finding
from .reads import EventReads

T = TypeVar("T")


@dataclass(frozen=True)
class Scope:
    """What each rule is checked against: the rest of the configuration."""

    events: Mapping[str, EventType]
    definitions: Mapping[str, Any]
    categories: Mapping[str, Category]
    windows: Mapping[str, Window]
    templates: Mapping[str, Mapping[str, str]]  # environment -> template key -> Courier template id
    defaults: Mapping[str, Any]
    quiet: Window | None
    # (file, notification id) -> what its checks read as absent: (block,) or (block, key), for shape errors
    misshapen: Mapping[tuple[str, Any], set[tuple[Any, ...]]]
    broken_schemas: set[str]  # event types whose schema has an error, or ANY_SCHEMA


class RuleChecker:
    def __init__(self, scope: Scope):
        self.scope = scope
        self.reads = EventReads(scope.events, scope.definitions, scope.broken_schemas)

    def check(self, rule: RawRule) -> tuple[Notification | None, list[Problem]]:
        """The notification `rule` says (None when it has an error), and its problems."""
        found: list[Finding] = []
        checked = self.build(rule, found)
        problems = [_problem(rule, f) for f in found]
        blocked = bool(found) and any(f.severity == "error" and f.blocks for f in found)
        if blocked or not self.plannable(rule, checked["triggers"]):
            return None, problems
        return Notification(id=rule.id, **checked, **_as_written(rule.raw), mark=rule.mark), problems

    def build(self, rule: RawRule, found: list[Finding]) -> dict[str, Any]:
        """The fields of the notification, from each block in turn; their problems go to `found`.
        A block with a shape error (or missing where the shape requires it) is read as absent: its
        meaning is not checked, and the schema's message stands alone."""
        parts = self.scope.misshapen.get((rule.doc.file, rule.id), set())
        misshapen = {part[0] for part in parts if len(part) == 1}
        raw = _well_shaped(rule.raw, parts)
        fields = self.timing(raw, misshapen, found)
        fields.update(self.ends(raw, fields["triggers"], misshapen, found))
        fields.update(self.content(raw, fields["triggers"], found))
        self.across_blocks(rule, raw, fields, misshapen, found)
        fields.update(self.delivery(rule, raw, fields["triggers"], misshapen, found))
        return fields

    def timing(self, raw: Mapping[str, Any], misshapen: set[Any], found: list[Finding]) -> dict[str, Any]:
        """What triggers the rule, its category, its schedule (quiet hours applied) and its digest."""
        scope = self.scope
        triggers = _take(blocks.trigger(raw.get("trigger") or {}, scope.events), found) \
            if "trigger" not in misshapen else ()
        category = _take(blocks.category(raw, scope.categories), found) if "category" not in misshapen else ""
        schedule = _take(blocks.schedule(raw.get("schedule") or {"at": "once"}, scope.defaults, scope.windows), found)
        return {"triggers": triggers, "category": category,
                "schedule": blocks.quiet_hours(schedule, category, scope.categories, scope.quiet),
                "digest": _take(blocks.digest(raw), found)}

    def ends(self, raw: Mapping[str, Any], triggers: tuple[str, ...], misshapen: set[Any],
             found: list[Finding]) -> dict[str, Any]:
        """The events that cancel or reschedule what the rule planned."""
        key = raw.get("key")
        # Without a well-shaped key, what the matches say of theirs would only repeat the key's error.
        matched = found if "key" not in misshapen else []
        return {"cancel_on": _take(blocks.matches(raw, "cancel_on", triggers, key, self.reads), matched),
                "reschedule_on": _take(blocks.matches(raw, "reschedule_on", triggers, key, self.reads), matched)}

    def content(self, raw: Mapping[str, Any], triggers: tuple[str, ...], found: list[Finding]) -> dict[str, Any]:
        """Its template, its throttle and its batch."""
        return {"template": _take(blocks.template(raw.get("template"), self.scope.templates), found),
                "throttle": _take(blocks.throttle(raw), found),
                "batch": _take(batching.batch(raw, triggers, self.reads), found)}

    def across_blocks(self, rule: RawRule, raw: Mapping[str, Any], fields: Mapping[str, Any], misshapen: set[Any],
                      found: list[Finding]) -> None:
        """What the blocks say together: the event data they read, and the names `requires` asks for."""
        draft = blocks.Draft(fields["triggers"], raw.get("key"), fields["schedule"], fields["digest"],
                             fields["reschedule_on"], fields["template"], blocks.required(raw), fields["throttle"])
        found += blocks.event_reads(raw, draft, self.reads)
        # What `data` provides is every name it has, a misshapen value's included.
        found += blocks.requires({**raw, "data": rule.raw.get("data")}) if "data" not in misshapen else []

    def delivery(self, rule: RawRule, raw: Mapping[str, Any], triggers: tuple[str, ...], misshapen: set[Any],
                 found: list[Finding]) -> dict[str, Any]:
        """Its channels, routing and expiry, and its example."""
        channels, routing, expires_after = _take(blocks.delivery(raw, self.scope.defaults), found)
        example = _take(blocks.example(raw, rule.id, triggers, rule.doc), found) if "trigger" not in misshapen \
            else None
        return {"channels": channels, "routing": routing, "expires_after": expires_after, "example": example}

    def plannable(self, rule: RawRule, triggers: tuple[str, ...]) -> bool:
        """Whether the rule's shape and its events' schemas are sound enough to plan its example
        (else its example's problems would only repeat theirs)."""
        broken = self.scope.broken_schemas
        misshapen = (rule.doc.file, rule.id) in self.scope.misshapen
        return not misshapen and ANY_SCHEMA not in broken and not broken & set(triggers)


def _well_shaped(raw: Mapping[str, Any], parts: set[tuple[Any, ...]]) -> dict[str, Any]:
    """`raw` without its misshapen parts: each a block, or a key of a block."""
    kept = dict(raw)
    for part in sorted(parts, key=len):
        if len(part) == 1:
            kept.pop(part[0], None)
        elif isinstance(kept.get(part[0]), dict):
            kept[part[0]] = {k: v for k, v in kept[part[0]].items() if k != part[1]}
    return kept


def _as_written(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a notification that are its values as written (their checks read them there)."""
    return {"audience": raw.get("audience", ""), "condition": (raw.get("trigger") or {}).get("condition"),
            "key": raw.get("key"), "requires": tuple(raw.get("requires") or ()), "data": dict(raw.get("data") or {}),
            "idempotency_key": raw.get("idempotency_key", Notification.idempotency_key),
            "enabled": bool(raw.get("enabled", True)), "description": str(raw.get("description", ""))}


def _take(checked: Checked[T], found: list[Finding]) -> T:
    value, problems = checked
    found += problems
    return value


def _problem(rule: RawRule, finding: Finding) -> Problem:
    path = ("notifications", rule.id) + finding.path
    said = f"{rule.id}: {finding.message}" if finding.named else f"{dotted(path)}: {finding.message}"
    return Problem.at(rule.doc.mark(path), said, finding.severity)
