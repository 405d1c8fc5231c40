"""Load notifications.yaml and everything it includes: parse, check shape, check meaning, build.

Two passes, as in every configuration tool worth copying: the shape of each file by
`schema.json`, then the meaning across files (unknown events, missing templates, fields the
event does not promise...). Every problem is collected; none stops the others being found.
"""

from __future__ import annotations

import difflib
import gc
import glob
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from . import budget, delivery_options, expressions
from .event_schema import SchemaView, pattern_problems, subschemas
from .json_schema import Checker, most_specific, schema_error
from .model import (
    App,
    Category,
    Config,
    Digest,
    EventType,
    ExampleEvent,
    Match,
    Notification,
    RateLimit,
    Schedule,
    TemplateChoice,
    Throttle,
    Window,
)
from .problems import ConfigError, Mark, Problem, Severity
from .timeparse import check_cron, is_zone, parse_duration, parse_local_time
from .yaml_source import Document, file_kind, load_file

SCHEMA_PATH = Path(__file__).with_name("schema.json")
# The most values all the files of a configuration may hold (see yaml_source.MAX_NODES for one
# file): 5 000 notifications are about 550 000, and take about 300 MB to check.
MAX_TOTAL_NODES = 1_000_000
# The most files one include pattern may name.
MAX_INCLUDED = 1_000
ROOT_ONLY = ("version", "app", "defaults", "categories", "windows", "rate_limits", "retention", "include")
# Names every expression may read besides the event's data fields.
CONTEXT_NAMES = {"event", "recipient", "notification", "app"}
DIGEST_NAMES = {"items", "period_start", "period_end", "totals"}
COMMON_DATA = ("app_name", "frontend_url", "support_email", "user_name", "user_email")
EVENT_FIELDS = {"id": {"type": "string"}, "type": {"type": "string"}, "occurred_at": {"type": "string", "format": "date-time"}}
APP_FIELDS = {"name": {"type": "string"}, "frontend_url": {"type": "string"}, "support_email": {"type": "string"}}


@lru_cache(maxsize=1)
def rule_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def rule_file_checker() -> Checker:
    return Checker(rule_schema())


@lru_cache(maxsize=1)
def templates_map_checker() -> Checker:
    return Checker({**rule_schema()["$defs"]["templates_map"], "$defs": rule_schema()["$defs"]})


