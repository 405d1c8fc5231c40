"""An OpenAPI 3.1 document for the hook, generated from the loaded event schemas."""

from __future__ import annotations

from typing import Any

from ..rules.model import Config

PROBLEMS = {"type": "object", "properties": {"error": {"type": "string"}, "problems": {"type": "array", "items": {
    "type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}}}}


def openapi(config: Config) -> dict[str, Any]:
    envelopes = []
    defs: dict[str, Any] = {name: fragment for name, fragment in config.definitions.items()}
    for name in sorted(config.events):
        schema = dict(config.events[name].schema)
        ref = "event_" + name.replace(".", "_")
        defs[ref] = {
            "type": "object", "additionalProperties": False, "required": ["id", "type", "occurred_at", "data"],
            "description": config.events[name].description,
            "properties": {
                "id": {"type": "string", "minLength": 1, "maxLength": 200},
                "type": {"const": name},
                "occurred_at": {"type": "string", "format": "date-time"},
                "data": schema,
            },
        }
        envelopes.append({"$ref": f"#/components/schemas/{ref}"})
    text = _rewrite_refs(defs)
    event = {"oneOf": envelopes}
    body = {"oneOf": [event, {"type": "object", "required": ["events"], "additionalProperties": False,
                              "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 1000, "items": event}}}]}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{config.app.name} notification engine", "version": "1"},
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
                    "422": {"description": "An event fails its schema", "content": {"application/json": {"schema": PROBLEMS}}},
                }}},
            "/webhooks/courier": {"post": {"summary": "Courier delivery-status webhooks", "security": [],
                                           "responses": {"200": {"description": "Recorded"}, "401": {"description": "Bad signature"}}}},
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "Alive"}}}},
        },
    }


def _rewrite_refs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str) else _rewrite_refs(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(v) for v in value]
    return value
