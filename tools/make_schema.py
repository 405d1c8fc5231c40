import json
DUR = {"type": "string", "pattern": r"^(?:\d+[wdhms])+$", "description": "A duration: 30s, 30m, 24h, 3d, 1w, or combined (1h30m)."}
HHMM = {"type": "string", "pattern": r"^(?:[01]\d|2[0-3]):[0-5]\d$", "description": "A local time, HH:MM (quote it)."}
PATH = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$", "description": "A dotted path into the event's data, e.g. booking.start_time."}
EXPR = {"type": "string", "minLength": 1, "maxLength": 2000, "description": "A bare Jinja2 expression (no braces)."}
TEMPLATE_STR = {"type": "string", "maxLength": 2000, "description": "A Jinja2 template; one {{ expression }} keeps its type."}
ID = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"}
EVENT_TYPE = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$", "description": "An event type, e.g. booking.confirmed."}
schema = {
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://notification-engine.dev/schema.json",
  "title": "Notification rules",
  "description": "notifications.yaml and the rule files it includes (rules/*.yaml). See docs/rules.md.",
  "type": "object",
  "additionalProperties": False,
  "properties": {
    "version": {"const": 1, "description": "The rule language version."},
    "app": {"$ref": "#/$defs/app"},
    "defaults": {"$ref": "#/$defs/defaults"},
    "categories": {"type": "object", "propertyNames": ID, "additionalProperties": {"$ref": "#/$defs/category"}},
    "windows": {"type": "object", "propertyNames": ID, "additionalProperties": {"$ref": "#/$defs/window"}},
    "rate_limits": {"$ref": "#/$defs/rate_limits"},
    "retention": {"$ref": "#/$defs/retention"},
    "include": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Globs of rule files, relative to this file."},
    "definitions": {"type": "object", "propertyNames": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$"}, "additionalProperties": {"type": "object"}, "description": "JSON Schema fragments shared by event schemas: {$ref: '#/$defs/NAME'}."},
    "events": {"type": "object", "propertyNames": EVENT_TYPE, "additionalProperties": {"$ref": "#/$defs/event"}},
    "notifications": {"type": "object", "propertyNames": ID, "additionalProperties": {"$ref": "#/$defs/notification"}},
  },
  "$defs": {
    "duration": DUR, "local_time": HHMM, "path": PATH, "expression": EXPR, "template_string": TEMPLATE_STR,
    "app": {"type": "object", "additionalProperties": False, "required": ["name", "frontend_url", "support_email"], "properties": {
        "name": {"type": "string", "minLength": 1}, "frontend_url": {"type": "string", "format": "uri"}, "support_email": {"type": "string", "format": "email"}}},
    "if_past": {"enum": ["skip", "send_now"]},
    "defaults": {"type": "object", "additionalProperties": False, "properties": {
        "quiet_hours": {"$ref": "#/$defs/window", "description": "In the recipient's zone: sends of categories users can switch off, without a window of their own, wait until it ends."},
        "timezone": {"type": "string", "minLength": 1}, "if_past": {"$ref": "#/$defs/if_past"},
        "channels": {"$ref": "#/$defs/channels"}, "category": ID}},
    "category": {"type": "object", "additionalProperties": False, "properties": {
        "opt_out": {"type": "boolean", "description": "false: users cannot switch these off (transactional)."},
        "description": {"type": "string"}}},
    "window": {"type": "object", "additionalProperties": False, "required": ["from", "to"], "properties": {"from": {"$ref": "#/$defs/local_time"}, "to": {"$ref": "#/$defs/local_time"}}},
    "rate_limit": {"type": "object", "additionalProperties": False, "required": ["limit", "window"], "properties": {"limit": {"type": "integer", "minimum": 1}, "window": {"$ref": "#/$defs/duration"}}},
    "rate_limits": {"type": "object", "additionalProperties": False, "properties": {"per_recipient": {"$ref": "#/$defs/rate_limit"}}},
    "retention": {"type": "object", "additionalProperties": False, "properties": {"notifications": {"$ref": "#/$defs/duration"}, "events": {"$ref": "#/$defs/duration"}}},
    "event": {"type": "object", "additionalProperties": False, "required": ["schema"], "properties": {
        "description": {"type": "string"}, "schema": {"type": "object", "description": "JSON Schema (2020-12) of the event's data."}}},
    "channels": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["email", "sms", "push", "inbox", "chat"]}},
    "match": {"type": "object", "additionalProperties": False, "required": ["event", "key"], "properties": {"event": EVENT_TYPE, "key": {"$ref": "#/$defs/path"}}},
    "schedule": {"type": "object", "additionalProperties": False, "properties": {
        "at": {"const": "once"}, "after": {"$ref": "#/$defs/duration"}, "before": {"$ref": "#/$defs/duration"},
        "of": {"$ref": "#/$defs/path"}, "cron": {"type": "string", "minLength": 1},
        "if_past": {"$ref": "#/$defs/if_past"},
        "window": {"oneOf": [ID, {"$ref": "#/$defs/window"}]},
        "outside_window": {"enum": ["defer", "skip"]}}},
    "template_choice": {"oneOf": [ID, {"type": "object", "additionalProperties": False, "required": ["select", "cases"], "properties": {
        "select": {"$ref": "#/$defs/expression"},
        "cases": {"type": "object", "minProperties": 1, "additionalProperties": ID},
        "default": ID}},
      {"type": "object", "additionalProperties": False, "required": ["variants"], "description": "A/B variants: each recipient always gets the same one.", "properties": {
        "variants": {"type": "object", "minProperties": 2, "propertyNames": ID, "additionalProperties": {
            "type": "object", "additionalProperties": False, "required": ["key", "weight"],
            "properties": {"key": ID, "weight": {"type": "integer", "minimum": 0}}}}}}]},
    "throttle": {"type": "object", "additionalProperties": False, "required": ["window"], "properties": {
        "key": {"$ref": "#/$defs/template_string"}, "window": {"$ref": "#/$defs/duration"}, "limit": {"type": "integer", "minimum": 1}}},
    "digest": {"type": "object", "additionalProperties": False, "required": ["period", "send"], "properties": {
        "period": {"enum": ["day", "week", "month"]}, "send": {"type": "string", "minLength": 1, "description": "A cron expression in the recipient's zone."}}},
    "example": {"type": "object", "additionalProperties": False, "required": ["type", "occurred_at", "data"], "properties": {
        "id": {"type": "string", "minLength": 1}, "type": EVENT_TYPE, "occurred_at": {"type": "string"}, "data": {"type": "object"}}},
    "notification": {"type": "object", "additionalProperties": False,
      "required": ["trigger", "audience", "category", "template"],
      "properties": {
        "description": {"type": "string"},
        "enabled": {"type": "boolean"},
        "trigger": {"type": "object", "additionalProperties": False, "required": ["event"], "properties": {"event": {"oneOf": [EVENT_TYPE, {"type": "array", "minItems": 1, "uniqueItems": True, "items": EVENT_TYPE}], "description": "The event type (or a list of them) that triggers it."}, "condition": {"$ref": "#/$defs/expression"}}},
        "audience": {"$ref": "#/$defs/path"},
        "key": {"$ref": "#/$defs/path"},
        "schedule": {"$ref": "#/$defs/schedule"},
        "cancel_on": {"type": "array", "items": {"$ref": "#/$defs/match"}},
        "reschedule_on": {"type": "array", "items": {"$ref": "#/$defs/match"}},
        "channels": {"$ref": "#/$defs/channels"},
        "category": ID,
        "template": {"$ref": "#/$defs/template_choice"},
        "requires": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}},
        "data": {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}, "additionalProperties": {"anyOf": [{"$ref": "#/$defs/template_string"}, {"type": ["number", "boolean", "null"]}]}},
        "idempotency_key": {"$ref": "#/$defs/template_string"},
        "throttle": {"$ref": "#/$defs/throttle"},
        "digest": {"$ref": "#/$defs/digest"},
        "example": {"$ref": "#/$defs/example"},
      }},
    "templates_map": {"type": "object", "description": "templates_map/<env>.yaml: template key -> Courier template id.", "propertyNames": ID, "additionalProperties": {"type": "string", "minLength": 1}},
  },
}
json.dump(schema, open("engine/rules/schema.json", "w"), indent=2)
open("engine/rules/schema.json", "a").write("\n")