class _Loader:
    def __init__(self, root: str, environ: Mapping[str, str]):
        self.root = root
        self.base = os.path.dirname(os.path.abspath(root))
        self.real_base = os.path.realpath(self.base)
        self.read_paths = {os.path.realpath(root)}  # every file read, resolved: none is read twice
        self.nodes_read = 0  # values in the files read so far, aliases counted at each use
        self.budget_spent = False
        self.environ = environ
        self.problems: list[Problem] = []
        self.shape_problems: set[Problem] = set()  # from schema.json; dropped where a clearer one stands
        self.misshapen: set[tuple[str, str]] = set()  # (file, notification id) of rules with shape errors
        self.broken_schemas: set[str] = set()  # event types whose schema has an error ("*": a definition has one)
        self.partial: Config | None = None  # the rules that can be planned, when others have errors
        self.places: dict[str, dict[str, dict[str, Mark]]] = {}  # rule id -> "data"/"trigger" -> key -> mark
        self.docs: list[Document] = []
        self.pattern_properties = False  # whether any event schema or definition uses patternProperties
        self.unevaluated: list[tuple[Mark, tuple[Any, ...]]] = []  # where unevaluatedProperties stand

    # -- helpers -------------------------------------------------------------------------
    def display(self, path: str) -> str:
        rel = os.path.relpath(os.path.abspath(path), os.getcwd())
        return path if rel.startswith("..") else rel

    def error(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem.at(mark, message))

    def warn(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem.at(mark, message, "warning"))

    def read(self, path: str) -> Document:
        doc, problems = load_file(path, self.display(path))
        self.problems.extend(problems)
        self.nodes_read += doc.nodes
        return doc

    def over_budget(self, mark: Mark) -> bool:
        """True (with a problem, once) when the files read so far hold more than the whole
        configuration may; no further file is read then."""
        if self.nodes_read <= MAX_TOTAL_NODES:
            return False
        if not self.budget_spent:
            self.budget_spent = True
            self.error(mark, f"the configuration's files hold more than {MAX_TOTAL_NODES} values in all; "
                             f"the files from here on are not read")
        return True

    def included(self, pattern: str, mark: Mark) -> list[str]:
        """The files an include pattern names: regular files inside the configuration's folder
        (symbolic links resolved), each read once; a problem for anything else. Rule files come
        from pull requests: an include may not read /etc/*, /proc/self/status or /dev/zero."""
        if os.path.isabs(pattern) or ".." in re.split(r"[/\\]", pattern):
            self.error(mark, f"include: {pattern!r} must name files inside the configuration's folder "
                             f"(no absolute path, no '..')")
            return []
        matches = sorted(glob.glob(pattern, root_dir=self.base))
        if not matches:
            self.error(mark, f"include: {pattern!r} matches no file")
        elif len(matches) > MAX_INCLUDED:
            self.error(mark, f"include: {pattern!r} matches {len(matches)} files; at most {MAX_INCLUDED} may be included")
            return []
        paths = []
        for match in matches:
            path = os.path.join(self.base, match)
            why = self.not_includable(path)
            if why:
                self.error(mark, f"include: {pattern!r}: {match!r} {why}")
            elif os.path.realpath(path) not in self.read_paths:
                self.read_paths.add(os.path.realpath(path))
                paths.append(path)
        return paths

    def not_includable(self, path: str) -> str | None:
        """Why the file at `path` may not be read as part of the configuration, or None."""
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.real_base]) != self.real_base:
            return "leads outside the configuration's folder (through a symbolic link)"
        if real == os.path.realpath(self.root):
            return f"is {os.path.basename(self.root)} itself, which cannot include itself"
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        return None if stat.S_ISREG(mode) else f"is {file_kind(mode)}, not a regular file"

    def check_shape(self, doc: Document, checker: Checker) -> bool:
        ok = True
        for error in checker.iter_errors(doc.data, plain=True):  # read by yaml_source: no tuple in it
            ok = False
            error = most_specific(error)
            path = tuple(error.absolute_path)
            mark = doc.mark(path)
            if len(path) > 1 and path[0] == "notifications":
                self.misshapen.add((doc.file, path[1]))
            elif len(path) > 1 and path[0] in ("events", "definitions"):
                self.broken_schemas.add(path[1] if path[0] == "events" else "*")
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = set(error.schema.get("properties", {}))
                extra = [k for k in error.instance if k not in allowed]
                if extra:
                    mark = doc.mark(path + (extra[0],), key=True)
                    where = _dotted(path) or "the top level"
                    self.shape_error(mark, f"{where}: unknown key {extra[0]!r}{_did_you_mean(extra[0], allowed)} "
                                           f"(allowed: {', '.join(sorted(allowed))})")
                    continue
            if error.validator == "propertyNames":
                bad = error.instance
                mark = doc.mark(path + (bad,), key=True)
                self.shape_error(mark, f"{_dotted(path)}: {bad!r} is not a valid name here ({error.message.split(' does not match ')[-1] if 'does not match' in error.message else error.message})")
                continue
            message = _plain(error.message)
            if error.validator == "enum":
                message += delivery_options.hint(error.instance, error.validator_value) or _did_you_mean(error.instance, error.validator_value)
            if error.validator == "pattern" and error.schema.get("description"):
                message = f"{error.instance!r} does not fit: {error.schema['description']}"
            self.shape_error(mark, f"{_dotted(path) or 'file'}: {message}")
        return ok

    def shape_error(self, mark: Mark, message: str) -> None:
        problem = Problem.at(mark, message)
        self.problems.append(problem)
        self.shape_problems.add(problem)

    def clearest(self) -> list[Problem]:
        """Every problem once; a schema message is dropped where a clearer one points at the same place."""
        elsewhere = {(p.file, p.line, p.col) for p in self.problems if p not in self.shape_problems}
        kept = [p for p in self.problems if p not in self.shape_problems or (p.file, p.line, p.col) not in elsewhere]
        return sorted(set(kept), key=Problem.sort_key)

    # -- the passes -------------------------------------------------------------------------
    def load(self) -> Config | None:
        root = self.read(self.root)
        if not self.problems and not isinstance(root.data, dict):
            self.error(root.mark(()), "notifications.yaml must be a mapping of settings")
            return None
        if root.data is None or not isinstance(root.data, dict):
            return None
        self.check_shape(root, rule_file_checker())
        self.docs.append(root)
        for pattern_index, pattern in enumerate(root.data.get("include", []) or []):
            if not isinstance(pattern, str):
                continue
            mark = root.mark(("include", pattern_index))
            for path in self.included(pattern, mark):
                if self.over_budget(mark):
                    break
                doc = self.read(path)
                if doc.data is None and not any(p.file == doc.file for p in self.problems):
                    continue
                if doc.data is not None and not isinstance(doc.data, dict):
                    self.error(doc.mark(()), "a rule file must be a mapping (definitions, events, notifications)")
                    continue
                if doc.data is None:
                    continue
                self.check_shape(doc, rule_file_checker())
                for key in ROOT_ONLY:
                    if key in doc.data:
                        self.error(doc.mark((key,), key=True), f"{key!r} belongs in {os.path.basename(self.root)}, not in a rule file")
                self.docs.append(doc)
        templates = self.load_templates()
        return self.build(root, templates)

    def load_templates(self) -> dict[str, tuple[Document, dict[str, str]]]:
        found: dict[str, tuple[Document, dict[str, str]]] = {}
        folder = os.path.join(self.base, "templates_map")
        paths = sorted(glob.glob(os.path.join(folder, "*.yaml")) + glob.glob(os.path.join(folder, "*.yml")))
        if not paths:
            self.error(Mark(self.display(self.root)), "no templates_map/*.yaml beside notifications.yaml: add one per environment (production.yaml, ...)")
        for path in paths:
            why = self.not_includable(path)
            if why:
                self.error(Mark(self.display(path)), f"templates_map: {os.path.basename(path)!r} {why}")
                continue
            if self.over_budget(Mark(self.display(path))):
                break
            before = len(self.problems)
            doc = self.read(path)
            if doc.data is None and len(self.problems) > before:
                continue  # unreadable: its problem says why
            if doc.data is None:
                doc.data = {}
            if self.check_shape(doc, templates_map_checker()):
                found[Path(path).stem] = (doc, dict(doc.data))
        return found

    def build(self, root: Document, templates: dict[str, tuple[Document, dict[str, str]]]) -> Config | None:
        data = root.data
        app_raw = data.get("app") or {}
        app = App(str(app_raw.get("name", "")), str(app_raw.get("frontend_url", "")), str(app_raw.get("support_email", "")))
        defaults = data.get("defaults") or {}
        tz = defaults.get("timezone", "UTC")
        if not is_zone(tz):
            self.error(root.mark(("defaults", "timezone")), f"defaults.timezone: {tz!r} is not an IANA time zone (e.g. Europe/Berlin)")
        categories = {
            name: Category(name, bool((c or {}).get("opt_out", True)))
            for name, c in (data.get("categories") or {"transactional": {"opt_out": False}}).items()
        }
        windows = {}
        for name, raw in (data.get("windows") or {}).items():
            window = self.window(root, ("windows", name), raw)
            if window:
                windows[name] = window
        quiet = self.window(root, ("defaults", "quiet_hours"), defaults["quiet_hours"]) if defaults.get("quiet_hours") else None
        rate_limit = None
        per_recipient = (data.get("rate_limits") or {}).get("per_recipient")
        if per_recipient:
            rate_limit = RateLimit(int(per_recipient["limit"]), self.duration(root, ("rate_limits", "per_recipient", "window"), per_recipient["window"]))
        retention = {
            k: self.duration(root, ("retention", k), v) for k, v in (data.get("retention") or {}).items()
        }

        definitions: dict[str, Any] = {}
        events: dict[str, EventType] = {}
        raw_rules: list[tuple[Document, str, dict[str, Any], Mark]] = []
        seen_rules: dict[str, Mark] = {}
        seen_events: dict[str, Mark] = {}
        seen_defs: dict[str, Mark] = {}
        for doc in self.docs:
            for name, fragment in (doc.data.get("definitions") or {}).items():
                mark = doc.mark(("definitions", name), key=True)
                if name in seen_defs:
                    self.error(mark, f"definition {name!r} is declared twice (also at {_where(seen_defs[name])})")
                    continue
                seen_defs[name] = mark
                definitions[name] = fragment
                before = len(self.problems)
                self.check_patterns(doc, ("definitions", name), fragment)
                if len(self.problems) > before:
                    self.broken_schemas.add("*")
            for type_name, raw in (doc.data.get("events") or {}).items():
                mark = doc.mark(("events", type_name), key=True)
                if type_name in seen_events:
                    self.error(mark, f"event {type_name!r} is declared twice (also at {_where(seen_events[type_name])})")
                    continue
                seen_events[type_name] = mark
                if isinstance(raw, dict) and isinstance(raw.get("schema"), dict):
                    events[type_name] = EventType(type_name, raw["schema"], str(raw.get("description", "")))
                    self.check_event_schema(doc, type_name, raw["schema"])
            for rule_id, raw in (doc.data.get("notifications") or {}).items():
                mark = doc.mark(("notifications", rule_id), key=True)
                if rule_id in seen_rules:
                    self.error(mark, f"notification {rule_id!r} is declared twice (also at {_where(seen_rules[rule_id])})")
                    continue
                seen_rules[rule_id] = mark
                if isinstance(raw, dict):
                    raw_rules.append((doc, rule_id, raw, mark))

        self.check_unevaluated()
        env_maps = {env: mapping for env, (_, mapping) in templates.items()}
        ctx = _RuleContext(self, events, definitions, categories, windows, env_maps, defaults, tz, quiet)
        notifications: dict[str, Notification] = {}
        for doc, rule_id, raw, mark in raw_rules:
            self.places[rule_id] = {part: doc.value_marks(("notifications", rule_id, part)) for part in ("data", "trigger")}
            rule = ctx.rule(doc, rule_id, raw, mark)
            if rule is not None:
                notifications[rule_id] = rule
        config = Config(
            app=app,
            timezone=tz,
            categories=categories,
            events=events,
            notifications=notifications,
            templates=env_maps,
            rate_limit=rate_limit,
            quiet_hours=quiet,
            retention=retention,
            definitions=definitions,
            root=self.display(self.root),
        )
        if any(p.severity == "error" for p in self.problems):
            self.partial = config
            return None
        return config

    def check_event_schema(self, doc: Document, type_name: str, schema: dict[str, Any]) -> None:
        before = len(self.problems)
        exc = schema_error(schema)
        if exc is not None:
            path = ("events", type_name, "schema") + tuple(exc.absolute_path)
            self.error(doc.mark(path), f"events.{type_name}.schema: not a valid JSON Schema: {exc.message}")
        self.check_patterns(doc, ("events", type_name, "schema"), schema)
        if len(self.problems) > before:
            self.broken_schemas.add(type_name)

    def check_patterns(self, doc: Document, at: tuple[Any, ...], schema: Any) -> None:
        """Patterns run on event data, on a linear-time engine: one it cannot run is refused."""
        for path, message in pattern_problems(schema, at):
            self.error(doc.mark(path), f"{_dotted(path)}: {message}")
        for node, path in subschemas(schema, at):
            if "patternProperties" in node:
                self.pattern_properties = True
            if "unevaluatedProperties" in node:
                self.unevaluated.append((doc.mark(path + ("unevaluatedProperties",), key=True), path))

    def check_unevaluated(self) -> None:
        """jsonschema reads patternProperties with Python's backtracking `re` when it judges an
        `unevaluatedProperties` (through any $ref), so the two keywords may not meet in the
        event schemas of one configuration."""
        if self.pattern_properties and self.unevaluated:
            self.broken_schemas.add("*")
            for mark, path in self.unevaluated:
                self.error(mark, f"{_dotted(path)}: unevaluatedProperties cannot be used where event schemas use "
                                 f"patternProperties; use additionalProperties")

    def duration(self, doc: Document, path: tuple[Any, ...], value: Any) -> timedelta:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(doc.mark(path), f"{_dotted(path)}: {exc}")
            return timedelta(0)

    def window(self, doc: Document, path: tuple[Any, ...], raw: Any) -> Window | None:
        try:
            return Window(parse_local_time(raw["from"]), parse_local_time(raw["to"]))
        except (ValueError, KeyError, TypeError) as exc:
            self.error(doc.mark(path), f"{_dotted(path)}: {exc}")
            return None


