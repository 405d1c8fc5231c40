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


def problems(doc: Document, checker: Checker) -> Iterator[tuple[tuple[Any, ...], Problem]]:
    """Each error of `doc`'s shape: the path of the value it is about, and the problem to show."""
    for error in checker.iter_errors(doc.data, plain=True):  # read by yaml_source: no tuple in it
        error = most_specific(error)
        path = tuple(error.absolute_path)
        mark, message = _explained(doc, error, path)
        yield path, Problem.at(mark, message)


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
