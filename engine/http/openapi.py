"""The hook's OpenAPI 3.1 document: every route, every answer with its schema, and one schema per
event type generated from the loaded rules (`BookingConfirmed`, its data `BookingConfirmedData`,
its CloudEvent `BookingConfirmedCloudEvent`), told apart by `type`."""

from __future__ import annotations

import re
from typing import Any

from ..core.events import MAX_ID, MAX_INTEGER, TypeLimits, type_limits
from ..rules.json_schema import with_subschemas
from ..rules.model import Config
from . import formats

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
INGEST = ("One event in the engine's envelope or `{\"events\": [...]}` (application/json), one CloudEvent "
          "(application/cloudevents+json) or a JSON array of them (application/cloudevents-batch+json); at most "
          f"{formats.MAX_BATCH} events, all accepted or none. A copy of an accepted signed request (the same "
          "X-Engine-Signature, or the same webhook-id, and body) gets the first answer again, with "
          "`Idempotent-Replayed: true`, and stores nothing.")
READYZ = ("Readiness: the store answers a trivial query, its schema is at the migrations' head (looked at once a "
          "minute), the queue answers (Redis PING, or the SQLite queue file opens), and on SQLite the database and "
          "queue files are the ones the process opened (not removed or replaced). Each check has 2 seconds.")

RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                               "schema": {"type": "integer", "minimum": 1}}}
CHECKS = ("store", "schema", "queue", "files")
EVENT_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": ID,
            "description": "The event's id: a repeated id is a duplicate, stored once"}