class _RuleContext:
    """Builds one Notification from its raw mapping, checking its meaning against the rest."""

    def __init__(self, loader: _Loader, events: Mapping[str, EventType], definitions: Mapping[str, Any],
                 categories: Mapping[str, Category], windows: Mapping[str, Window],
                 templates: Mapping[str, Mapping[str, str]], defaults: Mapping[str, Any], tz: str,
                 quiet: Window | None = None):
        self.l = loader
        self.events = events
        self.view = SchemaView(definitions)
        self.categories = categories
        self.windows = windows
        self.templates = templates
        self.defaults = defaults
        self.tz = tz
        self.quiet = quiet
        self.known: dict[tuple[Any, ...], list[str | tuple[str, Severity]]] = {}  # the problems of each check already made

    def rule(self, doc: Document, rule_id: str, raw: dict[str, Any], mark: Mark) -> Notification | None:
        """The rule `rule_id` (its key at `mark`), or None when it has an error."""
        base = ("notifications", rule_id)
        errors_before = len([p for p in self.l.problems if p.severity == "error"])
        aside = 0  # errors that leave the rule able to plan its example (see `err`)

        def at(*path: Any) -> Mark:
            return doc.mark(base + path)

        def err(path: tuple[Any, ...], message: str, severity: Severity = "error", blocks: bool = True) -> None:
            """Report a problem of this rule. An error that does not `block` leaves the rule able to
            plan its example, whose own problems are then reported too (a template key missing from
            an environment must not hide them)."""
            nonlocal aside
            self.l.problems.append(Problem.at(at(*path), f"{rule_id}: {message}", severity))
            aside += severity == "error" and not blocks

        trigger_raw = raw.get("trigger") or {}
        named = trigger_raw.get("event", "")
        triggers = tuple(named) if isinstance(named, list) else (named,)
        for i, trigger in enumerate(triggers):
            if trigger not in self.events:
                where = ("trigger", "event", i) if isinstance(named, list) else ("trigger", "event")
                err(where, f"unknown event {trigger!r}{_did_you_mean(trigger, self.events)}{_known(self.events)}")

        category = raw.get("category", "")
        if category not in self.categories:
            err(("category",), f"unknown category {category!r}{_did_you_mean(category, self.categories)}{_known(self.categories)}",
                blocks=False)
        key = raw.get("key")
        schedule = self.schedule(err, raw.get("schedule") or {"at": "once"}, doc, base)
        opt_out = self.categories[category].opt_out if category in self.categories else False
        if self.quiet and opt_out and schedule.window is None:
            schedule = replace(schedule, window=Window(self.quiet.end, self.quiet.start), quiet_hours=True)
        digest = None
        if raw.get("digest"):
            d = raw["digest"]
            digest = Digest(d["period"], d["send"], delivery_options.totals(d))
            try:
                check_cron(d["send"])
            except ValueError as exc:
                err(("digest", "send"), str(exc))
            if raw.get("schedule"):
                err(("schedule",), "a digest is sent by digest.send; remove schedule")
        matches = {}
        for kind in ("cancel_on", "reschedule_on"):
            found = []
            for i, m in enumerate(raw.get(kind) or []):
                ev = m.get("event", "")
                if ev not in self.events:
                    err((kind, i, "event"), f"{kind}: unknown event {ev!r}{_did_you_mean(ev, self.events)}{_known(self.events)}", blocks=False)
                    continue
                if ev in triggers:
                    err((kind, i, "event"), f"{kind}: {ev!r} is this notification's own trigger; it would {kind.split('_')[0]} itself", blocks=False)
                    continue
                if not key:
                    err((kind, i), f"{kind} needs the notification's `key` (the field its events match on)", blocks=False)
                self.check_path(err, (kind, i, "key"), ev, m.get("key", ""), f"{kind} key", event_name=ev)
                if key and isinstance(m.get("key"), str):
                    for trigger in triggers:
                        self.check_match(err, (kind, i, "key"), kind, trigger, key, ev, m["key"])
                found.append(Match(ev, m.get("key", "")))
            matches[kind] = tuple(found)
        template = self.template(err, raw.get("template"))
        condition = trigger_raw.get("condition")
        data = raw.get("data") or {}
        required = {name for name in raw.get("requires") or () if isinstance(name, str)}
        idem = raw.get("idempotency_key", Notification.idempotency_key)
        throttle = None
        if raw.get("throttle"):
            t = raw["throttle"]
            throttle = Throttle(t.get("key", "{{ recipient.id }}"), self.l.duration(doc, base + ("throttle", "window"), t["window"]), int(t.get("limit", 1)))

        # Everything that reads the event is checked against each event the rule is planned
        # from: every trigger, and every event that reschedules it.
        sources = [t for t in triggers if t in self.events] + [m.event for m in matches["reschedule_on"]]
        for source in dict.fromkeys(sources):
            on = source if len(sources) > 1 else None
            self.check_path(err, ("audience",), source, raw.get("audience", ""), "audience", person=True, event_name=on)
            if key:
                self.check_path(err, ("key",), source, key, "key", event_name=on)
            for name, path in (vars(digest.totals).items() if digest and digest.totals else ()):
                self.check_path(err, ("digest", "totals", name), source, path, f"digest.totals.{name}", event_name=on)
            if schedule.of:
                self.check_path(err, ("schedule", "of"), source, schedule.of, "schedule.of", date_time=True, event_name=on)
            if template.select and not template.default:
                self.check_cases(err, self.full_schema(source), template, on)
            checks: list[tuple[tuple[str, ...], Any, bool, bool]] = [(("trigger", "condition"), condition, False, True)] if condition else []
            if template.select:
                checks.append((("template", "select"), template.select, False, True))
            checks += [(("data", name), value, digest is not None, False) for name, value in data.items() if expressions.is_template(value)]
            if "idempotency_key" in raw:
                checks.append((("idempotency_key",), idem, digest is not None, False))
            if throttle and "key" in raw["throttle"]:
                checks.append((("throttle", "key"), throttle.key, False, False))
            for place, source_text, in_digest, bare in checks:
                role = ("required" if place[1] in required else "data") if place[0] == "data" else "strict"
                self.check_expression(err, place, source_text, source, in_digest, expression=bare, event_name=on, role=role)
            if digest is None:
                for name in required & set(data):
                    self.check_not_null(err, ("data", name), data[name], source, on)
        provided = set(data) | set(COMMON_DATA) | {"unsubscribe_url"}
        for i, needed in enumerate(raw.get("requires") or []):
            if needed not in provided:
                err(("requires", i), f"the template requires {needed!r} but no `data` entry provides it{_did_you_mean(needed, data)}")
        channels = tuple(raw.get("channels") or self.defaults.get("channels") or ["email"])
        routing, expires_after = delivery_options.read(raw, channels, lambda p, v: self.l.duration(doc, base + p, v), err)
        example = None
        if isinstance(raw.get("example"), dict):
            ex = raw["example"]
            example = ExampleEvent(str(ex.get("id") or f"evt_example_{rule_id}"), ex["type"], ex["occurred_at"], ex["data"], at("example"))
            if ex["type"] not in triggers:
                err(("example", "type"), f"the example is a {ex['type']!r} event but the trigger is {' or '.join(map(repr, triggers))}")
        if len([p for p in self.l.problems if p.severity == "error"]) - aside > errors_before or not self.plannable(doc, rule_id, triggers):
            return None
        return Notification(
            id=rule_id,
            triggers=triggers,
            audience=raw.get("audience", ""),
            category=category,
            template=template,
            schedule=schedule,
            channels=channels,
            condition=condition,
            key=key,
            cancel_on=matches["cancel_on"],
            reschedule_on=matches["reschedule_on"],
            requires=tuple(raw.get("requires") or ()),
            data=dict(data),
            idempotency_key=idem,
            throttle=throttle,
            digest=digest,
            example=example,
            enabled=bool(raw.get("enabled", True)),
            routing=routing,
            expires_after=expires_after,
            description=str(raw.get("description", "")),
            mark=mark,
        )

    def plannable(self, doc: Document, rule_id: str, triggers: tuple[str, ...]) -> bool:
        """Whether the rule's shape and its events' schemas are sound enough to plan its example
        (else its example's problems would only repeat theirs)."""
        broken = self.l.broken_schemas
        return (doc.file, rule_id) not in self.l.misshapen and "*" not in broken and not broken & set(triggers)

    def check_cases(self, err: Any, schema: Mapping[str, Any], template: TemplateChoice, on: str | None) -> None:
        """A selector that is a plain field with an enum must have a case for every value."""
        select = (template.select or "").strip()
        if not _PLAIN_PATH.match(select):
            return
        field = self.view.field(schema, tuple(select.split(".")))
        values = (field.schema or {}).get("enum")
        if not values:
            return
        missing = [str(v) for v in values if str(v) not in template.cases]
        if missing:
            where = f" of {on!r}" if on else ""
            err(("template", "cases"), f"template select {select!r}{where} can be {', '.join(map(repr, missing))}, which no case names (add a case or a default)")

    def full_schema(self, event_type: str) -> dict[str, Any]:
        event = self.events.get(event_type)
        return dict(event.schema) if event else {}

    def names(self, schema: Mapping[str, Any], digest: bool) -> set[str]:
        if digest:  # a digest renders from its collected items, not from one event
            return CONTEXT_NAMES | DIGEST_NAMES
        return set(self.view.resolve(schema).get("properties", {})) | CONTEXT_NAMES

    def report(self, err: Any, where: tuple[Any, ...], check: tuple[Any, ...],
               problems: Callable[[], Iterator[str | tuple[str, Severity]]]) -> None:
        """Report the problems of a check, found once: rules repeat the same checks on the same
        events. A problem is a message (an error that keeps the rule from being planned), or a
        message and its severity (one that does not: the example is still tried)."""
        if check not in self.known:
            self.known[check] = list(problems())
        for found in self.known[check]:
            message, severity = (found, "error") if isinstance(found, str) else found
            err(where, message, severity, blocks=isinstance(found, str))

    def check_path(self, err: Any, where: tuple[Any, ...], event_type: str, path: str, what: str,
                   *, person: bool = False, event_name: str | None = None, date_time: bool = False) -> None:
        if path:
            self.report(err, where, ("path", event_type, path, what, person, event_name, date_time),
                        lambda: self.path_problems(self.full_schema(event_type), path, what, person, event_name, date_time))

    def path_problems(self, schema: Mapping[str, Any], path: str, what: str, person: bool, event_name: str | None,
                      date_time: bool) -> Iterator[str]:
        field = self.view.field(schema, tuple(path.split(".")))
        on = f" of {event_name!r}" if event_name else ""
        if field.schema is None:
            steps = tuple(path.split("."))
            prefix = steps[:steps.index(field.missing)] if field.missing in steps else ()
            known = self.view.field(schema, prefix).schema or {}
            yield (f"{what} {path!r}: the event schema{on} does not declare {field.missing!r}"
                   f"{_did_you_mean(field.missing, known.get('properties', {}), prefix)}")
            return
        if not field.required:
            yield f"{what} {path!r}: the event schema{on} must declare it as required (add it to `required`)"
            return
        if date_time and field.schema.get("format") != "date-time":
            yield f"{what} {path!r}: the event schema{on} must declare it as a string with format: date-time"
        if person:
            props = field.schema.get("properties", {})
            missing = [p for p in ("id", "email") if p not in props]
            if missing:
                yield f"{what} {path!r} is not a person (no {', '.join(missing)} in its schema)"

    def schedule(self, err: Any, raw: Mapping[str, Any], doc: Document, base: tuple[Any, ...]) -> Schedule:
        forms = [k for k in ("at", "after", "before", "cron") if k in raw]
        if_past = raw.get("if_past", self.defaults.get("if_past", "send_now"))
        window = None
        w = raw.get("window")
        if isinstance(w, str):
            window = self.windows.get(w)
            if window is None:
                err(("schedule", "window"), f"unknown window {w!r}{_did_you_mean(w, self.windows)}{_known(self.windows)}")
        elif isinstance(w, dict):
            window = self.l.window(doc, base + ("schedule", "window"), w)
        common = dict(if_past=if_past, window=window, outside_window=raw.get("outside_window", "defer"))
        if len(forms) != 1:
            if len(forms) == 0:
                err(("schedule",), "say when: one of at, after, before or cron")
            else:
                err(("schedule",), f"use one of at, after, before or cron, not {' and '.join(forms)}")
            return Schedule("once", **common)
        kind = forms[0]
        of = raw.get("of")
        if kind == "before" and not of:
            err(("schedule", "before"), "`before` needs `of`: the date-time field to count back from")
        if kind == "at" and of:
            err(("schedule", "of"), "`of` goes with before, after or cron, not with `at: once`")
        if kind == "cron":
            try:
                check_cron(raw["cron"])
            except ValueError as exc:
                err(("schedule", "cron"), str(exc))
            return Schedule("cron", of=of, cron=raw["cron"], **common)
        if kind == "at":
            return Schedule("once", **common)
        offset = self.l.duration(doc, base + ("schedule", kind), raw[kind])
        return Schedule(kind, offset=offset, of=of, **common)  # type: ignore[arg-type]

    def template(self, err: Any, raw: Any) -> TemplateChoice:
        if isinstance(raw, str):
            choice = TemplateChoice(key=raw)
        elif isinstance(raw, dict) and "variants" in raw:
            variants = tuple((name, v["key"], int(v["weight"])) for name, v in (raw["variants"] or {}).items())
            if not sum(w for _, _, w in variants):
                err(("template", "variants"), "variant weights add up to 0: give at least one a weight")
            choice = TemplateChoice(variants=variants)
        elif isinstance(raw, dict):
            choice = TemplateChoice(select=raw.get("select"), cases=dict(raw.get("cases") or {}), default=raw.get("default"))
        else:
            return TemplateChoice()
        if not self.templates:
            return choice
        for key in choice.keys():
            missing = [env for env, mapping in self.templates.items() if key not in mapping]
            files = ", templates_map/".join(e + ".yaml" for e in sorted(missing))
            if len(missing) == len(self.templates):
                known = {k for mapping in self.templates.values() for k in mapping}
                err(("template",), f"unknown template key {key!r}: add it to templates_map/{files}{_did_you_mean(key, known)}", blocks=False)
            elif missing:
                err(("template",), f"template key {key!r} is missing from templates_map/{files}", blocks=False)
        return choice

    def check_expression(self, err: Any, where: tuple[Any, ...], source: str, event_type: str, digest: bool,
                         *, expression: bool, event_name: str | None = None, role: str = "strict") -> None:
        self.report(err, where, ("expression", source, event_type, digest, expression, event_name, role),
                    lambda: self.expression_problems(source, self.full_schema(event_type), digest, expression, event_name, role))

    def expression_problems(self, source: str, schema: Mapping[str, Any], digest: bool, expression: bool,
                            event_name: str | None, role: str = "strict") -> Iterator[str | tuple[str, Severity]]:
        on = f" (in {event_name!r})" if event_name else ""
        try:
            refs = expressions.analyse(source, expression=expression)
        except expressions.ExpressionError as exc:
            yield f"expression {source!r}: {exc}"
            return
        names = self.names(schema, digest)
        for ref in refs:
            root = ref.path[0]
            if root not in names:
                yield f"expression {source!r} reads {root!r}, which the event does not declare{on}{_did_you_mean(root, names)}"
                continue
            if root == "recipient":
                continue  # any person field; checked on the example at run time
            if root == "event":
                if len(ref.path) > 1 and ref.path[1] not in EVENT_FIELDS:
                    yield f"expression {source!r} reads event.{ref.path[1]}; the envelope has id, type, occurred_at"
                continue
            if root == "app":
                if len(ref.path) > 1 and ref.path[1] not in APP_FIELDS:
                    yield f"expression {source!r} reads app.{ref.path[1]}; app has name, frontend_url, support_email"
                continue
            if root in ("notification", "period_start", "period_end", "totals"):
                continue
            if root == "items":
                if ref.index and len(ref.path) > 1:
                    yield from self.read_problems(source, schema, ref.path[1:], on)
                continue
            yield from self.read_problems(source, schema, ref.path, on, ref, role, expression)

    def read_problems(self, source: str, schema: Mapping[str, Any], path: tuple[str, ...], on: str = "",
                      ref: expressions.Reference | None = None, role: str = "strict",
                      expression: bool = False) -> Iterator[str | tuple[str, Severity]]:
        """What is wrong with reading `path`: a step the schema does not declare, or (for a
        `ref` read from one event) an optional step read with nothing to guard it."""
        node: Mapping[str, Any] = self.view.resolve(schema)
        for i, step in enumerate(path):
            resolved = self.view.resolve(node)
            if resolved.get("type") == "array" or step in _BUILTIN_ATTRS:
                return  # list/str methods and indexes are beyond a static check
            props = resolved.get("properties")
            if props is None:
                return
            if step not in props:
                yield (f"expression {source!r} reads {'.'.join(path[:i + 1])!r}, which the event schema does not declare"
                       f"{on}{_did_you_mean(step, props, path[:i])}")
                return
            if ref is not None and step not in resolved.get("required", ()) and not ref.optional_ok(i):
                yield _optional_read(source, path[:i + 1], on, role, expression)
                return
            node = props[step]

    def check_not_null(self, err: Any, where: tuple[Any, ...], value: Any, event_type: str, on: str | None) -> None:
        """A value the template requires must not render null."""
        if value is None:
            err(where, f"the template requires {where[-1]!r}, but its value is null: give it a value, or take it out of `requires`")
        elif expressions.is_template(value):
            self.report(err, where, ("null", where[-1], value, event_type, on),
                        lambda: self.null_problems(where[-1], value, self.full_schema(event_type), on))

    def null_problems(self, name: str, source: str, schema: Mapping[str, Any], on: str | None) -> Iterator[tuple[str, Severity]]:
        try:
            found = expressions.nullable(source, expression=False)
        except expressions.ExpressionError:
            return  # reported by the expression check
        if found is None:
            return
        why = found.why or next((f"the event schema{f' of {on!r}' if on else ''} lets {'.'.join(path)!r} be null"
                                 for path in found.paths if _allows_null(self.view.field(schema, path).schema)), None)
        if why:
            yield (f"the template requires {name!r}, but its value {source!r} can render null ({why}): give a value the "
                   f"template can use (e.g. `| default('')`), or take {name!r} out of `requires`"), "error"

    def check_match(self, err: Any, where: tuple[Any, ...], kind: str, trigger: str, key: str, event_type: str, theirs: str) -> None:
        if trigger in self.events:
            self.report(err, where, ("match", kind, trigger, key, event_type, theirs),
                        lambda: self.match_problems(kind, trigger, key, event_type, theirs))

    def match_problems(self, kind: str, trigger: str, key: str, event_type: str, theirs: str) -> Iterator[tuple[str, Severity]]:
        """A key of the ids of two different kinds of thing (`client.id` against `booking.id`) never matches."""
        mine_path, their_path = tuple(key.split(".")), tuple(theirs.split("."))
        if mine_path == their_path or len(mine_path) < 2 or len(their_path) < 2 or mine_path[-1] != "id" or their_path[-1] != "id":
            return
        mine = self.view.field(self.full_schema(trigger), mine_path[:-1]).schema
        other = self.view.field(self.full_schema(event_type), their_path[:-1]).schema
        if mine is None or other is None or self.view.same_kind(mine, other):
            return
        same = self.view.field(self.full_schema(event_type), mine_path).schema is not None
        fix = f"did you mean key: {key}?" if same else "match on the id of the same thing"
        yield (f"{kind} key {theirs!r} of {event_type!r} can never match the notification's key {key!r} of {trigger!r}: "
               f"one is the id of a {their_path[-2]}, the other of a {mine_path[-2]}; {fix}"), "error"


