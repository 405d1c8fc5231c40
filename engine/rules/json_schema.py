"""JSON Schema (2020-12) checks, compiled once, with jsonschema's own messages.

Almost every instance checked is valid, so a compiled validator answers "is it valid?" and
jsonschema, imported only when the answer is no, finds the errors and words them. The compiled
validator never accepts what jsonschema refuses: it checks formats with the functions below, and
a schema using a keyword whose arithmetic could differ is left to jsonschema alone.

Patterns come from rule files, which are untrusted, and are matched against event data, so no
pattern ever runs on Python's backtracking `re` (`^(a+)+$` takes minutes on 41 characters
there): both validators match `pattern` and `patternProperties` with Rust's regex crate, which
runs in linear time and refuses what it cannot run that way (lookaround, backreferences, a
pattern too large once compiled). Each pattern is first written in that engine's syntax with
the meaning Python's `re` gives it (`\\d` any decimal digit, `$` also before a final newline...),
so a pattern accepts what it accepted before, only in linear time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from functools import lru_cache
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

import jsonschema_rs
from rfc3986_validator import validate_rfc3986

from .linear_patterns import LINEAR, pattern_search, python_dialect
from .timeparse import is_instant, is_zone

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import SchemaError, ValidationError

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Keywords the compiled validator could judge otherwise than jsonschema (float division): a
# schema that uses them is checked by jsonschema only.
_LEFT_TO_JSONSCHEMA = ("multipleOf",)


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


def _regex(value: object) -> bool:
    if not isinstance(value, str):  # formats judge strings only: `type` judges the rest
        return True
    try:
        re.compile(value)  # compiled only, never matched: `format: regex` asks for a valid regex
    except (re.error, RecursionError, OverflowError, ValueError):  # e.g. 5 000 nested groups
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
def format_checker() -> FormatChecker:
    """jsonschema's 2020-12 format checker, with the engine's own `timezone` and `date-time`."""
    from jsonschema import Draft202012Validator

    checker: FormatChecker = Draft202012Validator.FORMAT_CHECKER
    checker.checks("timezone")(_timezone)
    checker.checks("date-time", raises=ValueError)(_date_time)
    checker.checks("regex")(_regex)
    return checker


def _asked_of_jsonschema(name: str) -> Callable[[str], bool]:
    return lambda value: format_checker().conforms(value, name)


def _matches(pattern: str, text: str) -> bool | None:
    """Whether `pattern` finds a match in `text`; None when the pattern cannot be run."""
    try:
        return pattern_search(pattern)(text)
    except ValueError:
        return None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema's `pattern`, matched on the linear-time engine.
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string"):
        found = _matches(pattern, instance)
        if found is None:
            yield ValidationError(f"the pattern {pattern!r} cannot be checked")
        elif not found:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Mapping[str, Any], instance: Any,
                        schema: Any) -> Iterator[ValidationError]:
    # jsonschema's `patternProperties`, matched on the linear-time engine.
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _matches(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, allowed: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema's `additionalProperties`, whose patternProperties are matched on the linear-time engine.
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

    if "patternProperties" not in schema or not validator.is_type(instance, "object"):
        yield from Draft202012Validator.VALIDATORS["additionalProperties"](validator, allowed, instance, schema)
        return
    extras = _extras(instance, schema)
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        yield ValidationError(_unmatched(extras, schema["patternProperties"]))


def _extras(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> set[str]:
    """The keys of `instance` that neither `properties` declares nor a pattern of `patternProperties` matches."""
    declared = schema.get("properties", {})
    return {key for key in instance
            if key not in declared and not any(_matches(p, key) for p in schema["patternProperties"])}


def _unmatched(extras: set[str], patterns: Iterable[str]) -> str:
    verb = "does" if len(extras) == 1 else "do"
    joined = ", ".join(repr(each) for each in sorted(extras))
    return f"{joined} {verb} not match any of the regexes: {', '.join(repr(each) for each in sorted(patterns))}"


@lru_cache(maxsize=1)
def _validator_class() -> type[Draft202012Validator]:
    """jsonschema's 2020-12 validator with the keywords that match patterns replaced (see the
    module docstring). `unevaluatedProperties` still reads patternProperties with `re`: the
    loader refuses event schemas that use both."""
    from jsonschema import Draft202012Validator, validators

    extended: type[Draft202012Validator] = validators.extend(  # type: ignore[no-untyped-call]  # stubs leave it bare
        Draft202012Validator, {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        })
    return extended


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


# Where a schema holds subschemas: maps of name -> schema, lists of schemas, single schemas.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMAS = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
            "unevaluatedItems", "unevaluatedProperties")


def subschemas(schema: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Mapping[str, Any], tuple[Any, ...]]]:
    """Every schema object in `schema` (itself included), with its path from `schema`."""
    stack = [(schema, at)]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, Mapping):
            continue
        yield node, path
        for key, value in node.items():
            if key in _SCHEMA_MAPS and isinstance(value, Mapping):
                stack.extend((sub, path + (key, name)) for name, sub in value.items())
            elif key in _SCHEMA_LISTS and isinstance(value, list):
                stack.extend((sub, path + (key, i)) for i, sub in enumerate(value))
            elif key in _SCHEMAS:
                stack.append((value, path + (key,)))


def with_subschemas(node: Mapping[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    """A copy of the schema `node` with `fn` applied to each of its direct subschemas (the values of
    `properties` and the like, the items of `allOf` and the like, `items`, `not` and the like)."""
    out = dict(node)
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {k: fn(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [fn(v) for v in value]
        elif key in _SCHEMAS:
            out[key] = fn(value)
    return out


def _in_python_dialect(node: Any) -> Any:
    """A copy of the schema `node` whose patterns are written for the linear engine with the
    meaning Python's `re` gives them (see python_dialect); ValueError for one it cannot write."""
    if not isinstance(node, Mapping):
        return node
    out = with_subschemas(node, _in_python_dialect)
    if isinstance(out.get("pattern"), str):
        out["pattern"] = python_dialect(out["pattern"])
    if isinstance(out.get("patternProperties"), Mapping):
        out["patternProperties"] = {python_dialect(k): v for k, v in out["patternProperties"].items()}
    return out


