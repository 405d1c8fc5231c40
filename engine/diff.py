"""`engine diff`: what a change to the rules changes in what gets sent.

The same event sets (the example events of every rule, `examples.jsonl`, and each scenario in
`tests/scenarios/`) run through the preview of both versions of the rules; the sends are paired
by (notification, recipient, triggering event, key) and every difference is reported: a send
added, removed, moved in time, or changed in template, data or fate.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.decide import Renderer
from .preferences_file import Preferences, read_preferences
from .preview import Progress, run
from .rules.loader import load
from .rules.model import Config
from .rules.timeparse import parse_instant
from .rules.yaml_source import Document, load_file
from .scenarios import ScenarioError

Identity = tuple[str, str, str, str]
Row = dict[str, Any]
KINDS = ("added", "removed", "moved", "changed")
# The fields of a send besides its time and data whose change is a difference.
FIELDS = ("status", "template", "variant", "channels", "routing", "expires_at")


class RefError(Exception):
    """A version of the rules that is neither a directory nor a git ref; the message says which and
    what git answered."""


@dataclass(frozen=True)
class Change:
    kind: str  # added | removed | moved | changed
    source: str  # which event set
    notification: str
    recipient: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    details: tuple[str, ...] = ()

    @property
    def others(self) -> list[str]:
        """The details besides the move in time."""
        return [d for d in self.details if not d.startswith("send_at")]


@dataclass
class EventSet:
    name: str
    events: list[tuple[int, Any]]
    until: Any = None
    preferences: Preferences = field(default_factory=dict)


def materialize(ref: str, repo: str = ".") -> tuple[str, tempfile.TemporaryDirectory[str] | None]:
    """A directory holding version `ref`: the directory itself, or a git ref extracted."""
    if os.path.isdir(ref):
        return ref, None
    archive, tmp = _archive(ref, repo), tempfile.TemporaryDirectory(prefix="engine-diff-")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp.name, filter="data")
    return os.path.join(tmp.name, _prefix(repo)), tmp


@contextmanager
def checked_out(ref: str, repo: str = ".") -> Iterator[str]:
    """The directory of version `ref` (see materialize), removed afterwards when it was extracted."""
    directory, tmp = materialize(ref, repo)
    try:
        yield directory
    finally:
        if tmp is not None:
            tmp.cleanup()


def _archive(ref: str, repo: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", repo, "archive", "--format=tar", ref], check=True,
                              capture_output=True).stdout
    except FileNotFoundError:
        raise RefError(f"{ref!r} is not a directory, and git is not installed to read it as a git ref") from None
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr.decode(errors="replace").strip().splitlines() or ["git archive failed"])[0]
        raise RefError(f"{ref!r} is neither a directory nor a git ref: {said}") from None


def _prefix(repo: str) -> str:
    """Where `repo` lies inside its git work tree: the archive holds the whole tree."""
    shown = subprocess.run(["git", "-C", repo, "rev-parse", "--show-prefix"], capture_output=True, text=True)
    return shown.stdout.strip()


def event_sets(root: str, configs: Iterable[Config]) -> list[EventSet]:
    scenarios = [_scenario_set(path) for path in sorted(Path(root, "tests", "scenarios").glob("*.yaml"))]
    return [found for found in (_examples_set(configs), _jsonl_set(root), *scenarios) if found is not None]


def _examples_set(configs: Iterable[Config]) -> EventSet | None:
    examples: dict[str, Any] = {}
    for e in (r.example for config in configs for r in config.notifications.values() if r.example is not None):
        examples.setdefault(e.id, {"id": e.id, "type": e.type, "occurred_at": e.occurred_at, "data": dict(e.data)})
    return EventSet("examples of the rules", list(enumerate(examples.values(), 1))) if examples else None


def _jsonl_set(root: str) -> EventSet | None:
    jsonl = Path(root, "examples.jsonl")
    if not jsonl.exists():
        return None
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    return EventSet("examples.jsonl", [(i, json.loads(line)) for i, line in enumerate(lines, 1) if line.strip()])


def _scenario_set(path: Path) -> EventSet | None:
    """A scenario's events, `until` and opt-outs; None when it is not YAML (`engine test` says why)."""
    doc, problems = load_file(str(path))
    if problems or not isinstance(doc.data, dict):
        return None
    until, events = doc.data.get("until"), list(enumerate(doc.data.get("events") or [], 1))
    return EventSet(f"scenario {path.stem}", events, parse_instant(until) if until else None, _opt_outs(doc))