_PLAIN_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_BUILTIN_ATTRS = {"items", "keys", "values", "get", "upper", "lower", "title", "strip", "split", "startswith", "endswith", "replace"}


def _optional_read(source: str, path: tuple[str, ...], on: str, role: str, expression: bool) -> tuple[str, Severity]:
    """The problem of reading an optional field with nothing to guard it, and how to fix it."""
    dotted = ".".join(path)
    lone = not expression and re.fullmatch(r"\{\{\s*" + re.escape(dotted) + r"\s*\}\}", source.strip())
    fix = (f"{{{{ {dotted} | default(none) }}}}" if lone
           else f"`{dotted} is defined and ...`, or `{dotted} | default(none)`" if expression
           else f"`{dotted} | default(none)` there, or test `{dotted} is defined` first")
    said = f"expression {source!r} reads {dotted!r}, which the event schema{on} does not require (it is not in `required`)"
    if role == "required":
        return (f"{said}: the template requires this value, and a send whose event lacks it is skipped; add "
                f"{path[-1]!r} to `required` in the event schema, or take it out of `requires` and write {fix}"), "error"
    if role == "data":
        return f"{said}: a send whose event lacks it is skipped (render failed); write {fix}", "warning"
    return f"{said}: an event that lacks it fails here and its send is skipped; write {fix}", "error"


