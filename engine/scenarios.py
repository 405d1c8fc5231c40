"""Behaviour scenarios: given events (and deploys, direct sends, preferences), the sends expected.

A scenario is a YAML file a product manager writes; docs/scenarios.md documents every key.
This module reads one (every mistake reported at once, as FILE:LINE:COL), runs it through the
preview (the live engine on a scratch database and a virtual clock), compares what was sent with
what the file expects, and words the difference. `engine test` and the test suite both use it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, cast

from .core.decide import Renderer
from .preview import Step, run
from .rules.delivery_options import ROUTING
from .rules.model import Config
from .rules.problems import Problem
from .rules.timeparse import format_instant, parse_instant
from .rules.yaml_source import Document, load_file
from .runtime import Runtime

Match = Literal["only", "all"]
MATCHES: tuple[Match, ...] = ("only", "all")
STATUSES = ("sent", "pending", "cancelled", "skipped")
TOP_KEYS = ("description", "match", "people", "preferences", "events", "direct", "deploy", "until", "expect",
            "expect_duplicates")
EXPECT_REQUIRED = ("notification", "recipient", "send_at", "status")
EXPECT_KEYS = (*EXPECT_REQUIRED, "reason", "template", "channels", "routing", "expires_at", "data")
# Checked only when an expectation gives them, each compared with the send's field of the same name.
EXACT_KEYS = ("reason", "template", "channels", "routing", "expires_at")
DEPLOY_KEYS = ("at", "pause", "remove", "templates")
DIRECT_REQUIRED = ("at", "notification", "recipient", "send_at")
DIRECT_KEYS = (*DIRECT_REQUIRED, "data")
YamlPath = tuple[str | int, ...]


class Expected(TypedDict):
    """One expected send. Every key after `status` is checked only when given."""

    notification: str
    recipient: str
    send_at: str  # in UTC, as the preview writes it
    status: str
    reason: NotRequired[str | None]
    template: NotRequired[str]
    channels: NotRequired[list[str]]  # the channels it goes out on, after per-channel preferences
    routing: NotRequired[str]
    expires_at: NotRequired[str | None]  # in UTC, as the preview writes it
    data: NotRequired[dict[str, Any]]
    line: int


class Deploy(TypedDict):
    at: datetime
    pause: list[str]
    remove: list[str]
    templates: dict[str, str]
    line: int


class Direct(TypedDict):
    at: datetime
    notification: str
    recipient: dict[str, Any] | str
    send_at: datetime
    data: dict[str, Any] | None
    line: int


class Scenario(TypedDict):
    path: str
    description: str
    match: Match
    events: list[Any]  # envelopes as written; the engine checks them when the scenario runs
    event_lines: list[int]
    until: str | None
    preferences: dict[str, dict[str, bool]]
    preference_lines: dict[tuple[str, str], int]
    deploy: list[Deploy]
    direct: list[Direct]
    expect: list[Expected]
    expect_duplicates: list[str]


class ScenarioError(Exception):
    """The scenario file itself is wrong; `problems` says where and what, every one of them."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems))


# -- reading a file ---------------------------------------------------------------------------

