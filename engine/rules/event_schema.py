"""Event schemas: validating event data, and reading which fields a schema promises."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .json_schema import Checker, most_specific, subschemas
from .linear_patterns import pattern_problem


def validator(schema: Mapping[str, Any]) -> Checker:
    return Checker(schema)


def json_path(parts: Any) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def errors(v: Checker, instance: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[str, str]]:
    """Every problem as (JSON path, message), most specific message for oneOf/anyOf."""
    found = []
    for error in v.iter_errors(instance):
        error = most_specific(error)
        found.append((json_path(prefix + tuple(error.absolute_path)), error.message))
    return sorted(found)


def pattern_problems(schema: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, message) for every pattern in `schema` the linear-time engine cannot run."""
    for node, path in subschemas(schema, at):
        problem = pattern_problem(node.get("pattern"))
        if problem:
            yield path + ("pattern",), problem
        named = node.get("patternProperties")
        for pattern in named if isinstance(named, Mapping) else ():
            problem = pattern_problem(pattern)
            if problem:
                yield path + ("patternProperties", pattern), problem


@dataclass(frozen=True)
class Field:
    """What a schema says about one path: its schema, and whether every step is required."""

    schema: Mapping[str, Any] | None
    required: bool
    missing: str | None = None  # the first step the schema does not declare


def _add_part(out: dict[str, Any], part: Mapping[str, Any]) -> None:
    """An allOf part: its properties and required added, its other keywords where `out` has none."""
    out["properties"] = {**out.get("properties", {}), **part.get("properties", {})}
    out["required"] = [*out.get("required", []), *part.get("required", [])]
    for key, value in part.items():
        out.setdefault(key, value)


def _add_own(out: dict[str, Any], schema: Mapping[str, Any]) -> None:
    """A schema's own keywords over what its $ref and allOf gave: properties and required added to."""
    for key, value in schema.items():
        if key == "properties":
            out["properties"] = {**out.get("properties", {}), **value}
        elif key == "required":
            out["required"] = [*out.get("required", []), *value]
        elif key not in ("$ref", "allOf"):
            out[key] = value


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
            _add_part(out, self.resolve(part, depth + 1))
        _add_own(out, schema)
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

    def same_kind(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        """Whether two object schemas may describe the same kind of thing, so that their ids can
        be equal: the same definition, two people (an id and an email), or the same fields."""
        if a.get("$ref") and a.get("$ref") == b.get("$ref"):
            return True
        props_a = set(self.resolve(a).get("properties", {}))
        props_b = set(self.resolve(b).get("properties", {}))
        return {"id", "email"} <= props_a & props_b or props_a == props_b