def _allows_null(schema: Mapping[str, Any] | None) -> bool:
    kind = (schema or {}).get("type")
    return kind == "null" or (isinstance(kind, list) and "null" in kind) or None in ((schema or {}).get("enum") or ())


def _did_you_mean(word: Any, choices: Iterable[Any], within: tuple[str, ...] = ()) -> str:
    """`; did you mean 'x'?` for the choice closest to a misspelt `word` (a step of a path
    `within` a field, when given), else nothing."""
    names = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.75) if names and isinstance(word, str) else []
    return f"; did you mean {'.'.join((*within, close[0]))!r}?" if close else ""


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain(message: str) -> str:
    return message.replace("\n", " ")


def _where(mark: Mark) -> str:
    return f"{mark.file}:{mark.line}"


def _known(names: Mapping[str, Any]) -> str:
    if not names:
        return ""
    shown = sorted(names)[:12]
    more = ", ..." if len(names) > 12 else ""
    return f" (known: {', '.join(shown)}{more})"


@dataclass(frozen=True)
class Loaded:
    """What loading found: the configuration when it has no error; else, as far as it goes, the
    rules that can still be planned (`partial`), so that their examples are checked too."""

    config: Config | None
    partial: Config | None
    problems: list[Problem]
    places: Mapping[str, Mapping[str, Mapping[str, Mark]]]  # rule id -> "data"/"trigger" -> key -> mark

    def mark(self, rule_id: str, part: str, key: str) -> Mark | None:
        """Where rule `rule_id`'s `part` ("data" or "trigger") has the value of `key`, if it does."""
        return self.places.get(rule_id, {}).get(part, {}).get(key)


