"""A render's output as JSON data: a lone value as is, several parts joined into a string."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from itertools import chain, islice
from typing import Any, NoReturn

from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

from ..budget import check_weight
from ..guards import MAX_RESULT
from .errors import ExpressionError

_SEQUENCES = (list, tuple, set, frozenset, range, Iterator, KeysView, ValuesView, ItemsView)


def plain(value: Any, depth: int = 0) -> Any:
    """The rendered value as JSON data. A native render returns a lone value as is, so without
    this a StrictUndefined, a generator (`items | map(...)`) or a function would slip into the
    payload instead of failing here."""
    if type(value) is str:  # most values, and nothing to do for them
        return value
    if isinstance(value, Undefined):
        _undefined(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return str(value)  # a Markup (from `tojson`, `safe`...) becomes a plain string
    return _collection(value, depth)


def _undefined(value: Undefined) -> NoReturn:
    str(value)  # StrictUndefined raises here (the sandbox's SecurityError for unsafe attributes)
    raise UndefinedError("the expression gives an undefined value")


def _collection(value: Any, depth: int) -> Any:
    if depth >= 64:
        raise ExpressionError("the value is nested deeper than 64 levels")
    if depth == 0:
        check_weight(value)  # the payload is written out as JSON, shared items repeated
    if isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, _SEQUENCES):
        return [plain(v, depth + 1) for v in _items(value, depth)]
    raise ExpressionError(f"gives a {type(value).__name__}, which is not a JSON value")


def _items(value: Iterable[Any], depth: int) -> list[Any]:
    items = list(islice(value, MAX_RESULT + 1))
    if len(items) > MAX_RESULT:
        raise ExpressionError(f"gives more than {MAX_RESULT} items")
    if depth == 0 and isinstance(value, Iterator):
        check_weight(items)
    return items


def concat(values: Iterable[Any]) -> Any:
    """Like Jinja's native_concat, but never literal_eval's a string: an id "123" stays "123"."""
    head = list(islice(values, 2))
    if not head:
        return ""
    if len(head) == 1:
        return plain(head[0])
    return _joined(chain(head, values))


def _joined(values: Iterable[Any]) -> str:
    out, size = [], 0
    for text in map(_text, values):  # counted as it goes: a loop cannot build a huge string first
        size += len(text)
        if size > MAX_RESULT:
            raise ExpressionError(f"renders to more than {MAX_RESULT} characters")
        out.append(text)
    return "".join(out)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        check_weight(value)  # before str() writes a collection out, shared items repeated
    return str(value)
