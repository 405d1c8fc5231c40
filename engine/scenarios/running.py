"""Running a scenario: its names checked against the rules, then the preview (the live engine on a
scratch database and a virtual clock) with its deploys and direct sends, judged by `compare`."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..core.decide import Renderer
from ..preview import Rejected, Result, Step, run
from ..rules.model import Config
from ..rules.problems import Problem
from ..rules.timeparse import parse_instant
from ..runtime import Runtime
from .comparing import compare
from .model import Deploy, Direct, Expected, Scenario


@dataclass(frozen=True)
class Outcome:
    """What running a scenario showed. `problems` are mistakes in the file that only the rules
    reveal (an event its schema refuses, an unknown name): the scenario could not be judged."""

    scenario: Scenario
    produced: list[dict[str, Any]] = field(default_factory=list)  # every send, as `engine preview --format json`
    missing: list[Expected] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def duplicates_differ(self) -> bool:
        return sorted(self.duplicates) != sorted(self.scenario["expect_duplicates"])

    @property
    def passed(self) -> bool:
        return not (self.problems or self.missing or self.unexpected or self.duplicates_differ)


def run_scenario(config: Config, scenario: Scenario, env: str = "production") -> Outcome:
    """Run the scenario through the preview under `config` and compare with what it expects."""
    problems = check(config, scenario)
    return Outcome(scenario, problems=problems) if problems else _judged(scenario, _preview(config, scenario, env))


def _preview(config: Config, scenario: Scenario, env: str) -> Result:
    until = parse_instant(scenario["until"]) if scenario["until"] else None
    return run(config, list(enumerate(scenario["events"], 1)), until, Renderer(env=env), preferences_of(scenario),
               steps=steps(scenario))


def _judged(scenario: Scenario, result: Result) -> Outcome:
    if result.rejected:
        return Outcome(scenario, problems=_refused(scenario, result.rejected))
    produced = [row.as_json() for row in result.rows]
    missing, unexpected = compare(scenario["expect"], produced, scenario["match"])
    return Outcome(scenario, produced, missing, unexpected, list(result.duplicates))


def _refused(scenario: Scenario, rejected: list[Rejected]) -> list[Problem]:
    """The events the engine refused, each problem at the event's line in the scenario."""
    return [Problem(scenario["path"], scenario["event_lines"][bad.line - 1], 1, f"events[{bad.line - 1}]: {at}: {said}")
            for bad in rejected for at, said in bad.problems]


def preferences_of(scenario: Scenario) -> dict[str, dict[str, bool]]:
    return scenario["preferences"]


def steps(scenario: Scenario) -> list[Step]:
    """The scenario's deploys and Python API calls, each at its time."""
    return [*((change["at"], _deploy_step(change)) for change in scenario["deploy"]),
            *((call["at"], _direct_step(call)) for call in scenario["direct"])]


def _deploy_step(change: Deploy) -> Callable[[Runtime, datetime], None]:
    def apply(runtime: Runtime, _at: datetime) -> None:
        runtime.config = deployed(runtime.config, change, runtime.settings.env)
    return apply


def _direct_step(call: Direct) -> Callable[[Runtime, datetime], None]:
    def apply(runtime: Runtime, at: datetime) -> None:
        runtime.schedule(call["notification"], call["recipient"], call["send_at"], call["data"], now=at)
    return apply


def deployed(config: Config, change: Deploy, env: str) -> Config:
    """The rules after a deploy: rules paused or removed, template ids of the env changed."""
    rules = {rule_id: replace(rule, enabled=False) if rule_id in change["pause"] else rule
             for rule_id, rule in config.notifications.items() if rule_id not in change["remove"]}
    templates = {name: dict(mapping) for name, mapping in config.templates.items()}
    templates.setdefault(env, {}).update(change["templates"])
    return replace(config, notifications=rules, templates=templates)


# -- what the rules must know -----------------------------------------------------------------

def check(config: Config, scenario: Scenario) -> list[Problem]:
    """Names the scenario uses that the rules do not declare (a typo would otherwise only show
    as a send that never comes)."""
    return [*(p for i, item in enumerate(scenario["expect"]) for p in _expected_names(config, scenario, item, i)),
            *_deploy_names(config, scenario), *_direct_names(config, scenario), *_preference_names(config, scenario)]


def _expected_names(config: Config, scenario: Scenario, item: Expected, i: int) -> list[Problem]:
    rule, path = config.notifications.get(item["notification"]), scenario["path"]
    if rule is None:
        return _unknown(config, scenario, item["notification"], item["line"], f"expect[{i}]")
    return [Problem(path, item["line"], 1, f"expect[{i}]: channels: `{channel}` is not a channel of "
                                           f"{item['notification']} (it has: {', '.join(rule.channels)})")
            for channel in item.get("channels", []) if channel not in rule.channels]


def _deploy_names(config: Config, scenario: Scenario) -> list[Problem]:
    return [p for i, change in enumerate(scenario["deploy"]) for name in [*change["pause"], *change["remove"]]
            for p in _unknown(config, scenario, name, change["line"], f"deploy[{i}]")]


def _direct_names(config: Config, scenario: Scenario) -> list[Problem]:
    return [p for i, call in enumerate(scenario["direct"])
            for p in _unknown(config, scenario, call["notification"], call["line"], f"direct[{i}]")]


def _unknown(config: Config, scenario: Scenario, name: str, line: int, what: str) -> list[Problem]:
    """A problem when the rules have no notification `name`, naming the closest they have."""
    if name in config.notifications:
        return []
    close = difflib.get_close_matches(name, list(config.notifications), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return [Problem(scenario["path"], line, 1, f"{what}: no notification `{name}` in the rules{hint}")]


def _preference_names(config: Config, scenario: Scenario) -> list[Problem]:
    lines, path = scenario["preference_lines"], scenario["path"]
    return [Problem(path, lines.get((who, name), 1), 1, f"preferences of {who}: `{name}` is neither a notification, "
                                                        "a category, nor notification:channel")
            for who, chosen in scenario["preferences"].items() for name in chosen if not _is_preference(config, name)]


def _is_preference(config: Config, name: str) -> bool:
    notification, _, channel = name.partition(":")
    if channel:
        return notification in config.notifications and channel in config.notifications[notification].channels
    return name in config.notifications or name in config.categories
