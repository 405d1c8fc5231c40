"""engine.rules.json_schema: the compiled check never accepts what jsonschema refuses, and the
errors are jsonschema's own."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from engine.rules.json_schema import Checker, _has_tuple, format_checker, schema_error

# (schema, instance) pairs where a regular expression engine, a format or a number could be read
# otherwise than jsonschema reads them.
CASES: list[tuple[dict[str, Any], Any]] = [
    ({"pattern": "^\\S+$"}, "a\x1cb"),  # \x1c is whitespace to Python's re only
    ({"pattern": "^[a-z]+$"}, "abc\n"),  # $ matches before a final newline in Python's re
    ({"pattern": "^\\d+$"}, "\u0663"),  # an Arabic-Indic digit is a \d to Python's re
    ({"pattern": "^\\w+$"}, "é"),
    ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"abc\n": 1, "B": 2}),
    ({"patternProperties": {"^\\S+$": {"type": "integer"}}}, {"a\x1cb": "x"}),
    ({"multipleOf": 0.1}, 0.3),
    ({"type": "integer"}, 1.0),
    ({"type": "array"}, (1, 2)),
    ({"properties": {"a": {"type": "array"}}}, {"a": (1, 2)}),
    ({"type": "object"}, {"a": {1, 2}}),
    ({"format": "email"}, "@"),
    ({"format": "email"}, "no at sign"),
    ({"format": "date"}, "0000-01-01"),
    ({"format": "date"}, "2026-02-30"),
    ({"format": "date"}, "2026-02-28"),
    ({"format": "uri"}, "http://example.com/a b"),
    ({"format": "uri"}, "//example.com"),
    ({"format": "uri"}, "https://example.com/ok"),
    ({"format": "date-time"}, "2026-03-01T10:00:00"),  # the engine's own: an offset is required
    ({"format": "date-time"}, "2026-03-01T10:00:00Z"),
    ({"format": "timezone"}, "Mars/Olympus"),
    ({"format": "timezone"}, "Europe/Berlin"),
    ({"format": "ipv4"}, "999.1.1.1"),  # not one of the quick formats: asked of jsonschema
    ({"format": "regex"}, "(unclosed"),
    ({"format": "regex"}, 5),  # a format judges strings only
    ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}, 1),
    (
        {
            "$ref": "#/$defs/p",
            "$defs": {"p": {"type": "object", "required": ["id"]}},
            "properties": {"id": {"minLength": 2}},
        },
        {"id": "x"},
    ),
]


def messages(errors: Any) -> list[tuple[list[Any], str]]:
    return sorted((list(e.absolute_path), e.message) for e in errors)


@pytest.mark.parametrize("schema, instance", CASES)
def test_the_same_errors_as_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    expected = messages(Draft202012Validator(schema, format_checker=format_checker()).iter_errors(instance))
    assert messages(Checker(schema).iter_errors(instance)) == expected


@pytest.mark.parametrize("schema, instance", [(s, i) for s, i in CASES if not _has_tuple(i)])
def test_a_plain_instance_is_judged_alike_unwalked(schema: dict[str, Any], instance: Any) -> None:
    # plain=True (an instance read from YAML: dicts, lists and scalars) only skips the tuple walk.
    checker = Checker(schema)
    assert checker.surely_valid(instance, plain=True) == checker.surely_valid(instance)
    assert messages(checker.iter_errors(instance, plain=True)) == messages(checker.iter_errors(instance))


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"pattern": "(unclosed"}}},
    {"type": "string", "pattern": 5},  # the metaschema's `format: regex` meets a number
    {"type": "object", "properties": {"a": {"pattern": "\\p{L}"}}},  # a Unicode class Python's re lacks
    {"type": "strin"},
    {"properties": {"a": {"$anchor": "1bad"}}},
    {"type": "object", "required": ["a", "a"]},
])
def test_schema_errors_as_jsonschema_reports_them(schema: dict[str, Any]) -> None:
    format_checker()
    with pytest.raises(SchemaError) as raised:
        Draft202012Validator.check_schema(schema)
    error = schema_error(schema)
    assert error is not None and (error.message, error.absolute_path) == (
        raised.value.message,
        raised.value.absolute_path,
    )


def test_a_valid_schema_has_no_error() -> None:
    assert (
        schema_error(
            {"type": "object", "properties": {"at": {"type": "string", "format": "date-time", "pattern": "^2"}}}
        )
        is None
    )