def _opt_outs(doc: Document) -> Preferences:
    """The scenario's preferences, read as `engine preview --preferences` reads a file: ScenarioError
    names every mistake (an entry that is not a mapping, a value not true or false) and its place."""
    preferences, problems = read_preferences(doc, ("preferences",))
    if problems:
        raise ScenarioError(problems)
    return preferences


def _index(rows: list[Row]) -> dict[Identity, Row]:
    found: dict[Identity, Row] = {}
    for row in rows:
        found[_identity(row, found)] = row
    return found


def _identity(row: Row, found: dict[Identity, Row]) -> Identity:
    """The send's identity; the same one again (a reschedule) is numbered, so both are kept, in order."""
    event, key, n = row.get("event") or "", row.get("key") or "", 1
    identity = (row["notification"], row["recipient"], event, key)
    while identity in found:
        n += 1
        identity = (row["notification"], row["recipient"], f"{event}#{n}", key)
    return identity


def compare(source: str, before: list[Row], after: list[Row]) -> list[Change]:
    a, b = _index(before), _index(after)
    found = (_change(source, identity, a.get(identity), b.get(identity)) for identity in sorted(set(a) | set(b)))
    return [change for change in found if change is not None]


def _change(source: str, identity: Identity, old: Row | None, new: Row | None) -> Change | None:
    if old is None or new is None:
        return Change("added" if old is None else "removed", source, identity[0], identity[1], old, new)
    details = _details(old, new)
    # Moved: its time changed (its fate may have changed with it, e.g. now sent before a cancel).
    kind = "moved" if details and details[0].startswith("send_at") else "changed"
    return Change(kind, source, identity[0], identity[1], old, new, tuple(details)) if details else None


def _details(old: Row, new: Row) -> list[str]:
    moved = [f"send_at {old['send_at']} -> {new['send_at']}"] if old["send_at"] != new["send_at"] else []
    fields = [f"{key} {old[key]} -> {new[key]}" for key in FIELDS if old.get(key) != new.get(key)]
    data = [f"data.{key} {old['data'].get(key)!r} -> {new['data'].get(key)!r}"
            for key in sorted(set(old["data"]) | set(new["data"])) if old["data"].get(key) != new["data"].get(key)]
    return [*moved, *fields, *data]


def diff(base: str, head: str, config_name: str = "notifications.yaml", env: str = "production", repo: str = ".",
         progress: Progress | None = None) -> list[Change]:
    with checked_out(base, repo) as base_dir, checked_out(head, repo) as head_dir:
        configs = (load(os.path.join(base_dir, config_name)), load(os.path.join(head_dir, config_name)))
        return [c for events in event_sets(head_dir, configs) for c in _changes(events, configs, env, progress)]


def _changes(events: EventSet, configs: tuple[Config, Config], env: str, progress: Progress | None) -> list[Change]:
    before, after = (sends(config, events, env, progress) for config in configs)
    return compare(events.name, before, after)


def sends(config: Config, events: EventSet, env: str, progress: Progress | None = None) -> list[Row]:
    """What `config` sends for the event set, each send in its JSON form."""
    result = run(config, events.events, events.until, renderer_for(config, env), events.preferences, progress)
    return [row.as_json() for row in result.rows]


def renderer_for(config: Config, env: str) -> Renderer:
    """The renderer of `env`'s template ids, or of the first environment when this version has no `env`."""
    return Renderer(env=env if env in config.templates else sorted(config.templates)[0], environ={})


def markdown(changes: list[Change], base: str, head: str) -> str:
    if not changes:
        return f"**Notification changes** `{base}` → `{head}`: none. Every send stays as it was.\n"
    lines = [f"**Notification changes** `{base}` → `{head}`: {_summary(changes)}", "",
             "| change | notification | recipient | before | after | events |", "|---|---|---|---|---|---|"]
    return "\n".join([*lines, *map(_markdown_row, changes)]) + "\n"


def _summary(changes: list[Change]) -> str:
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in KINDS}
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)


def _markdown_row(c: Change) -> str:
    after = "<br>".join([cell(c.after), *map(_md, c.others)])
    return f"| {c.kind} | `{c.notification}` | {_md(c.recipient)} | {cell(c.before)} | {after} | {_md(c.source)} |"


def cell(row: Row | None, absent: str = "—") -> str:
    """A send as a table shows it: its time and fate."""
    return absent if row is None else f"{row['send_at']} {row['status']}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
