"""Checks that run the core itself: every rule's example event is validated and planned.

The loader proves the rules are well formed; this proves each one does something sensible
with a real event: the example matches its event's schema, renders, and does not land in
the past (a warning: legal, but usually a mistake).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import cache
from typing import Any

from .core.decide import Decision, DigestItem, Renderer, Send, digest_send, plan
from .core.events import Event, EventRejected, parse_event
from .core.timing import recipient_zone
from .rules import budget, expressions
from .rules.event_schema import SchemaView
from .rules.loader import Loaded, collector_paused, inspect
from .rules.model import Config, ExampleEvent, Notification
from .rules.problems import Mark, Problem


def check_all(root: str) -> tuple[Config | None, list[Problem]]:
    """Every problem, in one run: the examples of the rules that can be planned are tried even
    when other rules or files have errors. The configuration is None when any is an error."""
    # What the examples make lives until the end, as what loading makes; and all the evaluation
    # of one validation is bounded in time together, however many rules are expensive.
    with collector_paused(), budget.validation():
        loaded = inspect(root)
        if loaded.partial is None:
            return None, list(loaded.problems)
        problems = [*loaded.problems, *_examples_checked(loaded.partial, loaded)]
    return loaded.config, sorted(set(problems), key=Problem.sort_key)


def _examples_checked(config: Config, loaded: Loaded) -> list[Problem]:
    """The problems of every rule's example, alone and across the rules."""
    tried = {rule.id: try_example(config, rule) for rule in config.notifications.values()}
    alone = [p for rule in config.notifications.values() for p in check_example(config, rule, tried[rule.id], loaded)]
    return [*alone, *lint_across_rules(config, tried, loaded)]


@dataclass(frozen=True)
class Tried:
    """A rule's example event run through the core, once for every check that needs it."""

    event: Event | None  # None when there is no example or it is invalid
    rejected: list[tuple[str, str]]  # why the example is invalid: (JSON path, message)
    decisions: dict[str, list[Decision]]  # what the rule decides, per environment

    @property
    def first(self) -> list[Decision]:
        """The decisions in the first environment, the one the lints read."""
        return next(iter(self.decisions.values()), [])


def try_example(config: Config, rule: Notification) -> Tried:
    if rule.example is None:
        return Tried(None, [], {})
    try:
        event = parse_event(_envelope(rule.example), config)
    except EventRejected as exc:
        return Tried(None, exc.problems, {})
    return Tried(event, [], _decisions(config, rule, event))


def _envelope(example: ExampleEvent) -> dict[str, Any]:
    return {"id": example.id, "type": example.type, "occurred_at": example.occurred_at, "data": dict(example.data)}


def _decisions(config: Config, rule: Notification, event: Event) -> dict[str, list[Decision]]:
    """What the rule decides with the example in each environment, planned in full in the first."""
    first, *others = _environments(config)
    decisions = {first: plan(config, rule, event, event.occurred_at, Renderer(env=first, environ={}))}
    return {**decisions, **{env: planned_in(config, rule, event, decisions[first], env) for env in others}}


def planned_in(config: Config, rule: Notification, event: Event, first: list[Decision], env: str) -> list[Decision]:
    """What `plan` gives in `env` for the example, from what it gave in the first environment.

    Planning is the same in every environment up to the Courier template id of a rendered send
    (the examples are planned without `environ` or an unsubscribe linker), so a rendered send
    only has its template id looked up again; a rule whose condition does not hold decides
    nothing anywhere. Anything else (a failure, a digest item, a template id missing in `env`)
    is planned again in full."""
    if not first:
        return []
    if len(first) == 1 and isinstance(first[0], Send) and first[0].template_key is not None:
        template = config.template_id(env, first[0].template_key, {})
        if template:
            return [replace(first[0], template=template)]
    return plan(config, rule, event, event.occurred_at, Renderer(env=env, environ={}))


def _environments(config: Config) -> list[str]:
    return sorted(config.templates) or ["production"]


# A render that fails for want of a Courier template id: the loader has said so already.
_NO_TEMPLATE_ID = "render failed: no Courier template id"
# A send's reason that says the example itself fails.
_FAILED = ("render failed", "condition failed", "no recipient")


def _sends(config: Config, rule: Notification, decisions: list[Decision], renderer: Renderer) -> Iterator[Send]:
    """The sends of the example's decisions, a digest rendered over the example alone."""
    for decision in decisions:
        if isinstance(decision, DigestItem):
            decision = digest_send(config, rule, decision.recipient, [decision.item], decision.period_start,
                                   decision.period_end, decision.send_at, renderer)
        if isinstance(decision, Send):
            yield decision


