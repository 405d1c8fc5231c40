"""Read a hand-edited YAML file into plain data, remembering where every value stands.

PyYAML's own constructors follow YAML 1.1 (``yes`` is true, ``2026-03-01`` is a date) and keep
the last of duplicate keys silently. Files edited by people in pull requests deserve better:
we compose the node tree, resolve plain scalars by the YAML 1.2 core schema, and report the
1.1 surprises and duplicate keys as problems with their line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .problems import Mark, Problem

Path = tuple[str | int, ...]

_NULL = re.compile(r"^(?:null|Null|NULL|~|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_YAML11_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:(?:[Tt]|[ \t]+)\d{1,2}:\d{2}:\d{2}(?:\.\d*)?(?:[ \t]*(?:Z|[-+]\d{1,2}(?::\d{2})?))?)?$")
_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:value",
    "tag:yaml.org,2002:merge",
    "tag:yaml.org,2002:binary",
    "tag:yaml.org,2002:omap",
    "tag:yaml.org,2002:pairs",
    "tag:yaml.org,2002:set",
}


# Plain scalars are resolved here, by the YAML 1.2 core schema, so the parser's own resolver
# only has to recognise a merge key (`<<`, refused below) and name everything else a string.
class _PlainResolver:
    def descend_resolver(self, parent: Any, index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

    def resolve(self, kind: type, value: str | None, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            return _MERGE if implicit[0] and value == "<<" else _STR
        return "tag:yaml.org,2002:seq" if kind is yaml.SequenceNode else "tag:yaml.org,2002:map"


_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_LOADER: Any = yaml.SafeLoader
if yaml.__with_libyaml__:  # libyaml's parser when PyYAML was built with it: several times faster
    class _LibyamlLoader(yaml.cyaml.CParser, _PlainResolver):
        pass

    _LOADER = _LibyamlLoader
# The first characters (or none) of a plain scalar that may be a null, a boolean, a number or a
# YAML 1.1 surprise; any other plain scalar is a string without trying the patterns.
_MAYBE_TYPED = frozenset(["", *"~nNtTfFyYoO+-.0123456789"])
_MAYBE_TYPED_KEY = frozenset(["", *"~nNtTfFyYoO"])


MAX_DEPTH = 64


@dataclass
class Document:
    """A parsed file: its data, and the parser's nodes, where the position of any value or key is
    looked up when a message needs it."""

    file: str
    data: Any = None
    root: yaml.Node | None = None
    _entries: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = field(default_factory=dict, repr=False)

    def mark(self, path: Path, *, key: bool = False) -> Mark:
        """The mark of the value at `path` (or of its key), else of the nearest parent."""
        if self.root is None:
            return Mark(self.file, 1, 1)
        node, key_node = self.root, None
        for step in tuple(path)[:MAX_DEPTH]:  # deeper values are not read (see _build)
            found = self._child(node, step)
            if found is None:
                return _mark(self.file, node)
            key_node, node = found
        return _mark(self.file, key_node if key and key_node is not None else node)

    def _child(self, node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
        if isinstance(node, yaml.SequenceNode):
            return (None, node.value[step]) if isinstance(step, int) and 0 <= step < len(node.value) else None
        if isinstance(node, yaml.MappingNode):
            if id(node) not in self._entries:
                self._entries[id(node)] = _entries(node)
            return self._entries[id(node)].get(step)  # type: ignore[arg-type]
        return None


def _entries(node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """The (key, value) nodes of a mapping by key, as _build reads them: the first of duplicates;
    merge keys and keys that are not scalars left out."""
    entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE and isinstance(key_node, yaml.ScalarNode):
            entries.setdefault(key_node.value, (key_node, value_node))
    return entries


def _short(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _scalar(node: yaml.ScalarNode, file: str, problems: list[Problem]) -> Any:
    value = node.value
    if node.tag == "tag:yaml.org,2002:str" and node.style:
        return value  # quoted or block scalar: always a string
    if node.tag != "?" and node.tag not in _STANDARD_TAGS:  # e.g. !!python/name:os.system
        problems.append(Problem.at(_mark(file, node), f"tags such as {_short(node.tag)!r} are not allowed"))
        return value
    if node.style:  # quoted or block (None from the Python parser, "" from libyaml when plain)
        return value
    if value[:1] not in _MAYBE_TYPED:
        return value
    if _NULL.match(value):
        return None
    if _BOOL.match(value):
        return value.lower() == "true"
    if _INT.match(value):
        return int(value, 0) if value.lstrip("+-")[:2] in ("0o", "0x") else int(value)
    if _FLOAT.match(value) and any(ch.isdigit() for ch in value):
        return float(value)
    if _YAML11_BOOL.match(value):
        problems.append(
            Problem.at(
                _mark(file, node),
                f"ambiguous value {value!r}: YAML 1.1 reads it as a boolean; "
                f"write true or false, or quote it as a string",
            )
        )
    elif _YAML11_DATE.match(value):
        problems.append(
            Problem.at(
                _mark(file, node),
                f"unquoted date {value!r}: quote it (\"{value}\") so it stays a string",
            )
        )
    return value


def _build(node: yaml.Node, file: str, problems: list[Problem], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        problems.append(Problem.at(_mark(file, node), f"nesting deeper than {MAX_DEPTH} levels"))
        return None
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, file, problems)
    if node.tag not in _STANDARD_TAGS and node.tag != "?":
        problems.append(Problem.at(_mark(file, node), f"tags such as {_short(node.tag)!r} are not allowed"))
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, file, problems, depth + 1) for item in node.value]
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE:
            problems.append(Problem.at(_mark(file, key_node), "merge keys (<<) are not allowed"))
            continue
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(Problem.at(_mark(file, key_node), "a key must be a plain string"))
            continue
        key = key_node.value
        if not key_node.style and key[:1] in _MAYBE_TYPED_KEY and (_YAML11_BOOL.match(key) or _BOOL.match(key) or _NULL.match(key)):
            problems.append(
                Problem.at(_mark(file, key_node), f"ambiguous key {key!r}: quote it")
            )
        if key in result:
            first, _ = _entries(node)[key]
            problems.append(Problem.at(_mark(file, key_node), f"duplicate key {key!r} (first at line {first.start_mark.line + 1})"))
            continue
        result[key] = _build(value_node, file, problems, depth + 1)
    return result


def parse(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse one YAML document; syntax errors become problems, never exceptions."""
    doc = Document(file)
    problems: list[Problem] = []
    try:
        try:
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError:
            # Report with the pure-Python parser: its messages are the same on every platform.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        problems.append(Problem(file, line, col, f"YAML syntax error: {what}"))
        return doc, problems
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, 1, f"YAML error: {exc}"))
        return doc, problems
    if node is None:
        return doc, problems
    doc.root = node
    doc.data = _build(node, file, problems)
    return doc, problems


def load_file(path: str, display: str | None = None) -> tuple[Document, list[Problem]]:
    display = display or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return Document(display), [Problem(display, 1, 1, f"cannot read file: {exc.strerror}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Document(display), [Problem(display, 1, 1, f"not UTF-8 text (byte {exc.start})")]
    return parse(text, display)
