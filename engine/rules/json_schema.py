"""JSON Schema (2020-12) checks, compiled once, with jsonschema's own messages.

Almost every instance checked is valid, so a compiled validator answers "is it valid?" and
jsonschema, imported only when the answer is no, finds the errors and words them. The compiled
validator never accepts what jsonschema refuses: it matches `pattern` with Python's `re` as
jsonschema does, checks formats with the functions below, and a schema using a keyword whose
arithmetic or regular expressions could differ is left to jsonschema alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from functools import lru_cache
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import jsonschema_rs
from rfc3986_validator import validate_rfc3986

from .timeparse import is_instant, is_zone

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import SchemaError, ValidationError

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Keywords the compiled validator could judge otherwise than jsonschema (a regular expression
# not run by `re`, float division): a schema that uses them is checked by jsonschema only.
_LEFT_TO_JSONSCHEMA = ("patternProperties", "multipleOf")


def _timezone(value: object) -> bool:
    return not isinstance(value, str) or is_zone(value)


def _date_time(value: object) -> bool:
    # Stricter than RFC 3339's validator on purpose: an offset is required and checked.
    return not isinstance(value, str) or is_instant(value)


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _date(value: str) -> bool:
    try:
        return bool(_DATE.fullmatch(value)) and bool(date.fromisoformat(value))
    except ValueError:
        return False


def _regex(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return False
    return True


# The formats the compiled validator checks itself, each as jsonschema checks it (the engine's
# own two, and jsonschema's with this project's dependencies); any other format a schema names
# is asked of jsonschema's checker.
QUICK_FORMATS: dict[str, Callable[[str], bool]] = {
    "timezone": _timezone,
    "date-time": _date_time,
    "date": _date,
    "email": lambda value: "@" in value,
    "regex": _regex,
}
if find_spec("rfc3987") is None:  # jsonschema prefers rfc3987 for URIs when it is installed
    QUICK_FORMATS["uri"] = lambda value: bool(validate_rfc3986(value, rule="URI"))
    QUICK_FORMATS["uri-reference"] = lambda value: bool(validate_rfc3986(value, rule="URI_reference"))


@lru_cache(maxsize=1)
def format_checker() -> "FormatChecker":
    """jsonschema's 2020-12 format checker, with the engine's own `timezone` and `date-time`."""
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.FORMAT_CHECKER
    checker.checks("timezone")(_timezone)
    checker.checks("date-time", raises=ValueError)(_date_time)
    return checker


def _asked_of_jsonschema(name: str) -> Callable[[str], bool]:
    return lambda value: format_checker().conforms(value, name)


class _Pattern:
    """The `pattern` keyword as jsonschema reads it: `re.search`."""

    def __init__(self, parent_schema: Any, value: str, schema_path: Any):
        self.search = re.compile(value).search

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and not self.search(instance):
            raise ValueError("does not match")


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                yield key, value
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def _has_tuple(instance: Any) -> bool:
    # The compiled validator reads a tuple as an array; jsonschema does not.
    stack = [instance]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, tuple):
            return True
    return False


def _compile(schema: dict[str, Any]) -> Any:
    """The compiled validator, or None where only jsonschema may judge."""
    named: set[str] = set()
    for key, value in _walk(schema):
        if key in _LEFT_TO_JSONSCHEMA or (key == "$schema" and value != DRAFT):
            return None
        if key == "format" and isinstance(value, str):
            named.add(value)
    formats = {name: QUICK_FORMATS.get(name) or _asked_of_jsonschema(name) for name in named | set(QUICK_FORMATS)}
    try:
        return jsonschema_rs.Draft202012Validator(schema, formats=formats, validate_formats=True,
                                                  keywords={"pattern": _Pattern}, offline=True)
    except Exception:  # anything it cannot compile (a remote $ref, a bad pattern): jsonschema decides
        return None


class Checker:
    """One schema: `iter_errors` yields jsonschema's errors, and is quick when there are none."""

    def __init__(self, schema: Mapping[str, Any]):
        self.schema = dict(schema)
        self.compiled = _compile(self.schema)
        self._full: Draft202012Validator | None = None

    def surely_valid(self, instance: Any, *, plain: bool = False) -> bool:
        """True when the compiled validator finds `instance` valid (so jsonschema would too).
        `plain`: the caller knows `instance` holds no tuple (it is built of dicts, lists and
        scalars, as the YAML reader builds it), so it is not walked to look for one."""
        if self.compiled is None or (not plain and _has_tuple(instance)):
            return False
        try:
            return bool(self.compiled.is_valid(instance))
        except Exception:  # a value it cannot read (a set, a mapping proxy): jsonschema decides
            return False

    def iter_errors(self, instance: Any, *, plain: bool = False) -> Iterator["ValidationError"]:
        return iter(()) if self.surely_valid(instance, plain=plain) else self.full().iter_errors(instance)

    def full(self) -> "Draft202012Validator":
        if self._full is None:
            from jsonschema import Draft202012Validator

            self._full = Draft202012Validator(self.schema, format_checker=format_checker())
        return self._full


def most_specific(error: "ValidationError") -> "ValidationError":
    """The error itself, or for a oneOf/anyOf the most specific error among its branches."""
    if not error.context:
        return error
    from jsonschema.exceptions import best_match

    return best_match(error.context) or error


@lru_cache(maxsize=1)
def _meta_schema() -> Checker:
    return Checker({"$ref": DRAFT})


def schema_error(schema: Mapping[str, Any]) -> "SchemaError | None":
    """jsonschema's SchemaError when `schema` is not a valid 2020-12 schema, else None."""
    if _meta_schema().surely_valid(schema):
        return None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    format_checker()
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return exc
    return None