def _failure(config: Config, rule: Notification, event: Event, renderer: Renderer) -> str | None:
    send = next(_sends(config, rule, plan(config, rule, event, event.occurred_at, renderer), renderer), None)
    return send.reason if send is not None and (send.reason or "").startswith("render failed") else None


def _failing_value(config: Config, rule: Notification, event: Event, renderer: Renderer) -> str | None:
    """The data entry whose render fails with the example, when it alone fails (rendered with
    the rule's other values left out); None when something else fails (a key, a selector)."""
    if _failure(config, replace(rule, data={}, requires=()), event, renderer):
        return None
    alone = (name for name, value in rule.data.items() if expressions.is_template(value)
             and _failure(config, replace(rule, data={name: value}, requires=()), event, renderer))
    return next(alone, None)


def check_example(config: Config, rule: Notification, tried: Tried, loaded: Loaded | None = None) -> list[Problem]:
    at = (rule.example.mark if rule.example else None) or rule.mark or Mark(config.root)
    if rule.example is None:
        return [Problem.at(at, f"{rule.id}: no example event; add one so it can be previewed and snapshotted",
                           "warning")]
    if tried.event is None:
        return [Problem.at(at, f"{rule.id}: the example event is invalid: {path.replace('$', 'example', 1)}: {msg}")
                for path, msg in tried.rejected]
    example = _Example(config, rule, tried.event, at, loaded)
    found = [p for env, decisions in tried.decisions.items() for p in example.problems(env, decisions)]
    return list(dict.fromkeys(found or example.unmet(tried)))


@dataclass(frozen=True)
class _Example:
    """A rule's valid example being checked: where it is, and where the loader saw the rule's values."""

    config: Config
    rule: Notification
    event: Event
    at: Mark
    loaded: Loaded | None

    def problems(self, env: str, decisions: list[Decision]) -> list[Problem]:
        renderer = Renderer(env=env, environ={})
        return [p for send in _sends(self.config, self.rule, decisions, renderer) for p in self.of(send, renderer)]

    def of(self, send: Send, renderer: Renderer) -> list[Problem]:
        reason = send.reason or ""
        if reason.startswith(_FAILED) and not reason.startswith(_NO_TEMPLATE_ID):
            return [self.failed(renderer, reason)]
        return [Problem.at(self.at, f"{self.rule.id}: with its example event this send lands in the past and is "
                                    "skipped; is the offset right?", "warning")] if reason == "past" else []

    def failed(self, renderer: Renderer, reason: str) -> Problem:
        """A failure of the example, at the line of the expression that fails: the condition, or
        the data entry (named) whose render fails; else at the example."""
        said = f"with its example event ({renderer.env}): {reason}"
        if reason.startswith("condition failed"):
            where = self.place("trigger", "condition")
            return Problem.at(where or self.at, f"{self.rule.id}: trigger.condition: {said}")
        rendering = reason.startswith("render failed")
        name = _failing_value(self.config, self.rule, self.event, renderer) if rendering else None
        where = self.place("data", name) if name else None
        if where is None:
            return Problem.at(self.at, f"{self.rule.id}: {said}")
        return Problem.at(where, f"{self.rule.id}: data.{name}: {said}")

    def place(self, part: str, key: str) -> Mark | None:
        return self.loaded.mark(self.rule.id, part, key) if self.loaded else None

    def unmet(self, tried: Tried) -> list[Problem]:
        """A warning when the example decides nothing because the rule's condition does not hold."""
        if not self.rule.condition or tried.first:
            return []
        return [Problem.at(self.at, f"{self.rule.id}: the example event does not meet the condition "
                                    f"{self.rule.condition!r}", "warning")]


SAME_TEMPLATE_WINDOW = timedelta(hours=1)
Sharing = dict[tuple[str, str, str], list[Notification]]  # (trigger, audience, template key) -> the rules


def _scheduled(decisions: list[Decision]) -> list[Send]:
    return [d for d in decisions if isinstance(d, Send) and d.status == "scheduled"]


def lint_across_rules(config: Config, tried: Mapping[str, Tried], loaded: Loaded | None = None) -> list[Problem]:
    """Warnings about rules that are legal alone but risky together or in a recipient's day.
    No schema with an error is read (`loaded` names them)."""
    rules = [r for r in config.notifications.values() if r.enabled]
    across = _Across(config, tried, loaded, _sharing(rules))
    return list(dict.fromkeys(p for rule in rules for p in across.lints(rule)))


def _sharing(rules: list[Notification]) -> Sharing:
    """Only rules with the same trigger, audience and a template key in common can collide."""
    sharing: Sharing = {}
    for rule in rules:
        keys = rule.template.keys()  # the variants' keys too, not a mapping's
        for trigger, key in ((t, k) for t in rule.triggers for k in keys):
            sharing.setdefault((trigger, rule.audience, key), []).append(rule)
    return sharing