# A CloudEvent's attributes but its type and data, which name the event type.
CLOUDEVENT_ATTRIBUTES = {
    "specversion": {"type": "string", "const": formats.SPECVERSION},
    "id": EVENT_ID,
    "source": {"type": "string", "minLength": 1},
    "time": {"type": "string", "format": "date-time", "description": "when it occurred (required here)"},
    "subject": {"type": "string"}, "dataschema": {"type": "string"},
    "datacontenttype": {"type": "string", "enum": ["application/json"]},
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def schema_name(event_type: str) -> str:
    """`booking.confirmed` -> `BookingConfirmed`; `practitioner.profile_completed` -> `PractitionerProfileCompleted`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", event_type) if part)


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


ERRORS = {400: "The request is malformed (the body is not JSON, or a parameter is wrong)",
          401: "No valid credentials", 404: "Not found, or not enabled",
          413: "The body is too large, or a batch holds too many events",
          422: "Refused: each problem with its JSON path",
          503: "Unavailable; nothing was done: try again after Retry-After"}


def _errors(*codes: int, **described: str) -> dict[str, Any]:
    """The error answers of an operation, each with its schema; `e422="..."` words one."""
    return {str(code): _error(code, described.get(f"e{code}", ERRORS[code])) for code in codes}


def _error(code: int, text: str) -> dict[str, Any]:
    schema = ref("Problems") if code == 422 else ref("Error")
    return _json(schema, text, RETRY_AFTER if code == 503 else None)


NOTIFICATION = {"type": "object", "required": ["notification", "recipient_id", "status", "send_at"], "properties": {
    "id": {"type": ["integer", "null"]}, "notification": {"type": "string"}, "recipient_id": {"type": "string"},
    "event_id": {"type": ["string", "null"]}, "key": {"type": ["string", "null"]}, "category": {"type": "string"},
    "channels": {"type": "array", "items": {"type": "string"}}, "template_key": {"type": ["string", "null"]},
    "template": {"type": ["string", "null"]}, "variant": {"type": ["string", "null"]},
    "idempotency_key": {"type": ["string", "null"]}, "send_at": {"type": "string", "format": "date-time"},
    "status": {"type": "string"}, "reason": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
    "sent_at": {"type": ["string", "null"], "format": "date-time"}, "request_id": {"type": ["string", "null"]},
    "delivery_status": {"type": ["string", "null"]}, "last_error": {"type": ["string", "null"]},
    "created_at": {"type": "string", "format": "date-time"}}}
UPCOMING = {"allOf": [ref("Notification"), {"type": "object", "properties": {
    "will_skip": {"type": ["string", "null"],
                  "description": "why it will be skipped when due (paused, removed, ...)"},
    "digest_items": {"type": ["integer", "null"], "description": "items a digest still collecting holds"},
    "data": {"type": ["object", "null"], "description": "the template data it will be sent with"},
    "message": {"type": ["object", "null"], "description": (
        "the Courier message as scheduled, `{\"message\": {to, template, data, routing}}`; when it goes out the "
        "template id, channels and routing in force replace these, and metadata and expiry are added"),
        "properties": {"message": {"type": "object", "required": ["to", "template", "data", "routing"]}}}}}]}
CHECK = {"type": "object", "required": ["ok", "detail"],
         "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}}}
# The schemas of the answers, the same for every configuration.
COMMON_SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Problem": {"type": "object", "required": ["path", "message"], "properties": {
        "path": {"type": "string",
                 "description": "JSON path in the body sent (`$.data.booking.start_time`, `$[2].type`)"},
        "message": {"type": "string"}}},
    "Problems": {"type": "object", "required": ["error"], "properties": {
        "error": {"type": "string"}, "problems": {"type": "array", "items": ref("Problem")}}},
    "IngestAnswer": {"type": "object", "required": ["accepted", "duplicates", "scheduled", "cancelled"],
                     "properties": {
        "accepted": {"type": "array", "items": {"type": "string"}, "description": "ids of the events stored now"},
        "duplicates": {"type": "array", "items": {"type": "string"}, "description": "ids of events stored before"},
        "scheduled": {"type": "integer", "description": "sends planned (or re-planned) by these events"},
        "cancelled": {"type": "integer", "description": "pending sends these events cancelled"}}},
    "Notification": NOTIFICATION,
    "UpcomingNotification": UPCOMING,
    "Notifications": {"type": "object", "required": ["notifications"], "properties": {
        "notifications": {"type": "array", "items": ref("Notification")}}},
    "Upcoming": {"type": "object", "required": ["upcoming"], "properties": {
        "upcoming": {"type": "array", "items": ref("UpcomingNotification")}}},
    "Preferences": {"type": "object", "required": ["recipient", "preferences"], "properties": {
        "recipient": {"type": "string"},
        "preferences": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
    "PreferencesChange": {"type": "object", "required": ["preferences"], "properties": {
        "preferences": {"type": "object", "additionalProperties": {"type": ["boolean", "null"]},
                        "description": "notification id, category, or `notification:channel` -> true, false, "
                                       "or null to clear"}}},
    "Unsubscribed": {"type": "object", "required": ["unsubscribed", "recipient"], "properties": {
        "unsubscribed": {"type": "string"}, "recipient": {"type": "string"}}},
    "CourierWebhook": {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string", "description": "`message:updated` is read; other types are ignored"},
        "data": {"type": "object", "properties": {"id": {"type": "string"}, "status": {"type": "string"}}}}},
    "WebhookAnswer": {"type": "object", "properties": {
        "result": {"type": "string", "enum": ["applied", "duplicate", "stale", "pending"]},
        "ignored": {"type": "boolean"}, "status": {"type": "string"}, "detail": {"type": "string"}}},
    "Health": {"type": "object", "required": ["ok"], "properties": {
        "ok": {"type": "boolean"}, "env": {"type": "string"}, "delivery": {"type": "string"}}},
    "Readiness": {"type": "object", "required": ["ready", "failing", "checks"], "properties": {
        "ready": {"type": "boolean"},
        "failing": {"type": "array", "items": {"type": "string", "enum": list(CHECKS)}},
        "checks": {"type": "object", "properties": dict.fromkeys(CHECKS, CHECK)}}},
}


def _event_schemas(config: Config) -> tuple[dict[str, Any], dict[str, str]]:
    """(a schema per event type, its data and its CloudEvent, by name; event type -> schema name)."""
    names = _schema_names(config)
    schemas: dict[str, Any] = {}
    for event_type, name in names.items():
        schemas.update(_schemas_of(config, event_type, name))
    return schemas, names


def _schema_names(config: Config) -> dict[str, str]:
    """Event type -> schema name, made unique beside the rules' own definitions."""
    names: dict[str, str] = {}
    for event_type in sorted(config.events):
        name = schema_name(event_type)
        if name in config.definitions or name in names.values():
            name += "Event"
        names[event_type] = name
    return names


def _schemas_of(config: Config, event_type: str, name: str) -> dict[str, Any]:
    """One event type's data, its event in the engine's envelope, and its CloudEvent."""
    declared = config.events[event_type]
    data = {"allOf": [_bounded(dict(declared.schema)), _id_limits(type_limits(config, event_type))],
            "description": f"The data of a {event_type} event"}
    return {f"{name}Data": data, name: _envelope(name, event_type, declared.description or event_type),
            f"{name}CloudEvent": _cloudevent(name, event_type)}


def _envelope(name: str, event_type: str, description: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["id", "type", "occurred_at", "data"],
            "description": description,
            "properties": {"id": EVENT_ID, "type": {"type": "string", "const": event_type},
                           "occurred_at": {"type": "string", "format": "date-time"}, "data": ref(f"{name}Data")}}


def _cloudevent(name: str, event_type: str) -> dict[str, Any]:
    return {"type": "object", "required": ["specversion", "id", "type", "source", "time", "data"],
            "description": f"{event_type} as a CloudEvent 1.0 (structured JSON); extension attributes are accepted "
                           "and not stored",
            "propertyNames": {"pattern": "^[a-z0-9]{1,20}$"},
            "properties": {**CLOUDEVENT_ATTRIBUTES, "type": {"type": "string", "const": event_type},
                           "data": ref(f"{name}Data")},
            "additionalProperties": {"type": ["string", "number", "boolean"]}}


def _one_of(names: dict[str, str], suffix: str = "") -> dict[str, Any]:
    return {"oneOf": [ref(n + suffix) for n in names.values()],
            "discriminator": {"propertyName": "type",
                              "mapping": {t: f"#/components/schemas/{n}{suffix}" for t, n in names.items()}}}


def openapi(config: Config, server_url: str = "/") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{config.app.name} notification engine", "version": "1", "description": LIMITS},
        "servers": [{"url": server_url, "description": "this engine (ENGINE_PUBLIC_URL)"}],
        "components": {"schemas": _schemas(config), "securitySchemes": SECURITY},
        "paths": PATHS,
    }


