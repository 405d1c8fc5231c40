"""Templates that read fields and call the engine's own filters, rendered without Jinja.

Most data values are such templates: `{{ booking.service.name }}`, `{{ notification }}:{{ booking.id }}`,
`{{ booking.location | default(none) }}`, `{{ booking.start_time | local_time(client.timezone) }}`. A
Jinja render of one costs ten times more than the reads it makes. Here the template is split into
its text and its outputs once; a render reads every field first, and only when each is a plain
read (every step a key of a plain dict, or a missing last step that `default` is given) calls the
filters, the sandbox's own guarded ones, with what Jinja would pass them. Anything else (a missing
field, a name of Jinja's own, a list, an attribute of a dict such as `items`) gives MISSING, with
nothing done yet, and the caller renders the template with Jinja, which fails or reads it as it does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .environment import sandbox
from .errors import bounded
from .values import concat, plain

MISSING: Any = object()

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
_LENIENT = frozenset({"default", "d"})  # they are given an undefined value for a missing last step
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
    if name is not None and name not in _FILTERS:
        return None
    given = tuple(map(_argument, _ARGUMENTS.findall(arguments or "")))
    return Output(tuple(path.split(".")), name, given)


def _argument(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1]
    return _CONSTANTS[text] if text in _CONSTANTS else tuple(text.split("."))


def renderer(source: str) -> Callable[[dict[str, Any]], Any] | None:
    """What renders the template `source` (see the module's docstring), or None when it is not
    made of plain lookups; it must run within a budget (the filters spend from it)."""
    found = parts(source)
    if found is None:
        return None
    if len(found) == 1 and isinstance(found[0], Output):
        return functools.partial(_lone, found[0])
    return functools.partial(_joined, found)


def _lone(output: Output, context: dict[str, Any]) -> Any:
    found = _resolved(output, context)
    return MISSING if found is None else bounded(plain(_value(output, found)))


def _joined(found: tuple[Part, ...], context: dict[str, Any]) -> Any:
    resolved = [part if isinstance(part, str) else _resolved(part, context) for part in found]
    if any(value is None for value in resolved):
        return MISSING
    return bounded(concat(map(_part_value, found, resolved)))  # as the template joins its output, with its bound


def _part_value(part: Part, resolved: Any) -> Any:
    return part if isinstance(part, str) else _value(part, resolved)


def _resolved(output: Output, context: dict[str, Any]) -> tuple[Any, tuple[Any, ...]] | None:
    """The value an output reads and the arguments of its filter; None when one is not a plain read."""
    value = _read(output.path, context, output.filter in _LENIENT)
    arguments = tuple(_read(a, context, False) if isinstance(a, tuple) else a for a in output.arguments)
    if value is MISSING or any(argument is MISSING for argument in arguments):
        return None
    return value, arguments


def _value(output: Output, resolved: tuple[Any, tuple[Any, ...]]) -> Any:
    value, arguments = resolved
    return value if output.filter is None else sandbox().filters[output.filter](value, *arguments)


def _read(path: Path, context: dict[str, Any], lenient: bool) -> Any:
    """What Jinja reads at `path` when it is a plain read (see the module's docstring); with
    `lenient`, the undefined value it gives for a missing last step."""
    value = _root(path[0], context, lenient and len(path) == 1)
    for step, name in enumerate(path[1:], 2):
        value = _step(value, name, lenient and step == len(path))
    return value


def _root(name: str, context: dict[str, Any], lenient: bool) -> Any:
    if name in _JINJA_NAMES:
        return MISSING
    if name in context:
        return context[name]
    return sandbox().undefined(name=name) if lenient and name not in sandbox().globals else MISSING


def _step(value: Any, name: str, lenient: bool) -> Any:
    if type(value) is not dict or name in _DICT_NAMES:
        return MISSING
    if name in value:
        return value[name]
    return sandbox().undefined(obj=value, name=name) if lenient else MISSING