def _compile(schema: dict[str, Any]) -> Any:
    """The compiled validator, or None where only jsonschema may judge."""
    named = _named_formats(schema)
    if named is None:
        return None
    formats = {name: QUICK_FORMATS.get(name) or _asked_of_jsonschema(name) for name in named | set(QUICK_FORMATS)}
    try:
        return jsonschema_rs.Draft202012Validator(_in_python_dialect(schema), formats=formats, validate_formats=True,
                                                  pattern_options=LINEAR, offline=True)
    except Exception:  # anything it cannot compile (a remote $ref, a bad pattern): jsonschema decides
        return None


def _named_formats(schema: dict[str, Any]) -> set[str] | None:
    """The formats `schema` names; None when it uses what only jsonschema judges."""
    named: set[str] = set()
    for key, value in _walk(schema):
        if key in _LEFT_TO_JSONSCHEMA or (key == "$schema" and value != DRAFT):
            return None
        if key == "format" and isinstance(value, str):
            named.add(value)
    return named


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

    def iter_errors(self, instance: Any, *, plain: bool = False) -> Iterator[ValidationError]:
        return iter(()) if self.surely_valid(instance, plain=plain) else self.full().iter_errors(instance)

    def full(self) -> Draft202012Validator:
        if self._full is None:
            self._full = _validator_class()(self.schema, format_checker=format_checker())
        return self._full


def most_specific(error: ValidationError) -> ValidationError:
    """The error itself, or for a oneOf/anyOf the most specific error among its branches."""
    if not error.context:
        return error
    from jsonschema.exceptions import best_match

    return best_match(error.context) or error


@lru_cache(maxsize=1)
def _meta_schema() -> Checker:
    return Checker({"$ref": DRAFT})


def schema_error(schema: Mapping[str, Any]) -> SchemaError | None:
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
