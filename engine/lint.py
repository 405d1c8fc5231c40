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
from .rules.model import Config, Notification
from .rules.problems import Mark, Problem


def check_all(root: str) -> tuple[Config | None, list[Problem]]:
    """Every problem, in one run: the examples of the rules that can be planned are tried even
    when other rules or files have errors. The configuration is None when any is an error."""
    # What the examples make lives until the end, as what loading makes; and all the evaluation
    # of one validation is bounded in time together, however many rules are expensive.
    with collector_paused(), budget.validation():
        loaded = inspect(root)
        config, problems = loaded.partial, list(loaded.problems)
        if config is None:
            return None, problems
        tried = {rule.id: try_example(config, rule) for rule in config.notifications.values()}
        for rule in config.notifications.values():
            problems.extend(check_example(config, rule, tried[rule.id], loaded))
        problems.extend(lint_across_rules(config, tried, loaded))
    return loaded.config, sorted(set(problems), key=Problem.sort_key)


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
    example = rule.example
    if example is None:
        return Tried(None, [], {})
    raw = {"id": example.id, "type": example.type, "occurred_at": example.occurred_at, "data": dict(example.data)}
    try:
        event = parse_event(raw, config)
    except EventRejected as exc:
        return Tried(None, exc.problems, {})
    first, *others = _environments(config)
    decisions = {first: plan(config, rule, event, event.occurred_at, Renderer(env=first, environ={}))}
    for env in others:
        decisions[env] = planned_in(config, rule, event, decisions[first], env)
    return Tried(event, [], decisions)


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
    for name, value in rule.data.items():
        alone = replace(rule, data={name: value}, requires=())
        if expressions.is_template(value) and _failure(config, alone, event, renderer):
            return name
    return None


def check_example(config: Config, rule: Notification, tried: Tried, loaded: Loaded | None = None) -> list[Problem]:
    mark = rule.mark or Mark(config.root)
    if rule.example is None:
        return [Problem.at(mark, f"{rule.id}: no example event; add one so it can be previewed and snapshotted",
                           "warning")]
    at = rule.example.mark or mark
    if tried.event is None:
        return [Problem.at(at, f"{rule.id}: the example event is invalid: {path.replace('$', 'example', 1)}: {msg}")
                for path, msg in tried.rejected]
    found: list[Problem] = []
    for env, decisions in tried.decisions.items():
        renderer = Renderer(env=env, environ={})
        for decision in _sends(config, rule, decisions, renderer):
            if decision.reason and decision.reason.startswith(_NO_TEMPLATE_ID):
                continue
            if decision.reason and decision.reason.startswith(("render failed", "condition failed", "no recipient")):
                found.append(_failed_example(config, rule, tried.event, renderer, decision.reason, at, loaded))
            elif decision.reason == "past":
                found.append(Problem.at(at, f"{rule.id}: with its example event this send lands in the past and is "
                                            "skipped; is the offset right?", "warning"))
    if not found and rule.condition and not tried.first:
        found.append(Problem.at(at, f"{rule.id}: the example event does not meet the condition {rule.condition!r}",
                                "warning"))
    return list(dict.fromkeys(found))


def _failed_example(config: Config, rule: Notification, event: Event, renderer: Renderer, reason: str, at: Mark,
                    loaded: Loaded | None) -> Problem:
    """A failure of the example, at the line of the expression that fails: the condition, or
    the data entry (named) whose render fails; else at the example."""
    said = f"with its example event ({renderer.env}): {reason}"
    if reason.startswith("condition failed"):
        where = loaded.mark(rule.id, "trigger", "condition") if loaded else None
        return Problem.at(where or at, f"{rule.id}: trigger.condition: {said}")
    name = _failing_value(config, rule, event, renderer) if reason.startswith("render failed") else None
    where = loaded.mark(rule.id, "data", name) if loaded and name else None
    if where is None:
        return Problem.at(at, f"{rule.id}: {said}")
    return Problem.at(where, f"{rule.id}: data.{name}: {said}")


SAME_TEMPLATE_WINDOW = timedelta(hours=1)


