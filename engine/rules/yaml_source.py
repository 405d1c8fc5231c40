"""Read a hand-edited YAML file into plain data, remembering where every value stands.

PyYAML's own constructors follow YAML 1.1 (``yes`` is true, ``2026-03-01`` is a date) and keep
the last of duplicate keys silently. Files edited by people in pull requests deserve better:
we compose the node tree, resolve plain scalars by the YAML 1.2 core schema, and report the
1.1 surprises and duplicate keys as problems with their line and column.

Those files are untrusted, so reading one is bounded: at most MAX_FILE_BYTES, a regular file
only (never a FIFO that blocks or a device that never ends), at most MAX_NODES values with every
use of an alias counted (a "billion laughs" stops there), at most MAX_DEPTH levels deep.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from .bounded_read import MAX_FILE_BYTES, Unreadable, read_bounded
from .problems import Mark, Problem

Path = tuple[str | int, ...]

_NULL = re.compile(r"^(?:null|Null|NULL|~|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_YAML11_BOOL = re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$")
_YAML11_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}"
                          r"(?:(?:[Tt]|[ \t]+)\d{1,2}:\d{2}:\d{2}(?:\.\d*)?(?:[ \t]*(?:Z|[-+]\d{1,2}(?::\d{2})?))?)?$")
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
    from yaml._yaml import CParser

    class _LibyamlLoader(CParser, _PlainResolver):
        pass

    _LOADER = _LibyamlLoader
# The first characters (or none) of a plain scalar that may be a null, a boolean, a number or a
# YAML 1.1 surprise; any other plain scalar is a string without trying the patterns.
_MAYBE_TYPED = frozenset(["", *"~nNtTfFyYoO+-.0123456789"])
_MAYBE_TYPED_KEY = frozenset(["", *"~nNtTfFyYoO"])


MAX_DEPTH = 64
# The most values one file may hold, each use of an alias counted again: 500 notifications are
# about 50 000; a value costs about 500 bytes once loaded and checked.
MAX_NODES = 250_000
# Syntax errors are worded by the pure-Python parser (the same on every platform) in texts up to
# this size; it reads about 100 KB a second, so a longer text keeps libyaml's wording.
_REWORD_LIMIT = 256 * 1024
# Characters one of which comes before every value but the first, at most two values apart (a
# collection and its first item): twice their count bounds the number of values in a text.
_VALUE_STARTS = (",", "\n", ":", "-", "[", "{", "?", "*")


@dataclass
class Document:
    """A parsed file: its data, and the parser's nodes, where the position of any value or key is
    looked up when a message needs it."""

    file: str
    data: Any = None
    root: yaml.Node | None = None
    nodes: int = 0  # values built, each use of an alias counted
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

    def value_marks(self, path: Path) -> dict[str, Mark]:
        """The mark of each value of the mapping at `path`, by its key (none if it is not a
        mapping): a few marks kept instead of the whole node tree, which is large to keep."""
        node: yaml.Node | None = self.root
        for step in path:
            found = self._child(node, step) if node is not None else None
            node = found[1] if found else None
        if not isinstance(node, yaml.MappingNode):
            return {}
        return {k.value: _mark(self.file, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}

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
    return _resolved(node, file, problems)


def _resolved(node: yaml.ScalarNode, file: str, problems: list[Problem]) -> Any:
    """A plain scalar that may be a null, a boolean or a number, read as YAML 1.2 reads it; one
    that YAML 1.1 reads otherwise is a problem."""
    value = node.value
    if _NULL.match(value):
        return None
    if _BOOL.match(value):
        return value.lower() == "true"
    if _INT.match(value):
        return int(value, 0) if value.lstrip("+-")[:2] in ("0o", "0x") else int(value)
    if _FLOAT.match(value) and any(ch.isdigit() for ch in value):
        return float(value)
    surprise = _yaml11_surprise(value)
    if surprise:
        problems.append(Problem.at(_mark(file, node), surprise))
    return value


def _yaml11_surprise(value: str) -> str | None:
    if _YAML11_BOOL.match(value):
        return (f"ambiguous value {value!r}: YAML 1.1 reads it as a boolean; "
                f"write true or false, or quote it as a string")
    if _YAML11_DATE.match(value):
        return f"unquoted date {value!r}: quote it (\"{value}\") so it stays a string"
    return None


class _Builder:
    """Builds plain data from nodes, counting every value it builds (an alias each time it is
    used, as the data it becomes repeats it): past MAX_NODES it stops with one problem."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file, self.problems = file, problems
        self.nodes = 0
        self.built: set[int] = set()  # the collections built: meeting one again is an alias
        self.aliased = False
        self.stopped = False

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            return self.stop(node)
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node, self.file, self.problems)
        if depth > MAX_DEPTH:
            self.problem(node, f"nesting deeper than {MAX_DEPTH} levels")
            return None
        return self.collection(node, depth)

    def collection(self, node: yaml.Node, depth: int) -> Any:
        if id(node) in self.built:
            self.aliased = True
        self.built.add(id(node))
        if node.tag not in _STANDARD_TAGS and node.tag != "?":
            self.problem(node, f"tags such as {_short(node.tag)!r} are not allowed")
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, depth + 1) for item in node.value]
        assert isinstance(node, yaml.MappingNode)  # the composer makes no other kind of node
        return self.mapping(node, depth)

    def stop(self, node: yaml.Node) -> None:
        if not self.stopped:
            self.stopped = True
            why = ("with every use of an alias counted: an alias bomb?" if self.aliased
                   else "split it into several files")
            self.problem(node, f"more than {MAX_NODES} values in one file ({why})")
        return None

    def mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            if key is None:
                continue
            if key in result:
                first, _ = _entries(node)[key]
                self.problem(key_node, f"duplicate key {key!r} (first at line {first.start_mark.line + 1})")
                continue
            result[key] = self.build(value_node, depth + 1)
        return result

    def key(self, node: yaml.Node) -> str | None:
        """A key's text; None (a problem) for a merge key or a key that is not a scalar."""
        if node.tag == _MERGE:
            self.problem(node, "merge keys (<<) are not allowed")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, "a key must be a plain string")
            return None
        key: str = node.value
        if not node.style and key[:1] in _MAYBE_TYPED_KEY and (
                _YAML11_BOOL.match(key) or _BOOL.match(key) or _NULL.match(key)):
            self.problem(node, f"ambiguous key {key!r}: quote it")
        return key

    def problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem.at(_mark(self.file, node), message))


