"""Load notifications.yaml and everything it includes: parse, check shape, check meaning, build.

Two passes, as in every configuration tool worth copying: the shape of each file by
`schema.json`, then the meaning across files (unknown events, missing templates, fields the
event does not promise...), in `checks/`. Every problem is collected; none stops the others
being found.
"""

from __future__ import annotations

import gc
import glob
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from . import budget
from .bounded_read import file_kind
from .checks import declarations, shape, top_level
from .checks.declarations import ANY_SCHEMA, Declared
from .checks.rule import RuleChecker, Scope
from .checks.top_level import TopLevel
from .json_schema import Checker
from .model import Config, Notification
from .problems import ConfigError, Mark, Problem
from .yaml_source import Document, load_file

SCHEMA_PATH = Path(__file__).with_name("schema.json")
# The most values all the files of a configuration may hold (see yaml_source.MAX_NODES for one
# file): 5 000 notifications are about 550 000, and take about 300 MB to check.
MAX_TOTAL_NODES = 1_000_000
# The most files one include pattern may name.
MAX_INCLUDED = 1_000
ROOT_ONLY = ("version", "app", "defaults", "categories", "windows", "rate_limits", "retention", "include")
Templates = dict[str, tuple[Document, dict[str, str]]]  # environment -> its templates_map file and mapping


@lru_cache(maxsize=1)
def rule_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


@lru_cache(maxsize=1)
def rule_file_checker() -> Checker:
    return Checker(rule_schema())


@lru_cache(maxsize=1)
def templates_map_checker() -> Checker:
    return Checker({**rule_schema()["$defs"]["templates_map"], "$defs": rule_schema()["$defs"]})


@cache
def _required_keys(block: str) -> frozenset[str] | None:
    """The keys a rule's `block` must have (None when its shape has alternatives: any error in it
    then leaves the whole block unread)."""
    defs = rule_schema()["$defs"]
    node = defs["notification"]["properties"].get(block, {})
    while isinstance(node.get("$ref"), str):
        node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
    if node.get("type") != "object" or any(k in node for k in ("oneOf", "anyOf", "allOf", "if")):
        return None
    return frozenset(node.get("required", ()))


def _misshapen_part(inside: tuple[Any, ...]) -> tuple[Any, ...]:
    """What a rule's checks read as absent for a shape error at `inside` the rule: the key of a
    block when the block may be read without it, else the whole block."""
    if len(inside) > 1 and isinstance(inside[0], str) and isinstance(inside[1], str):
        required = _required_keys(inside[0])
        if required is not None and inside[1] not in required:
            return inside[:2]
    return inside[:1]