def _scheduled(decisions: list[Decision]) -> list[Send]:
    return [d for d in decisions if isinstance(d, Send) and d.status == "scheduled"]


def lint_across_rules(config: Config, tried: Mapping[str, Tried], loaded: Loaded | None = None) -> list[Problem]:
    """Warnings about rules that are legal alone but risky together or in a recipient's day.
    No schema with an error is read (`loaded` names them)."""
    found: list[Problem] = []
    rules = [r for r in config.notifications.values() if r.enabled]
    # Only rules with the same trigger, audience and a template key in common can collide.
    sharing: dict[tuple[str, str, str], list[Notification]] = {}
    for r in rules:
        keys = r.template.keys()
        for trigger in r.triggers:
            for key in keys:
                sharing.setdefault((trigger, r.audience, key), []).append(r)
    view = SchemaView(config.definitions)

    @cache
    def key_schema(event_type: str, path: str) -> Mapping[str, Any]:
        return view.resolve(view.field(config.event_schema(event_type), tuple(path.split("."))).schema or {})

    for rule in rules:
        mark = rule.mark or Mark(config.root)
        event, sends = tried[rule.id].event, _scheduled(tried[rule.id].first)
        # 1. Two rules sending the same template to the same person close together.
        if event is not None and sends:
            found.extend(_same_template(config, rule, event, sends, sharing))
        # 2. A send that lands inside the recipient's quiet hours (only transactional ones can).
        if config.quiet_hours and not rule.schedule.quiet_hours:
            found.extend(_in_quiet_hours(config, rule, mark, sends))
        # 3. A cancel or reschedule key that can never equal the rule's own key.
        matched = (m.event for m in (*rule.cancel_on, *rule.reschedule_on))
        if rule.key and (loaded is None or loaded.readable(*rule.triggers, *matched)):
            found.extend(_keys_never_equal(config, rule, mark, key_schema))
    return list(dict.fromkeys(found))


def _in_quiet_hours(config: Config, rule: Notification, mark: Mark, sends: list[Send]) -> list[Problem]:
    found = []
    for s in sends:
        local = s.send_at.astimezone(recipient_zone(s.recipient, config.timezone))
        if config.quiet_hours and config.quiet_hours.contains(local.time().replace(tzinfo=None)):
            found.append(Problem.at(mark, f"{rule.id}: with its example event it goes out at {local:%H:%M} in the "
                                          "recipient's zone, inside quiet hours", "warning"))
    return found


def _keys_never_equal(config: Config, rule: Notification, mark: Mark,
                      key_schema: Callable[[str, str], Mapping[str, Any]]) -> list[Problem]:
    assert rule.key is not None
    found = []
    own = {t: key_schema(t, rule.key) for t in rule.triggers if t in config.events}
    for match in (*rule.cancel_on, *rule.reschedule_on):
        theirs = key_schema(match.event, match.key)
        for trigger, mine in own.items():
            why = _never_equal(mine, theirs)
            if why:
                found.append(Problem.at(mark, f"{rule.id}: {match.event} key {match.key!r} can never equal {trigger} "
                                              f"key {rule.key!r}: {why}", "warning"))
    return found


def _same_template(config: Config, rule: Notification, event: Event, sends: list[Send],
                   sharing: Mapping[tuple[str, str, str], list[Notification]]) -> list[Problem]:
    found = []
    renderer = Renderer(env=_environments(config)[0], environ={})
    mine = rule.template.keys()
    others = {other.id: other for key in mine for other in sharing.get((event.type, rule.audience, key), [])
              if other.id > rule.id}
    for other in others.values():
        shared = set(mine) & set(other.template.keys())
        other_sends = _scheduled(plan(config, other, event, event.occurred_at, renderer))
        for a in sends:
            for b in other_sends:
                if abs(a.send_at - b.send_at) < SAME_TEMPLATE_WINDOW:
                    found.append(Problem.at(other.mark or rule.mark or Mark(config.root),
                                            f"{other.id}: sends template {sorted(shared)[0]!r} to the same "
                                            f"{rule.audience} as {rule.id} within {SAME_TEMPLATE_WINDOW} of it",
                                            "warning"))
    return found


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
