"""Checks that run the core itself: every rule's example event is validated and planned.

The loader proves the rules are well formed; this proves each one does something sensible
with a real event: the example matches its event's schema, renders, and does not land in
the past (a warning: legal, but usually a mistake).
"""

from __future__ import annotations

import os
from typing import Mapping

from .core.decide import DigestItem, Renderer, Send, digest_send, plan
from .core.events import EventRejected, parse_event
from .rules.loader import check
from .rules.model import Config, Notification
from .rules.problems import Mark, Problem


def check_all(root: str, environ: Mapping[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    config, problems = check(root, environ)
    if config is None:
        return None, problems
    for rule in config.notifications.values():
        problems.extend(check_example(config, rule))
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


def default_env(environ: Mapping[str, str] | None = None) -> str:
    return (environ if environ is not None else os.environ).get("ENGINE_ENV", "production")
