"""Reading a scenario file: every mistake reported at once, as FILE:LINE:COL (docs/scenarios.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, cast

from ..preferences_file import read_preferences
from ..rules.yaml_source import load_file
from .entries import deploy, direct, expected
from .model import MATCHES, TOP_KEYS, Direct, Expected, Match, Scenario, ScenarioError
from .reader import Reader

T = TypeVar("T")
Data = dict[str, Any]


def load_scenario(path: str | Path) -> Scenario:
    """Read and check one scenario file; ScenarioError lists every mistake with its position."""
    reader = _reader(str(path))
    scenario = _read(reader, reader.doc.data, str(path))
    if reader.problems:
        raise ScenarioError(sorted(reader.problems, key=lambda p: (p.line, p.col)))
    return scenario


def _reader(path: str) -> Reader:
    """A reader of the file once it holds a mapping; ScenarioError when it does not."""
    doc, problems = load_file(path)
    if problems and doc.root is None:  # not YAML at all: nothing more can be said
        raise ScenarioError(problems)
    reader = Reader(doc, problems)  # such as an unquoted date: the rest is still worth checking
    if not isinstance(doc.data, dict):
        reader.error((), "a scenario is a mapping: description, events, expect, ... (see docs/scenarios.md)")
        raise ScenarioError(reader.problems)
    return reader


def _read(reader: Reader, data: Data, path: str) -> Scenario:
    reader.keys(data, (), TOP_KEYS, "scenario")
    reader.required(data, (), ("description", "expect"), "a scenario")
    match, calls = _match(reader, data), _entries(reader, data, "direct", direct)
    return _scenario(reader, data, path, match, calls, _expect(reader, data))


def _scenario(reader: Reader, data: Data, path: str, match: Match, calls: list[Direct | None],
              expect: list[Expected | None]) -> Scenario:
    """The scenario from the parts read so far and those that need no other."""
    events, (preferences, lines) = _events(reader, data, calls), _preferences(reader, data)
    return Scenario(path=path, description=_description(reader, data), match=match, events=events,
                    event_lines=[reader.line(("events", i)) for i in range(len(events))], until=_until(reader, data),
                    preferences=preferences, preference_lines=lines,
                    deploy=_present(_entries(reader, data, "deploy", deploy)), direct=_present(calls),
                    expect=_present(expect), expect_duplicates=_duplicates(reader, data))


def _match(reader: Reader, data: Data) -> Match:
    match = data.get("match", "only")
    if match not in MATCHES:
        reader.error(("match",), f"match must be `only` (check the notifications named in expect) or `all` "
                                 f"(expect lists every send); got {match!r}")
    return cast(Match, match if match in MATCHES else "only")


def _entries(reader: Reader, data: Data, name: str, read: Callable[[Reader, Any, int], T]) -> list[T]:
    return [read(reader, item, i) for i, item in enumerate(reader.items(data.get(name), (name,), name))]


def _present(found: Iterable[T | None]) -> list[T]:
    return [item for item in found if item is not None]


def _events(reader: Reader, data: Data, calls: list[Direct | None]) -> list[Any]:
    events = reader.items(data.get("events"), ("events",), "events")
    if not events and not calls:
        reader.error(("events",) if "events" in data else (), "a scenario needs `events` (or `direct` sends)")
    return events


def _expect(reader: Reader, data: Data) -> list[Expected | None]:
    expect = _entries(reader, data, "expect", expected)
    if not expect and data.get("match", "only") == "only" and "expect" in data:
        reader.error(("expect",), "expect is empty, so nothing is checked: list the sends you expect, "
                                  "or set `match: all` to check that nothing is sent")
    return expect


def _until(reader: Reader, data: Data) -> str | None:
    if data.get("until") is not None:
        reader.instant(data["until"], ("until",), "until")
    return data["until"] if isinstance(data.get("until"), str) else None


def _description(reader: Reader, data: Data) -> str:
    return reader.text(data.get("description", "-"), ("description",), "description").strip()


def _duplicates(reader: Reader, data: Data) -> list[str]:
    return reader.names(data.get("expect_duplicates"), ("expect_duplicates",), "expect_duplicates")


def _preferences(reader: Reader, data: Data) -> tuple[dict[str, dict[str, bool]], dict[tuple[str, str], int]]:
    """The opt-outs (read as a preferences file is), and the line of each, for the messages of `check`."""
    found, problems = read_preferences(reader.doc, ("preferences",))
    reader.problems += problems
    return found, {(who, name): reader.line(("preferences", who, name)) for who, chosen in found.items()
                   for name in chosen}


def scenario_files(paths: Iterable[str | Path]) -> list[Path]:
    """The scenario files named: each file itself, each folder's *.yaml and *.yml, sorted."""
    return [found for given in map(Path, paths) for found in _files(given)]


def _files(given: Path) -> list[Path]:
    if not given.is_dir():
        return [given]
    return sorted(p for p in given.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