class _Across:
    """The lints of one rule among the others; a key's schema is read once for all of them."""

    def __init__(self, config: Config, tried: Mapping[str, Tried], loaded: Loaded | None, sharing: Sharing):
        self.config, self.tried, self.loaded, self.sharing = config, tried, loaded, sharing
        self.view = SchemaView(config.definitions)
        self.key_schema = cache(self._key_schema)

    def _key_schema(self, event_type: str, path: str) -> Mapping[str, Any]:
        found = self.view.field(self.config.event_schema(event_type), tuple(path.split(".")))
        return self.view.resolve(found.schema or {})

    def lints(self, rule: Notification) -> list[Problem]:
        event, sends = self.tried[rule.id].event, _scheduled(self.tried[rule.id].first)
        mark = rule.mark or Mark(self.config.root)
        # 1. Two rules sending the same template to the same person close together.
        close = _same_template(self.config, rule, event, sends, self.sharing) if event is not None and sends else []
        # 2. A send that lands inside the recipient's quiet hours (only transactional ones can).
        quiet = _in_quiet_hours(self.config, rule, mark, sends) if not rule.schedule.quiet_hours else []
        # 3. A cancel or reschedule key that can never equal the rule's own key.
        keys = _keys_never_equal(self.config, rule, mark, self.key_schema) if self.keys_readable(rule) else []
        return [*close, *quiet, *keys]

    def keys_readable(self, rule: Notification) -> bool:
        matched = (m.event for m in (*rule.cancel_on, *rule.reschedule_on))
        return bool(rule.key) and (self.loaded is None or self.loaded.readable(*rule.triggers, *matched))


def _in_quiet_hours(config: Config, rule: Notification, mark: Mark, sends: list[Send]) -> list[Problem]:
    quiet = config.quiet_hours
    local = [s.send_at.astimezone(recipient_zone(s.recipient, config.timezone)) for s in sends if quiet]
    return [Problem.at(mark, f"{rule.id}: with its example event it goes out at {t:%H:%M} in the recipient's zone, "
                             "inside quiet hours", "warning")
            for t in local if quiet and quiet.contains(t.time().replace(tzinfo=None))]


def _keys_never_equal(config: Config, rule: Notification, mark: Mark,
                      key_schema: Callable[[str, str], Mapping[str, Any]]) -> list[Problem]:
    assert rule.key is not None
    own = {t: key_schema(t, rule.key) for t in rule.triggers if t in config.events}
    found = ((match, trigger, _never_equal(mine, key_schema(match.event, match.key)))
             for match in (*rule.cancel_on, *rule.reschedule_on) for trigger, mine in own.items())
    return [Problem.at(mark, f"{rule.id}: {match.event} key {match.key!r} can never equal {trigger} "
                             f"key {rule.key!r}: {why}", "warning") for match, trigger, why in found if why]


def _same_template(config: Config, rule: Notification, event: Event, sends: list[Send],
                   sharing: Sharing) -> list[Problem]:
    keys = rule.template.keys()
    others = {other.id: other for key in keys for other in sharing.get((event.type, rule.audience, key), [])
              if other.id > rule.id}
    return [p for other in others.values() for p in _too_close(config, rule, other, event, sends)]


def _too_close(config: Config, rule: Notification, other: Notification, event: Event,
               sends: list[Send]) -> list[Problem]:
    """A warning for each pair of sends, one of each rule, within SAME_TEMPLATE_WINDOW of each other."""
    renderer = Renderer(env=_environments(config)[0], environ={})
    theirs = _scheduled(plan(config, other, event, event.occurred_at, renderer))
    shared = sorted(set(rule.template.keys()) & set(other.template.keys()))[0]
    return [Problem.at(other.mark or rule.mark or Mark(config.root), f"{other.id}: sends template {shared!r} to the "
                       f"same {rule.audience} as {rule.id} within {SAME_TEMPLATE_WINDOW} of it", "warning")
            for a in sends for b in theirs if abs(a.send_at - b.send_at) < SAME_TEMPLATE_WINDOW]


def _never_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    # Keys are compared as strings, so a number and a string can still match ("42" == 42 -> "42").
    if a.get("type") in ("object", "array") or b.get("type") in ("object", "array"):
        return "one of them is not a single value"
    if "enum" in a and "enum" in b and not {str(v) for v in a["enum"]} & {str(v) for v in b["enum"]}:
        return "their enums share no value"
    if "const" in a and "const" in b and str(a["const"]) != str(b["const"]):
        return "their constants differ"
    if a.get("format") and b.get("format") and a["format"] != b["format"]:
        return f"one is a {a['format']}, the other a {b['format']}"
    return None
