"""Opt-outs written in a file: `engine preview --preferences FILE`, and a scenario's `preferences:`.

The shape is recipient id -> {notification, category or notification:channel: true or false}.
An empty entry (`usr_1:` alone) opts out of nothing. Anything else is a mistake reported at its
place, FILE:LINE:COL, naming the recipient: an entry that is not a mapping (`usr_1: false`, a
list), or a value that is not true or false (`"no"` in quotes is text).
"""

from __future__ import annotations

from typing import Any

from .rules.problems import Problem
from .rules.yaml_source import Document, load_file

Preferences = dict[str, dict[str, bool]]
YamlPath = tuple[str | int, ...]
SHAPE = "{notification, category or notification:channel: true or false}"


def preferences_file(path: str) -> tuple[Preferences, list[Problem]]:
    """The opt-outs of a preferences file, and every mistake in it."""
    doc, problems = load_file(path)
    return ({}, problems) if problems else read_preferences(doc)


def read_preferences(doc: Document, at: YamlPath = ()) -> tuple[Preferences, list[Problem]]:
    """The opt-outs at `at` in `doc` (the whole of it by default; null is none), and every mistake."""
    value, problems = _value(doc.data, at), list[Problem]()
    if value is not None and not isinstance(value, dict):
        return {}, [_problem(doc, at, f"preferences must map recipient ids to {SHAPE}")]
    found = {str(who): _entry(doc, (*at, str(who)), chosen, problems) for who, chosen in (value or {}).items()}
    return found, problems


def _entry(doc: Document, at: YamlPath, chosen: Any, problems: list[Problem]) -> dict[str, bool]:
    """One recipient's opt-outs; its mistakes are added to `problems`."""
    if chosen is not None and not isinstance(chosen, dict):
        problems.append(_problem(doc, at, f"preferences of {at[-1]} must be a mapping {SHAPE}; got {chosen!r}"))
    chosen = chosen if isinstance(chosen, dict) else {}
    problems += [_problem(doc, (*at, str(name)), f"preferences of {at[-1]}: {name} must be true or false; got {on!r}")
                 for name, on in chosen.items() if not isinstance(on, bool)]
    return {str(name): on for name, on in chosen.items() if isinstance(on, bool)}


def _value(data: Any, at: YamlPath) -> Any:
    for step in at:
        data = data.get(step) if isinstance(data, dict) else None
    return data


def _problem(doc: Document, at: YamlPath, message: str) -> Problem:
    return Problem.at(doc.mark(at), message)
