"""Checks that run the core itself: every rule's example event is validated and planned.

The loader proves the rules are well formed; this proves each one does something sensible
with a real event: the example matches its event's schema, renders, and does not land in
the past (a warning: legal, but usually a mistake).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Mapping

from .core.decide import DigestItem, Renderer, Send, digest_send, plan
from .core.events import Event, EventRejected, parse_event
from .core.timing import recipient_zone
from .rules.event_schema import SchemaView
from .rules.loader import check
from .rules.model import Config, Notification
from .rules.problems import Mark, Problem


def check_all(root: str, environ: Mapping[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    config, problems = check(root, environ)
    if config is None:
        return None, problems
    for rule in config.notifications.values():
        problems.extend(check_example(config, rule))
    problems.extend(lint_across_rules(config))
    return config, sorted(problems, key=Problem.sort_key)


def check_example(config: Config, rule: Notification) -> list[Problem]:
    mark = rule.mark or Mark(config.root)
    example = rule.example
    if example is None:
        return [Problem.at(mark, f"{rule.id}: no example event; add one so it can be previewed and snapshotted", "warning")]
    at = example.mark or mark
    raw = {"id": example.id, "type": example.type, "occurred_at": example.occurred_at, "data": dict(example.data)}
    try:
        event = parse_event(raw, config)
    except EventRejected as exc:
        return [Problem.at(at, f"{rule.id}: the example event is invalid: {path.replace('$', 'example', 1)}: {msg}")
                for path, msg in exc.problems]
    found: list[Problem] = []
    for env in sorted(config.templates) or ["production"]:
        renderer = Renderer(env=env, environ={})
        for decision in plan(config, rule, event, event.occurred_at, renderer):
            if isinstance(decision, DigestItem):  # a digest renders when sent: render it over the example alone
                decision = digest_send(config, rule, decision.recipient, [decision.item], decision.period_start,
                                       decision.period_end, decision.send_at, renderer)
            if isinstance(decision, Send) and decision.reason and decision.reason.startswith(("render failed", "condition failed", "no recipient")):
                found.append(Problem.at(at, f"{rule.id}: with its example event ({env}): {decision.reason}"))
            elif isinstance(decision, Send) and decision.reason == "past":
                found.append(Problem.at(at, f"{rule.id}: with its example event this send lands in the past and is skipped; is the offset right?", "warning"))
    if not found and rule.condition and not plan(config, rule, event, event.occurred_at, Renderer(env=sorted(config.templates)[0] if config.templates else "production")):
        found.append(Problem.at(at, f"{rule.id}: the example event does not meet the condition {rule.condition!r}", "warning"))
    return list(dict.fromkeys(found))



SAME_TEMPLATE_WINDOW = timedelta(hours=1)


def _example_event(config: Config, rule: Notification) -> Event | None:
    e = rule.example
    if e is None:
        return None
    try:
        return parse_event({"id": e.id, "type": e.type, "occurred_at": e.occurred_at, "data": dict(e.data)}, config)
    except EventRejected:
        return None  # reported by check_example


def _scheduled(config: Config, rule: Notification, event: Event) -> list[Send]:
    renderer = Renderer(env=sorted(config.templates)[0] if config.templates else "production", environ={})
    return [d for d in plan(config, rule, event, event.occurred_at, renderer) if isinstance(d, Send) and d.status == "scheduled"]


def lint_across_rules(config: Config) -> list[Problem]:
    """Warnings about rules that are legal alone but risky together or in a recipient's day."""
    found: list[Problem] = []
    rules = [r for r in config.notifications.values() if r.enabled]
    view = SchemaView(config.definitions)
    # Only rules with the same trigger and audience can collide: compare within those groups.
    groups: dict[tuple[str, str], list[Notification]] = {}
    for r in rules:
        for trigger in r.triggers:
            groups.setdefault((trigger, r.audience), []).append(r)
    for rule in rules:
        mark = rule.mark or Mark(config.root)
        event = _example_event(config, rule)
        sends = _scheduled(config, rule, event) if event else []
        # 1. Two rules sending the same template to the same person close together.
        for other in groups.get((event.type, rule.audience), []) if event else []:
            if other.id <= rule.id:
                continue
            shared = set(rule.template.keys()) & set(other.template.keys())
            if not shared:
                continue
            for a in sends:
                for b in _scheduled(config, other, event):
                    if abs(a.send_at - b.send_at) < SAME_TEMPLATE_WINDOW:
                        found.append(Problem.at(other.mark or mark, f"{other.id}: sends template {sorted(shared)[0]!r} to the same {rule.audience} as {rule.id} within {SAME_TEMPLATE_WINDOW} of it", "warning"))
        # 2. A send that lands inside the recipient's quiet hours (only transactional ones can).
        if config.quiet_hours:
            for s in sends:
                local = s.send_at.astimezone(recipient_zone(s.recipient, config.timezone))
                if not rule.schedule.quiet_hours and config.quiet_hours.contains(local.time().replace(tzinfo=None)):
                    found.append(Problem.at(mark, f"{rule.id}: with its example event it goes out at {local:%H:%M} in the recipient's zone, inside quiet hours", "warning"))
        # 3. A cancel or reschedule key that can never equal the rule's own key.
        if rule.key:
            own = {t: view.field(config.event_schema(t), tuple(rule.key.split("."))).schema or {} for t in rule.triggers if t in config.events}
            for match in (*rule.cancel_on, *rule.reschedule_on):
                theirs = view.field(config.event_schema(match.event), tuple(match.key.split("."))).schema or {}
                for trigger, mine in own.items():
                    why = _never_equal(view.resolve(mine), view.resolve(theirs))
                    if why:
                        found.append(Problem.at(mark, f"{rule.id}: {match.event} key {match.key!r} can never equal {trigger} key {rule.key!r}: {why}", "warning"))
    return list(dict.fromkeys(found))


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


def default_env(environ: Mapping[str, str] | None = None) -> str:
    return (environ if environ is not None else os.environ).get("ENGINE_ENV", "production")
