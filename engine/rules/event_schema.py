"""Event schemas: validating event data, and reading which fields a schema promises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .timeparse import is_instant, is_zone

FORMAT_CHECKER = Draft202012Validator.FORMAT_CHECKER


@FORMAT_CHECKER.checks("timezone")
def _timezone(value: object) -> bool:
    return not isinstance(value, str) or is_zone(value)


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # Stricter than RFC 3339's validator on purpose: an offset is required and checked.
    return not isinstance(value, str) or is_instant(value)


def validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=FORMAT_CHECKER)


def json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def errors(v: Draft202012Validator, instance: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    """Every problem as (JSON path, message), most specific message for oneOf/anyOf."""
    found = []
    for error in v.iter_errors(instance):
        if error.context:
            error = best_match(error.context) or error
        found.append((json_path(prefix + tuple(error.absolute_path)), error.message))
    return sorted(found)


@dataclass(frozen=True)
class Field:
    """What a schema says about one path: its schema, and whether every step is required."""

    schema: Mapping[str, Any] | None
    required: bool
    missing: str | None = None  # the first step the schema does not declare


class SchemaView:
    """Reads event schemas with `$ref: '#/$defs/NAME'` and `allOf` resolved."""

    def __init__(self, definitions: Mapping[str, Any]):
        self.definitions = definitions

    def resolve(self, schema: Mapping[str, Any] | None, depth: int = 0) -> dict[str, Any]:
        if not isinstance(schema, Mapping) or depth > 20:
            return {}
        out: dict[str, Any] = {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out.update(self.resolve(self.definitions.get(ref[len("#/$defs/"):]), depth + 1))
        for part in schema.get("allOf", []) or []:
            resolved = self.resolve(part, depth + 1)
            out["properties"] = {**out.get("properties", {}), **resolved.get("properties", {})}
            out["required"] = [*out.get("required", []), *resolved.get("required", [])]
            for key, value in resolved.items():
                out.setdefault(key, value)
        for key, value in schema.items():
            if key == "properties":
                out["properties"] = {**out.get("properties", {}), **value}
            elif key == "required":
                out["required"] = [*out.get("required", []), *value]
            elif key not in ("$ref", "allOf"):
                out[key] = value
        return out

    def field(self, schema: Mapping[str, Any], path: tuple[str, ...]) -> Field:
        node: Mapping[str, Any] | None = self.resolve(schema)
        required = True
        for step in path:
            props = (node or {}).get("properties", {})
            if step not in props:
                return Field(None, False, step)
            required = required and step in (node or {}).get("required", [])
            node = self.resolve(props[step])
        return Field(node, required)

    def item_schema(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.resolve(self.resolve(schema).get("items", {}))