def _too_many_values(text: str, file: str) -> Problem | None:
    """A problem when `text` holds more than MAX_NODES values, found on the parser's events
    before any node is built (a node costs ten times more); counted only when the characters
    that can start a value say it might."""
    if 2 * sum(map(text.count, _VALUE_STARTS)) + 2 <= MAX_NODES:
        return None
    try:
        past = next(itertools.islice(_value_events(text), MAX_NODES, None), None)
    except yaml.YAMLError:
        return None  # composing reports it
    if past is None:
        return None
    start = past.start_mark
    where = Mark(file, start.line + 1, start.column + 1) if start else Mark(file)
    return Problem.at(where, f"more than {MAX_NODES} values in one file (split it into several files)")


def _value_events(text: str) -> Iterator[yaml.Event]:
    """The parser's events that each make a value: scalars, collections and aliases."""
    return (event for event in yaml.parse(text, Loader=_LOADER)
            if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent, yaml.AliasEvent)))


def _compose(text: str) -> yaml.Node | None:
    """The node tree of one document; YAMLError for a syntax error."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise _reworded(text, exc) from None


def _reworded(text: str, exc: yaml.YAMLError) -> yaml.YAMLError:
    """The pure-Python parser's error for `text` (its messages are the same on every platform),
    or libyaml's `exc` where that parser finds none (libyaml stops at 1 000 levels of nesting,
    which Python's composer can only reach by recursion) or the text is long."""
    if _LOADER is yaml.SafeLoader or len(text) > _REWORD_LIMIT or _too_deep(exc):
        return exc
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as reworded:
        return reworded
    except RecursionError:
        pass
    return exc


def _too_deep(exc: yaml.YAMLError) -> bool:
    return "maximum nesting depth" in str(getattr(exc, "problem", "") or "")  # libyaml stops at 1 000 levels


def parse(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse one YAML document; syntax errors and the bounds above become problems, never
    exceptions."""
    doc = Document(file)
    beyond = _too_large(file) if len(text) > MAX_FILE_BYTES else _too_many_values(text, file)
    if beyond:
        return doc, [beyond]
    try:
        node = _compose(text)
    except yaml.YAMLError as exc:
        return doc, [_syntax_problem(text, file, exc)]
    except RecursionError:  # the pure-Python composer, where libyaml is missing
        return doc, [Problem(file, 1, 1, f"nesting deeper than {MAX_DEPTH} levels")]
    return doc, [] if node is None else _build(doc, node)


def _syntax_problem(text: str, file: str, exc: yaml.YAMLError) -> Problem:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Problem(file, 1, 1, f"YAML error: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = exc.problem or exc.context or "invalid YAML"
    if _tab_indent(text, mark):
        what = "a tab in the indentation: indent with spaces, not tabs"
    message = f"nesting deeper than {MAX_DEPTH} levels" if _too_deep(exc) else f"YAML syntax error: {what}"
    return Problem(file, line, col, message)


def _build(doc: Document, node: yaml.Node) -> list[Problem]:
    """Builds the document's data from its nodes, keeping them for the positions; the problems met."""
    problems: list[Problem] = []
    builder = _Builder(doc.file, problems)
    data = builder.build(node)
    doc.nodes = builder.nodes
    if not builder.stopped:
        doc.root, doc.data = node, data
    return problems


def _tab_indent(text: str, mark: Any) -> bool:
    """Whether the parser stopped at a tab that indents its line (YAML indents with spaces only;
    the parser's own words for it are about tokens)."""
    if mark is None:
        return False
    lines = text.splitlines()
    line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
    indent = line[:len(line) - len(line.lstrip(" \t"))]
    return "\t" in indent and mark.column <= len(indent)


def _too_large(file: str) -> Problem:
    return Problem(file, 1, 1, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB "
                               f"({MAX_FILE_BYTES} bytes): split it into several files")


def load_file(path: str, display: str | None = None) -> tuple[Document, list[Problem]]:
    display = display or path
    try:
        raw = read_bounded(path)
    except Unreadable as exc:
        return Document(display), [Problem(display, 1, 1, str(exc))]
    if raw is None:
        return Document(display), [_too_large(display)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Document(display), [Problem(display, 1, 1, f"not UTF-8 text (byte {exc.start})")]
    return parse(text, display)