def _schemas(config: Config) -> dict[str, Any]:
    """The rules' definitions, each event type's schemas, the answers', and the unions of the event types."""
    events, names = _event_schemas(config)
    defined = {name: _bounded(fragment) for name, fragment in config.definitions.items()}
    return {**_rewrite_refs(defined), **_rewrite_refs(events), **COMMON_SCHEMAS,
            "Event": _one_of(names), "EventBatch": EVENT_BATCH, "CloudEvent": _one_of(names, "CloudEvent")}


EVENT_BATCH = {"type": "object", "required": ["events"], "additionalProperties": False, "properties": {
    "events": {"type": "array", "minItems": 1, "maxItems": formats.MAX_BATCH, "items": ref("Event")}}}


SECURITY = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer $ENGINE_INGEST_TOKEN`"},
    "engineSignature": {"type": "apiKey", "in": "header", "name": "X-Engine-Signature", "description": (
        "Not a static key: `t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">`, keyed with "
        "$ENGINE_INGEST_SECRET; t within 5 minutes of the engine's clock.")},
    "standardWebhooks": {"type": "apiKey", "in": "header", "name": "webhook-signature", "description": (
        "Standard Webhooks (https://www.standardwebhooks.com/), not a static key: with headers `webhook-id` and "
        "`webhook-timestamp` (unix seconds, within 5 minutes), `webhook-signature: v1,<base64 HMAC-SHA256 of "
        "\"<webhook-id>.<webhook-timestamp>.<raw body>\">` (several space-separated, any may match), keyed with "
        "the bytes a `whsec_<base64>` $ENGINE_INGEST_SECRET encodes (or the UTF-8 bytes of another secret).")},
    "courierSignature": {"type": "apiKey", "in": "header", "name": "courier-signature", "description": (
        "Courier's webhook signature, not a static key: `t=<epoch ms>,signature=<hex HMAC-SHA256 of "
        "\"<t>.<raw body>\">`, keyed with $COURIER_WEBHOOK_SECRET.")},
}
BATCH = {"type": "array", "minItems": 1, "maxItems": formats.MAX_BATCH, "items": ref("CloudEvent")}
ADMIN: list[dict[str, list[str]]] = [{"bearer": []}]
OPEN: list[dict[str, list[str]]] = []


# What the application and Courier post.
INTAKE_PATHS = {
    "/events": {"post": {
        "operationId": "postEvents", "summary": "Ingest one event or a batch", "description": INGEST,
        "security": [{"bearer": []}, {"engineSignature": []}, {"standardWebhooks": []}],
        # Shaped for openapi-python-client 0.29, whose code for a body with several media types
        # does not import when the body is required (issue 1451) and fails on every call when
        # one of them is an array: the body is said optional (a missing one is a 400, as the
        # description says) and the batch's array sits in an allOf, the same schema to a validator.
        "requestBody": {"required": False, "description": "Required: an empty body is a 400", "content": {
            "application/json": {"schema": {"oneOf": [ref("Event"), ref("EventBatch")]}},
            formats.CLOUDEVENT: {"schema": ref("CloudEvent")},
            formats.CLOUDEVENTS_BATCH: {"schema": {"title": "CloudEventBatch", "allOf": [BATCH]}}}},
        "responses": {
            "202": _json(ref("IngestAnswer"),
                         "Accepted and stored (or the first answer again, for a copy of a signed request)",
                         {"Idempotent-Replayed": {"description": "`true` when this is the first answer of a copy",
                                                  "schema": {"type": "string", "enum": ["true"]}}}),
            **_errors(400, 401, 413, 422, 503,
                      e401="No valid credentials, or a signature or webhook-id already used "
                           "for another request")}}},
    "/webhooks/courier": {"post": {
        "operationId": "postCourierWebhook", "summary": "Courier delivery-status webhooks",
        "security": [{"courierSignature": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref("CourierWebhook")}}},
        "responses": {"200": _json(ref("WebhookAnswer"), "Applied, a duplicate, stale, or ignored"),
                      "202": _json(ref("WebhookAnswer"), "Kept until its send is recorded (`pending`)"),
                      **_errors(400, 401, 413, 422, 503)}}},
}


