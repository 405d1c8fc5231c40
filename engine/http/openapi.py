"""An OpenAPI 3.1 document for the hook, generated from the loaded event schemas."""

from __future__ import annotations

from typing import Any

from ..core.events import MAX_ID, MAX_INTEGER, TypeLimits, type_limits
from ..rules.json_schema import with_subschemas
from ..rules.model import Config

# What `engine.core.events.parse_event` refuses beyond the event schemas, said in JSON Schema.
TEXT = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$"  # tab, LF and CR are the only control characters
# An id or an address holds none; `(?![\s\S])` ends the string in every regex dialect (`$` also
# matches before a final line feed in Python's).
ID = "^[^\\u0000-\\u001f\\u007f]*(?![\\s\\S])"
LIMITS = (f"Beyond its type's schema, an event is refused (422, with the JSON path) when a string holds a control "
          f"character other than tab, line feed and carriage return; when an id or an address (the event id, a "
          f"recipient's id, email and phone, a rule's key) holds any control character; when an integer lies outside "
          f"±{MAX_INTEGER} (2**53 - 1); when the event id or a recipient's id is longer than {MAX_ID} characters, a "
          f"rule's key longer than 300, or a rule's idempotency or throttle key would render longer than 500.")

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
CHECK = {"type": "object", "required": ["ok", "detail"], "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}
READINESS = {"type": "object", "required": ["ready", "failing", "checks"], "properties": {
    "ready": {"type": "boolean"},
    "failing": {"type": "array", "items": {"enum": ["store", "schema", "queue", "files"]}},
    "checks": {"type": "object", "properties": {name: CHECK for name in ("store", "schema", "queue", "files")}}}}
READYZ = ("Readiness: the store answers a trivial query, its schema is at the migrations' head (looked at once a "
          "minute), the queue answers (Redis PING, or the SQLite queue file opens), and on SQLite the database and "
          "queue files are the ones the process opened (not removed or replaced). Each check has 2 seconds.")

PROBLEMS = {"type": "object", "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {
    "type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}}}}


def openapi(config: Config) -> dict[str, Any]:
    envelopes = []
    defs: dict[str, Any] = {name: _bounded(fragment) for name, fragment in config.definitions.items()}
    for name in sorted(config.events):
        schema = _bounded(dict(config.events[name].schema))
        ref = "event_" + name.replace(".", "_")
        defs[ref] = {
            "type": "object", "additionalProperties": False, "required": ["id", "type", "occurred_at", "data"],
            "description": config.events[name].description,
            "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": ID},
                "type": {"const": name},
                "occurred_at": {"type": "string", "format": "date-time"},
                "data": {"allOf": [schema, _id_limits(type_limits(config, name))]},
            },
        }
        envelopes.append({"$ref": f"#/components/schemas/{ref}"})
    text = _rewrite_refs(defs)
    event = {"oneOf": envelopes}
    body = {"oneOf": [event, {"type": "object", "required": ["events"], "additionalProperties": False,
                              "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000, "items": event}}}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{config.app.name} notification engine", "version": "1", "description": LIMITS},
        "components": {"schemas": text, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                                            "signature": {"type": "apiKey", "in": "header", "name": "X-Engine-Signature"}}},
        "security": [{"bearer": []}, {"signature": []}],
        "paths": {
            "/events": {"post": {
                "summary": "Ingest one event or a batch",
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {
                    "202": {"description": "Accepted and stored", "content": {"application/json": {"schema": {"type": "object", "properties": {
                        "accepted": {"type": "array", "items": {"type": "string"}},
                        "duplicates": {"type": "array", "items": {"type": "string"}}}}}}},
                    "400": {"description": "Not JSON, or nested more than 200 levels deep"}, "401": {"description": "No valid credentials"},
                    "413": {"description": "Body too large"},
                    "422": {"description": "An event fails its schema or a limit (see the description above)",
                            "content": {"application/json": {"schema": PROBLEMS}}},
                    "503": {"description": "The store is unavailable or the hook is shutting down; nothing was accepted",
                            "headers": RETRY_AFTER},
                }}},
            "/webhooks/courier": {"post": {"summary": "Courier delivery-status webhooks", "security": [],
                                           "responses": {"200": {"description": "Recorded"}, "401": {"description": "Bad signature"}}}},
            "/healthz": {"get": {"summary": "Liveness: answers while the process runs, reads nothing", "security": [],
                                 "responses": {"200": {"description": "Alive"}}}},
            "/readyz": {"get": {"summary": "Readiness", "description": READYZ, "security": [], "responses": {
                "200": {"description": "Ready: every check passed", "content": {"application/json": {"schema": READINESS}}},
                "503": {"description": "Not ready: `failing` names each failing check", "headers": RETRY_AFTER,
                        "content": {"application/json": {"schema": READINESS}}}}}},
        },
    }


# The JSON Schema keywords whose values are schemas, lists of schemas, or maps of names to schemas.
def _bounded(schema: Any) -> Any:
    """A schema whose integers lie within ±MAX_INTEGER and whose strings hold no control
    character but tab, line feed and carriage return (a string with a pattern of its own gets
    this one beside it)."""
    if not isinstance(schema, dict):
        return schema
    out = with_subschemas(schema, _bounded)
    kind = out.get("type")
    types: list[Any] = kind if isinstance(kind, list) else [kind]
    if "integer" in types:
        out["minimum"] = max(out.get("minimum", -MAX_INTEGER), -MAX_INTEGER)
        out["maximum"] = min(out.get("maximum", MAX_INTEGER), MAX_INTEGER)
    if "string" in types:
        if "pattern" in out:
            out = {"allOf": [out, {"pattern": TEXT}]}
        else:
            out["pattern"] = TEXT
    return out


def _id_limits(limits: TypeLimits) -> dict[str, Any]:
    """The ids and keys of one event type: each path's length and characters."""
    root: dict[str, Any] = {}
    for field in limits.ids:
        node = root
        for step in field.path:
            node = node.setdefault("properties", {}).setdefault(step, {})
        node["pattern"] = ID
        if field.limit is not None:
            node["maxLength"] = field.limit
    return root


def _rewrite_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str) else _rewrite_refs(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(v) for v in value]
    return value