class _Loader:
    def __init__(self, root: str):
        self.root = root
        self.base = os.path.dirname(os.path.abspath(root))
        self.real_base = os.path.realpath(self.base)
        self.read_paths = {os.path.realpath(root)}  # every file read, resolved: none is read twice
        self.nodes_read = 0  # values in the files read so far, aliases counted at each use
        self.budget_spent = False
        self.problems: list[Problem] = []
        self.shape_problems: set[Problem] = set()  # from schema.json; dropped where a clearer one stands
        # (file, notification id) of each rule with shape errors -> what its checks read as absent:
        # (block,) for a block with a shape error (or missing), (block, key) for a key of a block
        # that may be left out
        self.misshapen: dict[tuple[str, Any], set[tuple[Any, ...]]] = {}
        self.misshapen_settings: set[Any] = set()  # the root file's settings with shape errors
        self.broken_schemas: set[str] = set()  # event types whose schema has an error, or ANY_SCHEMA
        self.partial: Config | None = None  # the rules that can be planned, when others have errors
        self.places: dict[str, dict[str, dict[str, Mark]]] = {}  # rule id -> "data"/"trigger" -> key -> mark
        self.docs: list[Document] = []

    # -- reading files ------------------------------------------------------------------------
    def display(self, path: str) -> str:
        rel = os.path.relpath(os.path.abspath(path), os.getcwd())
        return path if rel.startswith("..") else rel

    def error(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem.at(mark, message))

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
            self.error(mark, f"include: {pattern!r} matches {len(matches)} files; "
                             f"at most {MAX_INCLUDED} may be included")
            return []
        return [path for match in matches if (path := self.includable(pattern, match, mark))]

    def includable(self, pattern: str, match: str, mark: Mark) -> str | None:
        """The path of `match` when it is to be read (not read before); a problem when it may not be."""
        path = os.path.join(self.base, match)
        why = self.not_includable(path)
        if why:
            self.error(mark, f"include: {pattern!r}: {match!r} {why}")
            return None
        if os.path.realpath(path) in self.read_paths:
            return None
        self.read_paths.add(os.path.realpath(path))
        return path

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

    def check_shape(self, doc: Document, checker: Checker, root: bool = False) -> bool:
        """Whether `doc` fits `checker`'s schema; a problem for each place it does not. What has
        a shape error gets no meaning check: the schema's message stands alone."""
        ok = True
        for path, problem, structural in shape.problems(doc, checker):
            ok = False
            self.note_misshapen(doc, path, structural, root)
            self.problems.append(problem)
            self.shape_problems.add(problem)
        return ok

    def note_misshapen(self, doc: Document, path: tuple[Any, ...], structural: bool, root: bool) -> None:
        """What a shape error at `path` keeps from the meaning checks: a rule (or a part of it), an
        event type's schema, every schema (a definition), a setting of the root file."""
        if len(path) > 1 and path[0] == "notifications":
            parts = self.misshapen.setdefault((doc.file, path[1]), set())  # not planned, whatever the error
            if structural:
                parts.add(_misshapen_part(path[2:]))
        elif len(path) > 1 and path[0] == "events":
            self.broken_schemas.add(path[1])
        elif path and path[0] == "definitions":
            self.broken_schemas.add(ANY_SCHEMA)
        if root and path and structural:
            self.misshapen_settings.add(path[0])

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
        self.check_shape(root, rule_file_checker(), root=True)
        self.docs.append(root)
        patterns = root.data.get("include")
        for pattern_index, pattern in enumerate(patterns if isinstance(patterns, list) else []):
            if isinstance(pattern, str):
                self.load_included(pattern, root.mark(("include", pattern_index)))
        templates = self.load_templates()
        return self.build(root, templates)

    def load_included(self, pattern: str, mark: Mark) -> None:
        """Read and shape-check the rule files one include pattern names."""
        for path in self.included(pattern, mark):
            if self.over_budget(mark):
                break
            doc = self.read(path)
            if self.holds_rules(doc):
                self.check_shape(doc, rule_file_checker())
                self.refuse_root_settings(doc)
                self.docs.append(doc)

    def holds_rules(self, doc: Document) -> bool:
        """Whether a rule file has rules to check: not empty, and a mapping (a problem when it is not)."""
        if doc.data is not None and not isinstance(doc.data, dict):
            self.error(doc.mark(()), "a rule file must be a mapping (definitions, events, notifications)")
            return False
        return doc.data is not None

    def refuse_root_settings(self, doc: Document) -> None:
        for key in ROOT_ONLY:
            if key in doc.data:
                self.error(doc.mark((key,), key=True),
                           f"{key!r} belongs in {os.path.basename(self.root)}, not in a rule file")

    def load_templates(self) -> Templates:
        found: Templates = {}
        for path in self.template_map_paths():
            why = self.not_includable(path)
            if why:
                self.error(Mark(self.display(path)), f"templates_map: {os.path.basename(path)!r} {why}")
                continue
            if self.over_budget(Mark(self.display(path))):
                break
            doc = self.read_template_map(path)
            if doc is not None and self.check_shape(doc, templates_map_checker()):
                found[Path(path).stem] = (doc, dict(doc.data))
        return found

    def template_map_paths(self) -> list[str]:
        """templates_map/*.yaml and *.yml beside the root file, one per environment; a problem when there is none."""
        folder = os.path.join(self.base, "templates_map")
        paths = sorted(glob.glob(os.path.join(folder, "*.yaml")) + glob.glob(os.path.join(folder, "*.yml")))
        if not paths:
            self.error(Mark(self.display(self.root)), "no templates_map/*.yaml beside notifications.yaml: "
                                                      "add one per environment (production.yaml, ...)")
        return paths

    def read_template_map(self, path: str) -> Document | None:
        """The templates map at `path` (an empty file maps nothing); None when it cannot be read,
        its problem saying why."""
        before = len(self.problems)
        doc = self.read(path)
        if doc.data is None and len(self.problems) > before:
            return None
        if doc.data is None:
            doc.data = {}
        return doc

    def build(self, root: Document, templates: Templates) -> Config | None:
        """The configuration, when no file has an error; else None, and the rules that can be
        planned kept as `partial`."""
        top, problems = top_level.read(root, self.misshapen_settings)
        self.problems += problems
        declared = declarations.gather(self.docs, self.broken_schemas)
        self.problems += declared.problems
        self.broken_schemas |= declared.broken_schemas
        config = self.config(top, declared, {env: mapping for env, (_, mapping) in templates.items()})
        if any(p.severity == "error" for p in self.problems):
            self.partial = config
            return None
        return config

    def config(self, top: TopLevel, declared: Declared, templates: Mapping[str, Mapping[str, str]]) -> Config:
        """What the settings, the declarations and the rules without an error make."""
        return Config(app=top.app, timezone=top.timezone, categories=top.categories, events=declared.events,
                      notifications=self.notifications(top, declared, templates), templates=templates,
                      rate_limit=top.rate_limit, quiet_hours=top.quiet_hours, retention=top.retention,
                      definitions=declared.definitions, root=self.display(self.root))

    def notifications(self, top: TopLevel, declared: Declared,
                      templates: Mapping[str, Mapping[str, str]]) -> dict[str, Notification]:
        """Every notification without an error, each checked against the rest."""
        checker = RuleChecker(Scope(declared.events, declared.definitions, top.categories, top.windows, templates,
                                    top.defaults, top.quiet_hours, self.misshapen, self.broken_schemas))
        built: dict[str, Notification] = {}
        for rule in declared.rules:
            self.places[rule.id] = {part: rule.doc.value_marks(("notifications", rule.id, part))
                                    for part in ("data", "trigger")}
            notification, problems = checker.check(rule)
            self.problems += problems
            if notification is not None:
                built[rule.id] = notification
        return built


