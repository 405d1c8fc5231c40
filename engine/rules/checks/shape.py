"""schema.json's errors in words: an unknown key with its near miss and the allowed ones, a bad
name, a value outside a list with Courier's name for it; each at the place in the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import delivery_options
from ..json_schema import Checker, most_specific
from ..problems import Mark, Problem
from ..wording import did_you_mean, dotted, plain
from ..yaml_source import Document

# Errors about a value of the right type (a bad name, a number out of range...): the meaning check
# of the value still reads it safely, and its message, where clearer, is the one shown.
VALUE_ERRORS = frozenset({"pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const",
                          "format", "minLength", "maxLength", "uniqueItems", "propertyNames", "minItems", "maxItems",
                          "multipleOf", "minProperties", "maxProperties"})


def problems(doc: Document, checker: Checker) -> Iterator[tuple[tuple[Any, ...], Problem, bool]]:
    """Each error of `doc`'s shape: the path of the value it is about (of the missing key, for a
    key that is required; of the first unknown key, for unknown ones), the problem to show, and
    whether it is about the value's structure (a value of another type, a key missing or unknown),
    which no meaning check can then read safely."""
    for found in checker.iter_errors(doc.data, plain=True):  # read by yaml_source: no tuple in it
        error = most_specific(found)
        path = tuple(error.absolute_path)
        mark, message = _explained(doc, error, path)
        yield path + _missing(error), Problem.at(mark, message), _structural(found)


def _structural(error: Any) -> bool:
    """Whether `error` is about the structure of its value: of a type no alternative allows, a key
    missing or unknown; not a string too long for the one alternative it is."""
    if error.validator in ("anyOf", "oneOf") and error.context:
        return all(_structural(alternative) for alternative in error.context)
    return error.validator not in VALUE_ERRORS


def _missing(error: Any) -> tuple[Any, ...]:
    """The first key a `required` error says is missing, or the first unknown key an
    `additionalProperties` error names, as a step of a path; else no step."""
    if not isinstance(error.instance, dict):
        return ()
    if error.validator == "required":
        return next(((key,) for key in error.validator_value if key not in error.instance), ())
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        return next(((key,) for key in error.instance if key not in allowed), ())
    return ()


def _explained(doc: Document, error: Any, path: tuple[Any, ...]) -> tuple[Mark, str]:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            where = dotted(path) or "the top level"
            return doc.mark(path + (extra[0],), key=True), (
                f"{where}: unknown key {extra[0]!r}{did_you_mean(extra[0], allowed)} "
                f"(allowed: {', '.join(sorted(allowed))})")
    if error.validator == "propertyNames":
        return doc.mark(path + (error.instance,), key=True), _bad_name(error, path)
    return doc.mark(path), f"{dotted(path) or 'file'}: {_message(error)}"


def _bad_name(error: Any, path: tuple[Any, ...]) -> str:
    said = error.message
    why = said.split(" does not match ")[-1] if "does not match" in said else said
    return f"{dotted(path)}: {error.instance!r} is not a valid name here ({why})"


def _message(error: Any) -> str:
    if error.validator == "pattern" and error.schema.get("description"):
        return f"{error.instance!r} does not fit: {error.schema['description']}"
    message = plain(error.message)
    if error.validator == "enum":
        allowed = error.validator_value
        message += delivery_options.hint(error.instance, allowed) or did_you_mean(error.instance, allowed)
    return message
