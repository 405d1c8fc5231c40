"""The checks every part of a scenario file is read with, each mistake kept with its position."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..rules.problems import Problem
from ..rules.timeparse import parse_instant
from ..rules.yaml_source import Document
from .model import YamlPath


class Reader:
    """Checks one parsed scenario, collecting a problem (with its position) for each mistake."""

    def __init__(self, doc: Document, problems: Iterable[Problem] = ()):
        self.doc, self.problems = doc, list(problems)

    def error(self, path: YamlPath, message: str, *, key: bool = False) -> None:
        self.problems.append(Problem.at(self.doc.mark(path, key=key), message))

    def line(self, path: YamlPath) -> int:
        return self.doc.mark(path).line

    def keys(self, data: dict[str, Any], path: YamlPath, allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for name in (n for n in data if n not in allowed):
            self.error((*path, name), f"{what}: unknown key `{name}` ({did_you_mean(name, allowed)}allowed: "
                                      f"{', '.join(allowed)})", key=True)

    def required(self, data: dict[str, Any], path: YamlPath, names: Iterable[str], what: str) -> bool:
        absent = [n for n in names if n not in data]
        if absent:
            self.error(path, f"{what}: needs {', '.join(f'`{n}`' for n in absent)}")
        return not absent

    def item(self, value: Any, where: tuple[str, int], allowed: Iterable[str]) -> Item:
        """One entry of a list of mappings (`expect[2]`), its keys checked against `allowed`."""
        what = f"{where[0]}[{where[1]}]"
        item = Item(self, self.mapping(value, where, what), where, what)
        self.keys(item.values, where, allowed, what)
        return item

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
        if value is not None and not isinstance(value, list):
            self.error(path, f"{what} must be a list (lines starting with `- `)")
        return value if isinstance(value, list) else []

    def names(self, value: Any, path: YamlPath, what: str) -> list[str]:
        found = self.items(value, path, what)
        for i in (i for i, name in enumerate(found) if not isinstance(name, str)):
            self.error((*path, i), f"{what}: each entry is a name")
        return [n for n in found if isinstance(n, str)]


@dataclass(frozen=True)
class Item:
    """One entry of a list in the file, read key by key; each message starts with `what` (`deploy[0]`)."""

    reader: Reader
    values: dict[str, Any]
    where: YamlPath
    what: str

    def requires(self, *names: str) -> bool:
        """Whether the entry has every key in `names` (when it is not an empty mapping, saying which it lacks)."""
        return bool(self.values) and self.reader.required(self.values, self.where, names, self.what)

    def error(self, message: str, *at: str) -> None:
        self.reader.error((*self.where, *at), f"{self.what}: {message}")

    def line(self) -> int:
        return self.reader.line(self.where)

    def text(self, key: str) -> str:
        return self.reader.text(self.values[key], (*self.where, key), f"{self.what}: {key}")

    def instant(self, key: str) -> datetime | None:
        return self.reader.instant(self.values[key], (*self.where, key), f"{self.what}: {key}")

    def mapping(self, key: str) -> dict[str, Any]:
        return self.reader.mapping(self.values[key], (*self.where, key), f"{self.what}: {key}")

    def names(self, key: str) -> list[str]:
        return self.reader.names(self.values.get(key), (*self.where, key), f"{self.what}: {key}")

    def one_of(self, key: str, allowed: Iterable[str]) -> str:
        allowed = tuple(allowed)
        if self.values[key] not in allowed:
            self.error(f"{key} must be one of {', '.join(allowed)}; got {self.values[key]!r}", key)
        return str(self.values[key])


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"did you mean `{close[0]}`? " if close else ""