@dataclass(frozen=True)
class Loaded:
    """What loading found: the configuration when it has no error; else, as far as it goes, the
    rules that can still be planned (`partial`), so that their examples are checked too."""

    config: Config | None
    partial: Config | None
    problems: list[Problem]
    places: Mapping[str, Mapping[str, Mapping[str, Mark]]]  # rule id -> "data"/"trigger" -> key -> mark
    broken_schemas: frozenset[str] = frozenset()  # event types whose schema has an error, or ANY_SCHEMA

    def readable(self, *event_types: str) -> bool:
        """Whether the schemas of `event_types` can be read: none has an error (whose message stands alone)."""
        return declarations.readable(self.broken_schemas, *event_types)

    def mark(self, rule_id: str, part: str, key: str) -> Mark | None:
        """Where rule `rule_id`'s `part` ("data" or "trigger") has the value of `key`, if it does."""
        return self.places.get(rule_id, {}).get(part, {}).get(key)


def inspect(root: str = "notifications.yaml") -> Loaded:
    """Load and check everything: every problem found, and what could be built."""
    if not os.path.exists(root):
        missing = Problem(root, 1, 1, "no such file: pass --config or run where notifications.yaml is")
        return Loaded(None, None, [missing], {})
    loader = _Loader(root)
    with collector_paused(), budget.validation():
        config = loader.load()
        loaded = Loaded(config, config or loader.partial, loader.clearest(), loader.places,
                        frozenset(loader.broken_schemas))
        del loader  # its files and nodes are freed now, not walked by the collector first
    return loaded


def check(root: str = "notifications.yaml") -> tuple[Config | None, list[Problem]]:
    """Load and check everything; the config (None when any error) and every problem found."""
    loaded = inspect(root)
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


def load(root: str = "notifications.yaml") -> Config:
    """The configuration, or ConfigError listing every error."""
    config, problems = check(root)
    errors = [p for p in problems if p.severity == "error"]
    if config is None or errors:
        raise ConfigError(errors or [Problem(root, 1, 1, "configuration could not be loaded")])
    return config
