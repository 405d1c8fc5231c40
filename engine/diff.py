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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.decide import Renderer
from .preview import Progress, run
from .rules.loader import load
from .rules.model import Config
from .rules.timeparse import parse_instant
from .rules.yaml_source import load_file

Identity = tuple[str, str, str, str]


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


@dataclass
class EventSet:
    name: str
    events: list[tuple[int, Any]]
    until: Any = None
    preferences: dict[str, dict[str, bool]] = field(default_factory=dict)


def materialize(ref: str, repo: str = ".") -> tuple[str, tempfile.TemporaryDirectory[str] | None]:
    """A directory holding version `ref`: the directory itself, or a git ref extracted."""
    if os.path.isdir(ref):
        return ref, None
    try:
        archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", ref], check=True,
                                 capture_output=True).stdout
    except FileNotFoundError:
        raise RefError(f"{ref!r} is not a directory, and git is not installed to read it as a git ref") from None
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr.decode(errors="replace").strip().splitlines() or ["git archive failed"])[0]
        raise RefError(f"{ref!r} is neither a directory nor a git ref: {said}") from None
    tmp = tempfile.TemporaryDirectory(prefix="engine-diff-")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp.name, filter="data")
    shown = subprocess.run(["git", "-C", repo, "rev-parse", "--show-prefix"], capture_output=True, text=True)
    prefix = shown.stdout.strip()
    return os.path.join(tmp.name, prefix), tmp


def event_sets(root: str, configs: Iterable[Config]) -> list[EventSet]:
    sets: list[EventSet] = []
    examples: dict[str, Any] = {}
    for config in configs:
        for rule in config.notifications.values():
            if rule.example:
                e = rule.example
                examples.setdefault(e.id, {"id": e.id, "type": e.type, "occurred_at": e.occurred_at,
                                           "data": dict(e.data)})
    if examples:
        sets.append(EventSet("examples of the rules", list(enumerate(examples.values(), 1))))
    jsonl = Path(root, "examples.jsonl")
    if jsonl.exists():
        lines = jsonl.read_text(encoding="utf-8").splitlines()
        events = [(i, json.loads(line)) for i, line in enumerate(lines, 1) if line.strip()]
        sets.append(EventSet("examples.jsonl", events))
    for path in sorted(Path(root, "tests", "scenarios").glob("*.yaml")):
        doc, problems = load_file(str(path))
        if problems or not isinstance(doc.data, dict):
            continue
        until = doc.data.get("until")
        preferences = {str(k): {str(n): bool(v) for n, v in (v or {}).items()}
                       for k, v in (doc.data.get("preferences") or {}).items()}
        sets.append(EventSet(f"scenario {path.stem}", list(enumerate(doc.data.get("events") or [], 1)),
                             parse_instant(until) if until else None, preferences))
    return sets


def _index(rows: list[dict[str, Any]]) -> dict[Identity, dict[str, Any]]:
    found: dict[Identity, dict[str, Any]] = {}
    for row in rows:
        identity = (row["notification"], row["recipient"], row.get("event") or "", row.get("key") or "")
        n = 1
        while identity in found:  # the same identity twice (a reschedule): keep both, in order
            n += 1
            identity = (row["notification"], row["recipient"], f"{row.get('event') or ''}#{n}", row.get("key") or "")
        found[identity] = row
    return found


def compare(source: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[Change]:
    a, b = _index(before), _index(after)
    changes = []
    for identity in sorted(set(a) | set(b)):
        old, new = a.get(identity), b.get(identity)
        if old is None:
            changes.append(Change("added", source, identity[0], identity[1], None, new))
        elif new is None:
            changes.append(Change("removed", source, identity[0], identity[1], old, None))
        else:
            details = []
            if old["send_at"] != new["send_at"]:
                details.append(f"send_at {old['send_at']} -> {new['send_at']}")
            for key in ("status", "template", "variant", "channels", "routing", "expires_at"):
                if old.get(key) != new.get(key):
                    details.append(f"{key} {old[key]} -> {new[key]}")
            for key in sorted(set(old["data"]) | set(new["data"])):
                if old["data"].get(key) != new["data"].get(key):
                    details.append(f"data.{key} {old['data'].get(key)!r} -> {new['data'].get(key)!r}")
            if details:
                # Moved: its time changed (its fate may have changed with it, e.g. now sent before a cancel).
                kind = "moved" if details[0].startswith("send_at") else "changed"
                changes.append(Change(kind, source, identity[0], identity[1], old, new, tuple(details)))
    return changes


def diff(base: str, head: str, config_name: str = "notifications.yaml", env: str = "production", repo: str = ".",
         progress: Progress | None = None) -> list[Change]:
    base_dir, base_tmp = materialize(base, repo)
    head_dir, head_tmp = materialize(head, repo)
    try:
        base_config = load(os.path.join(base_dir, config_name))
        head_config = load(os.path.join(head_dir, config_name))
        changes: list[Change] = []
        for events in event_sets(head_dir, (base_config, head_config)):
            rows = []
            for config in (base_config, head_config):
                renderer = Renderer(env=env if env in config.templates else sorted(config.templates)[0], environ={})
                result = run(config, events.events, events.until, renderer, events.preferences, progress)
                rows.append([r.as_json() for r in result.rows])
            changes.extend(compare(events.name, rows[0], rows[1]))
        return changes
    finally:
        for tmp in (base_tmp, head_tmp):
            if tmp is not None:
                tmp.cleanup()


def markdown(changes: list[Change], base: str, head: str) -> str:
    if not changes:
        return f"**Notification changes** `{base}` → `{head}`: none. Every send stays as it was.\n"
    counts = {k: sum(1 for c in changes if c.kind == k) for k in ("added", "removed", "moved", "changed")}
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    lines = [f"**Notification changes** `{base}` → `{head}`: {summary}", "",
             "| change | notification | recipient | before | after | events |", "|---|---|---|---|---|---|"]
    for c in changes:
        before = _cell(c.before)
        after = _cell(c.after)
        others = [d for d in c.details if not d.startswith("send_at")]
        if others:
            after += "<br>" + "<br>".join(_md(d) for d in others)
        lines.append(f"| {c.kind} | `{c.notification}` | {_md(c.recipient)} | {before} | {after} | {_md(c.source)} |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    return f"{row['send_at']} {row['status']}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
