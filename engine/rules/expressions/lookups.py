"""Templates that read fields and call the engine's own filters, rendered without Jinja.

Most data values are such templates: `{{ booking.service.name }}`, `{{ notification }}:{{ booking.id }}`,
`{{ booking.location | default(none) }}`, `{{ booking.start_time | local_time(client.timezone) }}`. A
Jinja render of one costs ten times more than the reads it makes. Here the template is split into
its text and its outputs once; a render reads every field first, and only when each is a plain
read (every step a key of a plain dict, or a missing last step that `default` is given) calls the
filters, the sandbox's own guarded ones, with what Jinja would pass them. Anything else (a missing
field, a name of Jinja's own, a list, an attribute of a dict such as `items`) is rendered by Jinja,
with nothing done yet here: Jinja fails or reads it as it does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .environment import GLOBALS, sandbox
from .errors import bounded
from .values import concat, plain

_MISSING: Any = object()
Renderer = Callable[[dict[str, Any]], Any]

_PATH = r"[A-Za-z]\w*(?:\.[A-Za-z]\w*)*"
_ARGUMENT = rf"(?:{_PATH}|'[^'\\{{}}\r\n]*')"
_CALL = rf"\|\s*(\w+)\s*(?:\(\s*({_ARGUMENT}(?:\s*,\s*{_ARGUMENT})*)?\s*\))?\s*"  # `| name(arguments)`
_OUTPUT = re.compile(rf"\{{\{{\s*({_PATH})\s*(?:{_CALL})?\}}\}}")
_ARGUMENTS = re.compile(_ARGUMENT)
# Text Jinja passes through untouched: no delimiter can start in it, no newline to normalise.
_TEXT = re.compile(r"[^{}\r\n]*")
# Filters that take their arguments as given (no context passed first) and whose work is bounded
# by them; each is called through the sandbox's guard, which spends its step and weighs.
_FILTERS = frozenset({"default", "d", "local_time", "money", "iso", "length"})
_LENIENT = frozenset({"default", "d"})  # given the undefined value Jinja reads for a missing last step
_CONSTANTS = {"none": None, "None": None, "true": True, "True": True, "false": False, "False": False}
_JINJA_NAMES = frozenset({*_CONSTANTS, "self", "loop", "caller", "varargs", "kwargs"})
_DICT_NAMES = frozenset(dir(dict))  # `x.items` reads the method, not a key
Path = tuple[str, ...]


@dataclass(frozen=True)
class Output:
    """One `{{ ... }}`: the field it reads, and the filter it calls with its arguments (a field
    read as a tuple of names, a constant as itself)."""

    path: Path
    filter: str | None = None
    arguments: tuple[Any, ...] = ()


Part = str | Output


@functools.lru_cache(maxsize=16_384)
def parts(source: str) -> tuple[Part, ...] | None:
    """The template `source` as its text and its outputs; None for any other template."""
    found: list[Part | None] = []
    end = 0
    for match in _OUTPUT.finditer(source):
        found += [source[end:match.start()], _output(match)]
        end = match.end()
    found.append(source[end:])
    return _checked(found) if len(found) > 1 else None


def _checked(found: list[Part | None]) -> tuple[Part, ...] | None:
    """The parts, or None where an output is not one the fast path renders, or a text is not plain."""
    if any(part is None or isinstance(part, str) and not _TEXT.fullmatch(part) for part in found):
        return None
    return tuple(part for part in found if part is not None and part != "")


def _output(match: re.Match[str]) -> Output | None:
    path, name, arguments = match.groups()
    output = Output(tuple(path.split(".")), name, tuple(map(_argument, _ARGUMENTS.findall(arguments or ""))))
    reads = [output.path, *(a for a in output.arguments if isinstance(a, tuple))]
    return output if (name is None or name in _FILTERS) and all(map(_plain_path, reads)) else None


def _argument(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1]
    return _CONSTANTS[text] if text in _CONSTANTS else tuple(text.split("."))


def _plain_path(path: Path) -> bool:
    """Whether Jinja reads `path` as keys, when it is there: not a name of Jinja's own or one of the
    sandbox's globals (which a field of the same name hides: rare, left to Jinja), not a dict's
    attribute (`x.items` reads the method)."""
    return path[0] not in _JINJA_NAMES and path[0] not in GLOBALS and not _DICT_NAMES.intersection(path[1:])


def renderer(source: str, otherwise: Renderer) -> Renderer | None:
    """What renders the template `source` (see the module's docstring), calling `otherwise` where
    a read is not a plain one; None when the template is not made of plain lookups. It must run
    within a budget (the filters spend from it)."""
    found = parts(source)
    if found is None or len(found) > 1 or isinstance(found[0], str):
        return None if found is None else functools.partial(_joined, found, otherwise)
    if found[0].filter is None:
        return functools.partial(_lone_read, found[0].path, otherwise)
    return functools.partial(_lone, found[0], otherwise)


def _lone_read(path: Path, otherwise: Renderer, context: dict[str, Any]) -> Any:
    value = _read(path, context)
    return otherwise(context) if value is _MISSING else bounded(plain(value))


def _lone(output: Output, otherwise: Renderer, context: dict[str, Any]) -> Any:
    found = _resolved(output, context)
    return otherwise(context) if found is None else bounded(plain(_value(output, found)))


def _joined(found: tuple[Part, ...], otherwise: Renderer, context: dict[str, Any]) -> Any:
    resolved = [part if isinstance(part, str) else _resolved(part, context) for part in found]
    if any(value is None for value in resolved):
        return otherwise(context)
    return bounded(concat(map(_part_value, found, resolved)))  # as the template joins its output, with its bound


def _part_value(part: Part, resolved: Any) -> Any:
    return part if isinstance(part, str) else _value(part, resolved)


def _resolved(output: Output, context: dict[str, Any]) -> tuple[Any, ...] | None:
    """The value an output reads and the arguments of its filter; None when one is not a plain read."""
    value = _read_lenient(output.path, context) if output.filter in _LENIENT else _read(output.path, context)
    if not output.arguments:
        return None if value is _MISSING else (value,)
    found = (value, *[_read(a, context) if isinstance(a, tuple) else a for a in output.arguments])
    return None if any(value is _MISSING for value in found) else found  # `is`: an undefined value refuses ==


def _value(output: Output, resolved: tuple[Any, ...]) -> Any:
    return resolved[0] if output.filter is None else sandbox().filters[output.filter](*resolved)


def _read(path: Path, context: dict[str, Any]) -> Any:
    """What Jinja reads at `path` when every step is a key of a plain dict (see _plain_path), else _MISSING."""
    value = context.get(path[0], _MISSING)
    for name in path[1:]:
        value = value.get(name, _MISSING) if type(value) is dict else _MISSING
    return value


def _read_lenient(path: Path, context: dict[str, Any]) -> Any:
    """As _read, with the undefined value Jinja gives for a missing last step."""
    parent = _read(path[:-1], context) if len(path) > 1 else context
    if type(parent) is not dict:
        return _MISSING
    return parent[path[-1]] if path[-1] in parent else sandbox().undefined(name=path[-1])