class _Reader:
    """Checks one parsed scenario, collecting a problem (with its position) for each mistake."""

    def __init__(self, doc: Document):
        self.doc, self.problems = doc, list[Problem]()

    def error(self, path: YamlPath, message: str, *, key: bool = False) -> None:
        mark = self.doc.mark(path, key=key)
        self.problems.append(Problem(mark.file, mark.line, mark.col, message))

    def line(self, path: YamlPath) -> int:
        return self.doc.mark(path).line

    def keys(self, data: dict[str, Any], path: YamlPath, allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for name in data:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                self.error((*path, name), f"{what}: unknown key `{name}` ({hint}allowed: {', '.join(allowed)})",
                           key=True)

    def required(self, data: dict[str, Any], path: YamlPath, names: Iterable[str], what: str) -> bool:
        absent = [n for n in names if n not in data]
        if absent:
            self.error(path, f"{what}: needs {', '.join(f'`{n}`' for n in absent)}")
        return not absent

    def entry(self, value: Any, path: YamlPath, what: str, allowed: Iterable[str],
              needed: Iterable[str]) -> dict[str, Any] | None:
        """One item of a list of mappings: checked for unknown and missing keys (None when it
        cannot be read further)."""
        found = self.mapping(value, path, what)
        self.keys(found, path, allowed, what)
        return found if found and self.required(found, path, needed, what) else None

    def text(self, value: Any, path: YamlPath, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.error(path, f"{what} must be text")
            return ""
        return value

    def instant(self, value: Any, path: YamlPath, what: str) -> datetime | None:
        try:
            return parse_instant(value)
        except ValueError as exc:
            self.error(path, f"{what}: {exc} (quote it)" if not isinstance(value, str) else f"{what}: {exc}")
            return None

    def mapping(self, value: Any, path: YamlPath, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, f"{what} must be a mapping (key: value)")
            return {}
        return value

    def items(self, value: Any, path: YamlPath, what: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"{what} must be a list (lines starting with `- `)")
            return []
        return value

    def names(self, value: Any, path: YamlPath, what: str) -> list[str]:
        found = self.items(value, path, what)
        for i, name in enumerate(found):
            if not isinstance(name, str):
                self.error((*path, i), f"{what}: each entry is a name")
        return [n for n in found if isinstance(n, str)]


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file; ScenarioError lists every mistake with its position."""
    doc, problems = load_file(str(path))
    if problems and doc.root is None:  # not YAML at all: nothing more can be said
        raise ScenarioError(problems)
    reader = _Reader(doc)
    reader.problems += problems  # such as an unquoted date: the rest is still worth checking
    data = doc.data
    if not isinstance(data, dict):
        reader.error((), "a scenario is a mapping: description, events, expect, ... (see docs/scenarios.md)")
        raise ScenarioError(reader.problems)
    scenario = _read(reader, data, str(path))
    if reader.problems:
        raise ScenarioError(sorted(reader.problems, key=lambda p: (p.line, p.col)))
    return scenario


def _read(reader: _Reader, data: dict[str, Any], path: str) -> Scenario:
    reader.keys(data, (), TOP_KEYS, "scenario")
    reader.required(data, (), ("description", "expect"), "a scenario")
    match = data.get("match", "only")
    if match not in MATCHES:
        reader.error(("match",), f"match must be `only` (check the notifications named in expect) or `all` "
                                 f"(expect lists every send); got {match!r}")
    directs = reader.items(data.get("direct"), ("direct",), "direct")
    direct = [_direct(reader, item, i) for i, item in enumerate(directs)]
    events = reader.items(data.get("events"), ("events",), "events")
    if not events and not direct:
        reader.error(("events",) if "events" in data else (), "a scenario needs `events` (or `direct` sends)")
    expected = reader.items(data.get("expect"), ("expect",), "expect")
    expect = [_expected(reader, item, i) for i, item in enumerate(expected)]
    if not expect and match == "only" and "expect" in data:
        reader.error(("expect",), "expect is empty, so nothing is checked: list the sends you expect, "
                                  "or set `match: all` to check that nothing is sent")
    until = data.get("until")
    if until is not None:
        reader.instant(until, ("until",), "until")
    return Scenario(
        path=path,
        description=reader.text(data.get("description", "-"), ("description",), "description").strip(),
        match=cast(Match, match if match in MATCHES else "only"),
        events=events,
        event_lines=[reader.line(("events", i)) for i in range(len(events))],
        until=until if isinstance(until, str) else None,
        preferences=_preferences(reader, data.get("preferences")),
        preference_lines={(str(r), str(n)): reader.line(("preferences", r, n))
                          for r, prefs in _mappings(data.get("preferences")) for n in prefs},
        deploy=[_deploy(reader, item, i)
                for i, item in enumerate(reader.items(data.get("deploy"), ("deploy",), "deploy"))],
        direct=[d for d in direct if d is not None],
        expect=[e for e in expect if e is not None],
        expect_duplicates=reader.names(data.get("expect_duplicates"), ("expect_duplicates",), "expect_duplicates"),
    )


def _expected(reader: _Reader, item: Any, i: int) -> Expected | None:
    where: YamlPath = ("expect", i)
    what = f"expect[{i}]"
    entry = reader.entry(item, where, what, EXPECT_KEYS, EXPECT_REQUIRED)
    if entry is None:
        return None
    if entry["status"] not in STATUSES:
        reader.error((*where, "status"),
                     f"{what}: status must be one of {', '.join(STATUSES)}; got {entry['status']!r}")
    send_at = reader.instant(entry["send_at"], (*where, "send_at"), f"{what}: send_at")
    out = Expected(notification=reader.text(entry["notification"], (*where, "notification"), f"{what}: notification"),
                   recipient=reader.text(entry["recipient"], (*where, "recipient"), f"{what}: recipient"),
                   send_at=format_instant(send_at) if send_at else "", status=str(entry["status"]),
                   line=reader.line(where))
    if "reason" in entry:
        if entry["reason"] is not None and not isinstance(entry["reason"], str):
            reader.error((*where, "reason"), f"{what}: reason must be text (or null)")
        out["reason"] = entry["reason"]
    if "template" in entry:
        out["template"] = reader.text(entry["template"], (*where, "template"), f"{what}: template")
    _delivery(reader, entry, where, what, out)
    if "data" in entry:
        out["data"] = reader.mapping(entry["data"], (*where, "data"), f"{what}: data")
    return out


def _delivery(reader: _Reader, entry: dict[str, Any], where: YamlPath, what: str, out: Expected) -> None:
    """The optional keys about how the send goes out: its channels, routing and deadline."""
    if "channels" in entry:
        channels = entry["channels"]
        if not isinstance(channels, list) or not all(isinstance(c, str) and c for c in channels):
            reader.error((*where, "channels"), f"{what}: channels must be a list of channel names, "
                                               "such as [email, inbox]")
        else:
            out["channels"] = channels
    if "routing" in entry:
        if entry["routing"] not in ROUTING:
            reader.error((*where, "routing"),
                         f"{what}: routing must be one of {', '.join(ROUTING)}; got {entry['routing']!r}")
        out["routing"] = str(entry["routing"])
    if "expires_at" in entry:
        deadline = entry["expires_at"]
        if deadline is None:
            out["expires_at"] = None
        else:
            instant = reader.instant(deadline, (*where, "expires_at"), f"{what}: expires_at")
            out["expires_at"] = format_instant(instant) if instant else ""


def _preferences(reader: _Reader, value: Any) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    for recipient, prefs in reader.mapping(value or {}, ("preferences",), "preferences").items():
        where: YamlPath = ("preferences", recipient)
        chosen = reader.mapping(prefs or {}, where, f"preferences of {recipient}")
        for name, on in chosen.items():
            if not isinstance(on, bool):
                reader.error((*where, name), f"preferences of {recipient}: {name} must be true or false")
        out[str(recipient)] = {str(n): bool(on) for n, on in chosen.items()}
    return out


def _mappings(value: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in value.items() if isinstance(v, dict)] if isinstance(value, dict) else []


def _deploy(reader: _Reader, item: Any, i: int) -> Deploy:
    where: YamlPath = ("deploy", i)
    what = f"deploy[{i}]"
    entry = reader.mapping(item, where, what)
    reader.keys(entry, where, DEPLOY_KEYS, what)
    has_at = reader.required(entry, where, ("at",), what)
    at = reader.instant(entry.get("at"), (*where, "at"), f"{what}: at") if has_at else None
    templates = reader.mapping(entry.get("templates") or {}, (*where, "templates"), f"{what}: templates")
    for key, template_id in templates.items():
        if not isinstance(template_id, str):
            reader.error((*where, "templates", key), f"{what}: templates: {key} must be a Courier template id")
    return Deploy(at=at or datetime.min, pause=reader.names(entry.get("pause"), (*where, "pause"), f"{what}: pause"),
                  remove=reader.names(entry.get("remove"), (*where, "remove"), f"{what}: remove"),
                  templates={str(k): str(v) for k, v in templates.items()}, line=reader.line(where))


def _direct(reader: _Reader, item: Any, i: int) -> Direct | None:
    where: YamlPath = ("direct", i)
    what = f"direct[{i}]"
    entry = reader.entry(item, where, what, DIRECT_KEYS, DIRECT_REQUIRED)
    if entry is None:
        return None
    at = reader.instant(entry["at"], (*where, "at"), f"{what}: at")
    send_at = reader.instant(entry["send_at"], (*where, "send_at"), f"{what}: send_at")
    recipient = entry["recipient"]
    if not isinstance(recipient, (dict, str)):
        reader.error((*where, "recipient"), f"{what}: recipient is a person (id, email, name, timezone) or an id")
    data = reader.mapping(entry["data"], (*where, "data"), f"{what}: data") if "data" in entry else None
    if at is None or send_at is None or not isinstance(recipient, (dict, str)):
        return None
    notification = reader.text(entry["notification"], (*where, "notification"), f"{what}: notification")
    return Direct(at=at, notification=notification, recipient=recipient, send_at=send_at, data=data,
                  line=reader.line(where))


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """The scenario files named: each file itself, each folder's *.yaml and *.yml, sorted."""
    found: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            found += sorted(p for p in given.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            found.append(given)
    return found


# -- what the rules must know -----------------------------------------------------------------

def check(config: Config, scenario: Scenario) -> list[Problem]:
    """Names the scenario uses that the rules do not declare (a typo would otherwise only show
    as a send that never comes)."""
    problems: list[Problem] = []
    rules, path = config.notifications, scenario["path"]

    def unknown(name: str, line: int, what: str) -> None:
        close = difflib.get_close_matches(name, list(rules), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(Problem(path, line, 1, f"{what}: no notification `{name}` in the rules{hint}"))

    for i, item in enumerate(scenario["expect"]):
        if item["notification"] not in rules:
            unknown(item["notification"], item["line"], f"expect[{i}]")
        else:
            declared = rules[item["notification"]].channels
            for channel in item.get("channels", []):
                if channel not in declared:
                    problems.append(Problem(path, item["line"], 1, f"expect[{i}]: channels: `{channel}` is not a "
                                            f"channel of {item['notification']} (it has: {', '.join(declared)})"))
    for i, change in enumerate(scenario["deploy"]):
        for name in [*change["pause"], *change["remove"]]:
            if name not in rules:
                unknown(name, change["line"], f"deploy[{i}]")
    for i, call in enumerate(scenario["direct"]):
        if call["notification"] not in rules:
            unknown(call["notification"], call["line"], f"direct[{i}]")
    for recipient, prefs in scenario["preferences"].items():
        for name in prefs:
            if not _is_preference(config, name):
                line = scenario["preference_lines"].get((recipient, name), 1)
                problems.append(Problem(path, line, 1, f"preferences of {recipient}: `{name}` is neither a "
                                                    "notification, a category, nor notification:channel"))
    return problems


def _is_preference(config: Config, name: str) -> bool:
    notification, _, channel = name.partition(":")
    if channel:
        return notification in config.notifications and channel in config.notifications[notification].channels
    return name in config.notifications or name in config.categories


# -- running ----------------------------------------------------------------------------------

def deployed(config: Config, change: Deploy, env: str) -> Config:
    """The rules after a deploy: rules paused or removed, template ids of the env changed."""
    rules = dict(config.notifications)
    for rule_id in change["pause"]:
        if rule_id in rules:
            rules[rule_id] = replace(rules[rule_id], enabled=False)
    for rule_id in change["remove"]:
        rules.pop(rule_id, None)
    templates = {name: dict(mapping) for name, mapping in config.templates.items()}
    templates.setdefault(env, {}).update(change["templates"])
    return replace(config, notifications=rules, templates=templates)


def steps(scenario: Scenario) -> list[Step]:
    """The scenario's deploys and Python API calls, each at its time."""
    out: list[Step] = []
    for change in scenario["deploy"]:
        out.append((change["at"], _deploy_step(change)))
    for call in scenario["direct"]:
        out.append((call["at"], _direct_step(call)))
    return out


def _deploy_step(change: Deploy) -> Callable[[Runtime, datetime], None]:
    def apply(runtime: Runtime, _at: datetime) -> None:
        runtime.config = deployed(runtime.config, change, runtime.settings.env)
    return apply


def _direct_step(call: Direct) -> Callable[[Runtime, datetime], None]:
    def apply(runtime: Runtime, at: datetime) -> None:
        runtime.schedule(call["notification"], call["recipient"], call["send_at"], call["data"], now=at)
    return apply


def preferences_of(scenario: Scenario) -> dict[str, dict[str, bool]]:
    return scenario["preferences"]


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
    if problems:
        return Outcome(scenario, problems=problems)
    until = parse_instant(scenario["until"]) if scenario["until"] else None
    result = run(config, list(enumerate(scenario["events"], 1)), until, Renderer(env=env),
                 preferences_of(scenario), steps=steps(scenario))
    if result.rejected:
        return Outcome(scenario, problems=[
            Problem(scenario["path"], scenario["event_lines"][bad.line - 1], 1,
                    f"events[{bad.line - 1}]: {where}: {message}")
            for bad in result.rejected for where, message in bad.problems])
    produced = [row.as_json() for row in result.rows]
    missing, unexpected = compare(scenario["expect"], produced, scenario["match"])
    return Outcome(scenario, produced, missing, unexpected, list(result.duplicates))


# -- comparing --------------------------------------------------------------------------------

def checked(expected: list[Expected], produced: list[dict[str, Any]], match: Match) -> list[dict[str, Any]]:
    """The sends the expectations speak for: all of them, or those of the notifications named."""
    if match == "all":
        return list(produced)
    named = {e["notification"] for e in expected}
    return [row for row in produced if row["notification"] in named]


def matches(expected: Expected, row: dict[str, Any]) -> bool:
    if any(expected[k] != row[k] for k in EXPECT_REQUIRED):  # type: ignore[literal-required]
        return False
    if any(k in expected and expected[k] != row[k] for k in EXACT_KEYS):  # type: ignore[literal-required]
        return False
    data = row["data"]
    return all(name in data and data[name] == value for name, value in expected.get("data", {}).items())


def compare(expected: list[Expected], produced: list[dict[str, Any]],
            match: Match = "all") -> tuple[list[Expected], list[dict[str, Any]]]:
    """(expected but not produced, produced but not expected), pairing each expectation with one
    send. The pairing is a maximum matching, so a loose expectation (no reason, no data) never
    takes the one send a stricter one needed while another would have done."""
    rows = checked(expected, produced, match)
    partner: dict[int, int] = {}  # row index -> expectation index

    def pair(e: int, seen: set[int]) -> bool:
        for r, row in enumerate(rows):
            if r not in seen and matches(expected[e], row):
                seen.add(r)
                if r not in partner or pair(partner[r], seen):
                    partner[r] = e
                    return True
        return False

    paired = {e for e in range(len(expected)) if pair(e, set())}
    missing = [item for e, item in enumerate(expected) if e not in paired]
    return missing, [row for r, row in enumerate(rows) if r not in partner]


# -- the report -------------------------------------------------------------------------------

def report(outcome: Outcome) -> str:
    """What a person reads: pass or fail, and on failure what was expected but not produced,
    what was produced but not expected (with lines to paste if that is right), and every send."""
    scenario = outcome.scenario
    title = headline(scenario["description"])
    name = Path(scenario["path"]).stem
    if outcome.problems:
        where = [f"  {p.file}:{p.line}:{p.col}: {p.message}" for p in outcome.problems]
        return "\n".join([f"ERROR {name}: {title}", *where])
    if outcome.passed:
        return f"PASS  {name}: {title}"
    out = [f"FAIL  {name}: {title}", f"  {scenario['path']} (match: {scenario['match']}): {scenario['description']}"]
    if outcome.missing:
        out.append("  expected, but the rules did not produce:")
        for item in sorted(outcome.missing, key=lambda m: (m["send_at"], m["notification"])):
            out.append(f"    - {_line(item)}")
            out += _near_misses(item, outcome.produced)
    if outcome.unexpected:
        out.append("  produced, but not expected:")
        out += [f"    + {_line(row)}" for row in outcome.unexpected]
        out.append("  if these are right, add them under `expect:`:")
        out += [f"  - {as_yaml(row)}" for row in outcome.unexpected]
    if outcome.duplicates_differ:
        out.append(f"  duplicate event ids: expected {scenario['expect_duplicates']}, "
                   f"the engine ignored {outcome.duplicates}")
    out += _everything(outcome)
    return "\n".join(out)


def headline(description: str) -> str:
    """The first sentence of a description, for the one line a passing scenario gets."""
    first = re.split(r"(?<=[.!?:;])\s", " ".join(description.split()), maxsplit=1)[0]
    return first.rstrip(".:;")


def _near_misses(item: Expected, produced: list[dict[str, Any]]) -> list[str]:
    """The sends of the same notification to the same person, with the fields the item checks."""
    out = []
    for row in produced:
        if (row["notification"], row["recipient"]) == (item["notification"], item["recipient"]):
            got = f"{row['send_at']} {row['status']}" + (f" ({row['reason']})" if row["reason"] else "")
            got += "".join(f"  {k}={_shown(row[k])}" for k in EXACT_KEYS[1:] if k in item)
            if "data" in item:
                got += f"  data: {({k: row['data'].get(k, '<absent>') for k in item['data']})}"
            out.append(f"        the rules produced: {got}")
    return out


def _everything(outcome: Outcome) -> list[str]:
    scope = checked(outcome.scenario["expect"], outcome.produced, outcome.scenario["match"])
    kept = {id(row) for row in scope}
    note = "; · = not checked, match: only" if len(scope) < len(outcome.produced) else ""
    out = [f"  everything the rules produced (send_at order{note}):"]
    out += [f"    {' ' if id(row) in kept else '·'} {_line(row)}" for row in outcome.produced]
    return out


def _line(row: Expected | dict[str, Any]) -> str:
    reason = f"  ({row['reason']})" if row.get("reason") else ""
    extra, where = "", ""
    if "line" in row:  # an expectation: show what else it checks, and where it is written
        given = cast(dict[str, Any], row)
        extra += "".join(f"  {k}={_shown(given[k])}" for k in EXACT_KEYS[1:] if k in given)
        extra += f"  data⊇{row['data']}" if row.get("data") else ""
        where = f"  [scenario line {row['line']}]"
    return (f"{row['send_at']}  {row['notification']:<42} {row['recipient']:<14} "
            f"{row['status']:<9}{reason}{extra}{where}").rstrip()


def _shown(value: Any) -> str:
    """A checked field as the report writes it: a list of channels as in the scenario file."""
    return f"[{', '.join(map(str, value))}]" if isinstance(value, list) else str(value)


_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_SPECIAL = re.compile(r"^(?:y|n|yes|no|on|off|true|false|null)$", re.IGNORECASE)  # YAML 1.1 would read these


def as_yaml(row: dict[str, Any]) -> str:
    """One send as an `expect:` entry, in the flow style scenario files use."""
    fields = {"notification": row["notification"], "recipient": row["recipient"], "send_at": row["send_at"],
              "status": row["status"]}
    if row.get("reason"):
        fields["reason"] = row["reason"]
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in fields.items()) + "}"


def _scalar(value: str) -> str:
    return value if _PLAIN.match(value) and not _SPECIAL.match(value) else json.dumps(value, ensure_ascii=False)