def inspect(root: str = "notifications.yaml", environ: Mapping[str, str] | None = None) -> Loaded:
    """Load and check everything: every problem found, and what could be built."""
    if not os.path.exists(root):
        return Loaded(None, None, [Problem(root, 1, 1, "no such file: pass --config or run where notifications.yaml is")], {})
    loader = _Loader(root, environ if environ is not None else os.environ)
    with collector_paused(), budget.validation():
        config = loader.load()
        loaded = Loaded(config, config or loader.partial, loader.clearest(), loader.places)
        del loader  # its files and nodes are freed now, not walked by the collector first
    return loaded


def check(root: str = "notifications.yaml", environ: Mapping[str, str] | None = None) -> tuple[Config | None, list[Problem]]:
    """Load and check everything; the config (None when any error) and every problem found."""
    loaded = inspect(root, environ)
    return loaded.config, loaded.problems


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: loading builds hundreds of thousands of small objects
    (values, positions, paths) that all live until it returns, and the collector, which frees
    nothing among them, walked them again and again for half the time of a large load."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(root: str = "notifications.yaml", environ: Mapping[str, str] | None = None) -> Config:
    """The configuration, or ConfigError listing every error."""
    config, problems = check(root, environ)
    errors = [p for p in problems if p.severity == "error"]
    if config is None or errors:
        raise ConfigError(errors or [Problem(root, 1, 1, "configuration could not be loaded")])
    return config