# Unsubscribe links and preferences.
UNSUBSCRIBE_TOKEN = {"name": "token", "in": "query", "required": True, "schema": {"type": "string"},
         "description": "the signed token of an unsubscribe link"}
RECIPIENT_ID = {"name": "recipient_id", "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID}}
HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
PEOPLE_PATHS = {
    "/unsubscribe": {
        "get": {"operationId": "showUnsubscribe", "summary": "The page of an unsubscribe link", "security": OPEN,
                "parameters": [UNSUBSCRIBE_TOKEN], "responses": {
                    "200": {"description": "A page asking to confirm", **HTML},
                    "400": {"description": "The link is not valid or has expired", **HTML}, **_errors(404)}},
        "post": {"operationId": "unsubscribe", "summary": "One-click unsubscribe (RFC 8058)", "security": OPEN,
                 "parameters": [UNSUBSCRIBE_TOKEN],
                 "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {"schema": {
                     "type": "object",
                     "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}},
                 "responses": {"200": _json(ref("Unsubscribed"), "Turned off for that recipient"),
                               **_errors(400, 404, 503)}}},
    "/recipients/{recipient_id}/preferences": {
        "parameters": [RECIPIENT_ID],
        "get": {"operationId": "getPreferences", "summary": "A recipient's preferences", "security": ADMIN,
                "responses": {"200": _json(ref("Preferences"), "Their preferences"), **_errors(401, 422, 503)}},
        "put": {"operationId": "setPreferences", "summary": "Set or clear a recipient's preferences",
                "security": ADMIN,
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": ref("PreferencesChange")}}},
                "responses": {"200": _json(ref("Preferences"), "Their preferences now"),
                              **_errors(400, 401, 422, 503)}}},
}


# What an operator and a monitor read.
READ_PATHS = {
    "/notifications": {"get": {
        "operationId": "listNotifications", "summary": "Sends, newest first", "security": ADMIN,
        "parameters": [
            {"name": "status", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
             "style": "form", "explode": True},
            {"name": "recipient", "in": "query", "schema": {"type": "string"}},
            {"name": "notification", "in": "query", "schema": {"type": "string"}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
        "responses": {"200": _json(ref("Notifications"), "The sends"), **_errors(400, 401, 503)}}},
    "/notifications/upcoming": {"get": {
        "operationId": "listUpcoming",
        "summary": "What is due within a duration, as the rules in force would send it",
        "security": ADMIN,
        "parameters": [{"name": "within", "in": "query", "schema": {"type": "string", "default": "24h"},
                        "description": "a duration such as 30m, 24h, 7d"}],
        "responses": {"200": _json(ref("Upcoming"), "The sends and digests due"), **_errors(400, 401, 503)}}},
    "/healthz": {"get": {"operationId": "healthz",
                         "summary": "Liveness: answers while the process runs, reads nothing",
                         "security": OPEN, "responses": {"200": _json(ref("Health"), "Alive")}}},
    "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness", "description": READYZ, "security": OPEN,
                        "responses": {"200": _json(ref("Readiness"), "Ready: every check passed"),
                                      "503": _json(ref("Readiness"),
                                                   "Not ready: `failing` names each failing check", RETRY_AFTER)}}},
    "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "security": OPEN, "responses": {
        "200": {"description": "The text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": OPEN, "responses": {
        "200": _json({"type": "object"}, "The OpenAPI document")}}},
}


PATHS = {**INTAKE_PATHS, **PEOPLE_PATHS, **READ_PATHS}


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
        _bound_integers(out)
    return _bound_strings(out) if "string" in types else out


def _bound_integers(schema: dict[str, Any]) -> None:
    schema["minimum"] = max(schema.get("minimum", -MAX_INTEGER), -MAX_INTEGER)
    schema["maximum"] = min(schema.get("maximum", MAX_INTEGER), MAX_INTEGER)


def _bound_strings(schema: dict[str, Any]) -> dict[str, Any]:
    if "pattern" in schema:
        return {"allOf": [schema, {"pattern": TEXT}]}
    return {**schema, "pattern": TEXT}


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
        return {k: _rewrite_ref(v) if k == "$ref" and isinstance(v, str) else _rewrite_refs(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_refs(v) for v in value]
    return value


def _rewrite_ref(target: str) -> str:
    return target.replace("#/$defs/", "#/components/schemas/")
