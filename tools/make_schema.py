"""Writes the JSON Schemas of the rule files: engine/rules/schema.json (what the engine validates
with), its copy schema.json at the repository root (what editors find beside the rule files) and
engine/rules/templates_map.schema.json (templates_map/<env>.yaml).

The text of every key comes from the "Every key" section of docs/rules.md, one `#### \\`PATH\\``
heading per key: the whole entry becomes its `markdownDescription`, its first paragraph, as
plain text, its `description`. A key without an entry, or an entry naming no key, stops the
generation.

    python tools/make_schema.py            # write the files
    python tools/make_schema.py --check    # exit 1 when a committed file differs
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "rules.md"
OUTPUTS = ("engine/rules/schema.json", "schema.json")
TEMPLATES_MAP_OUTPUT = "engine/rules/templates_map.schema.json"
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"

# The messages of the patterns. The engine's own message for a value that does not fit a
# pattern quotes the pattern's `description`; editors show `patternErrorMessage`.
DUR = {"type": "string", "pattern": r"^(?:\d+[wdhms])+$",
       "description": "A duration: 30s, 30m, 24h, 3d, 1w, or combined (1h30m).",
       "patternErrorMessage": "Write a duration as a number and a unit: 30s, 30m, 24h, 3d, 1w, or combined (1h30m)."}
HHMM = {"type": "string", "pattern": r"^(?:[01]\d|2[0-3]):[0-5]\d$", "description": "A local time, HH:MM (quote it).",
        "patternErrorMessage": "Write a local time as \"HH:MM\" on a 24-hour clock, quoted: \"09:00\", \"21:30\"."}
CRON = {"type": "string", "minLength": 1, "pattern": r"^\s*(?:@[a-z]+|\S+(?:\s+\S+){4,5})\s*$",
        "description": "A cron expression: minute hour day-of-month month day-of-week, e.g. \"0 9 * * MON\".",
        "patternErrorMessage": "Write a cron expression as five fields, minute hour day-of-month month day-of-week, "
                               "quoted: \"0 9 * * MON\" is 09:00 every Monday."}
PATH = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*$",
        "description": "A dotted path into the event's data, e.g. booking.start_time.",
        "patternErrorMessage": "Write a dotted path into the event's data, without braces: booking.start_time."}
EXPR = {"type": "string", "minLength": 1, "maxLength": 2000, "description": "A bare Jinja2 expression (no braces)."}
TEMPLATE_STR = {"type": "string", "maxLength": 2000,
                "description": "A Jinja2 template; one {{ expression }} keeps its type."}
ID = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$",
      "patternErrorMessage": "Lower-case letters, digits and _, starting with a letter: client_welcome."}
EVENT_TYPE = {"type": "string", "pattern": r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$",
              "description": "An event type, e.g. booking.confirmed.",
              "patternErrorMessage": "An event type is dotted lower-case words: booking.confirmed."}
FIELD_NAME = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


NOTIFICATION_SNIPPET = {
    "label": "New notification",
    "markdownDescription": "A notification with the keys most need: trigger, audience, schedule, channels, "
                           "category, template, data and an example event.",
    "body": {"${1:notification_id}": {
        "description": "${2:What it is, in a few words}",
        "trigger": {"event": "${3:booking.confirmed}"},
        "audience": "${4:client}",
        "key": "${5:booking.id}",
        "schedule": {"after": "${6:1h}"},
        "channels": ["email"],
        "category": "${7:transactional}",
        "template": "${1:notification_id}",
        "requires": ["${8:field}"],
        "data": {"${8:field}": "{{ ${9:booking.id} }}"},
        "example": {"id": "evt_example_${1:notification_id}", "type": "${3:booking.confirmed}",
                    "occurred_at": "2026-03-01T10:00:00Z", "data": {}},
    }},
}


def rule_schema() -> dict[str, Any]:
    """The shape of notifications.yaml and the rule files, without the keys' texts."""
    return {
        "$schema": SCHEMA_URL,
        "$id": "https://notification-engine.dev/schema.json",
        "title": "Notification rules",
        "description": "notifications.yaml and the rule files it includes (rules/*.yaml). See docs/rules.md.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "version": {"const": 1},
            "app": ref("app"),
            "defaults": ref("defaults"),
            "categories": {"type": "object", "propertyNames": ID, "additionalProperties": ref("category")},
            "windows": {"type": "object", "propertyNames": ID, "additionalProperties": ref("window")},
            "rate_limits": ref("rate_limits"),
            "retention": ref("retention"),
            "include": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "definitions": {"type": "object",
                            "propertyNames": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*$"},
                            "additionalProperties": {"type": "object"}},
            "events": {"type": "object", "propertyNames": EVENT_TYPE, "additionalProperties": ref("event")},
            "notifications": {"type": "object", "propertyNames": ID, "additionalProperties": ref("notification"),
                              "defaultSnippets": [NOTIFICATION_SNIPPET]},
        },
        "$defs": {
            "duration": DUR, "local_time": HHMM, "cron": CRON, "path": PATH, "expression": EXPR,
            "template_string": TEMPLATE_STR,
            # Names declared elsewhere in the configuration: `engine schema` adds their enums.
            "event_type": EVENT_TYPE, "category_name": ID, "window_name": ID, "template_key": ID,
            "app": {"type": "object", "additionalProperties": False,
                    "required": ["name", "frontend_url", "support_email"], "properties": {
                "name": {"type": "string", "minLength": 1}, "frontend_url": {"type": "string", "format": "uri"},
                "support_email": {"type": "string", "format": "email"}}},
            "if_past": {"enum": ["skip", "send_now"]},
            "defaults": {"type": "object", "additionalProperties": False, "properties": {
                "quiet_hours": ref("window"),
                "timezone": {"type": "string", "minLength": 1}, "if_past": ref("if_past"),
                "channels": ref("channels"), "category": ref("category_name")}},
            "category": {"type": "object", "additionalProperties": False, "properties": {
                "opt_out": {"type": "boolean"}, "description": {"type": "string"}}},
            "window": {"type": "object", "additionalProperties": False, "required": ["from", "to"],
                       "properties": {"from": ref("local_time"), "to": ref("local_time")}},
            "rate_limit": {"type": "object", "additionalProperties": False, "required": ["limit", "window"],
                           "properties": {"limit": {"type": "integer", "minimum": 1}, "window": ref("duration")}},
            "rate_limits": {"type": "object", "additionalProperties": False,
                            "properties": {"per_recipient": ref("rate_limit")}},
            "retention": {"type": "object", "additionalProperties": False,
                          "properties": {"notifications": ref("duration"), "events": ref("duration")}},
            "event": {"type": "object", "additionalProperties": False, "required": ["schema"], "properties": {
                "description": {"type": "string"}, "schema": {"type": "object"}}},
            "channels": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {
                "enum": ["email", "sms", "push", "inbox", "direct_message", "banner", "webhook"]}},
            "match": {"type": "object", "additionalProperties": False, "required": ["event", "key"],
                      "properties": {"event": ref("event_type"), "key": ref("path")}},
            "schedule": {"type": "object", "additionalProperties": False, "properties": {
                "at": {"const": "once"}, "after": ref("duration"), "before": ref("duration"),
                "of": ref("path"), "cron": ref("cron"),
                "if_past": ref("if_past"),
                "window": {"oneOf": [ref("window_name"), ref("window")]},
                "outside_window": {"enum": ["defer", "skip"]}}},
            "template_choice": {"oneOf": [
                ref("template_key"),
                {"type": "object", "additionalProperties": False, "required": ["select", "cases"], "properties": {
                "select": ref("expression"),
                "cases": {"type": "object", "minProperties": 1, "additionalProperties": ref("template_key")},
                "default": ref("template_key")}},
                {"type": "object", "additionalProperties": False, "required": ["variants"], "properties": {
                    "variants": {"type": "object", "minProperties": 2, "propertyNames": ID, "additionalProperties": {
                        "type": "object", "additionalProperties": False, "required": ["key", "weight"],
                        "properties": {"key": ref("template_key"), "weight": {"type": "integer", "minimum": 0}}}}}}]},
            "throttle": {"type": "object", "additionalProperties": False, "required": ["window"], "properties": {
                "key": ref("template_string"), "window": ref("duration"), "limit": {"type": "integer", "minimum": 1}}},
            "digest": {"type": "object", "additionalProperties": False, "required": ["period", "send"], "properties": {
                "period": {"enum": ["day", "week", "month"]}, "send": ref("cron"),
                "totals": {"type": "object", "additionalProperties": False, "required": ["amount", "currency"],
                           "properties": {"amount": ref("path"), "currency": ref("path")}}}},
            "batch": {"type": "object", "additionalProperties": False, "required": ["key", "window"], "properties": {
                "key": ref("template_string"), "window": ref("duration"),
                "max_items": {"type": "integer", "minimum": 1, "maximum": 1000}}},
            "example": {"type": "object", "additionalProperties": False,
                        "required": ["type", "occurred_at", "data"], "properties": {
                "id": {"type": "string", "minLength": 1}, "type": ref("event_type"), "occurred_at": {"type": "string"},
                "data": {"type": "object"}}},
            "notification": {"type": "object", "additionalProperties": False,
                             "required": ["trigger", "audience", "category", "template"],
                             "properties": {
                                 "description": {"type": "string"},
                                 "enabled": {"type": "boolean"},
                                 "trigger": {"type": "object", "additionalProperties": False, "required": ["event"],
                                             "properties": {
                                                 "event": {"oneOf": [ref("event_type"), {
                                                     "type": "array", "minItems": 1, "uniqueItems": True,
                                                     "items": ref("event_type")}]},
                                                 "condition": ref("expression")}},
                                 "audience": ref("path"),
                                 "key": ref("path"),
                                 "schedule": ref("schedule"),
                                 "cancel_on": {"type": "array", "items": ref("match")},
                                 "reschedule_on": {"type": "array", "items": ref("match")},
                                 "channels": ref("channels"),
                                 "routing": {"enum": ["single", "all"]},
                                 "expires_after": ref("duration"),
                                 "category": ref("category_name"),
                                 "template": ref("template_choice"),
                                 "requires": {"type": "array", "uniqueItems": True, "items": FIELD_NAME},
                                 "data": {"type": "object", "propertyNames": {"pattern": FIELD_NAME["pattern"]},
                                          "additionalProperties": {"anyOf": [
                                              ref("template_string"), {"type": ["number", "boolean", "null"]}]}},
                                 "idempotency_key": ref("template_string"),
                                 "throttle": ref("throttle"),
                                 "digest": ref("digest"),
                                 "batch": ref("batch"),
                                 "example": ref("example"),
                             }},
            "templates_map": {"type": "object", "propertyNames": ref("template_key"),
                              "additionalProperties": {"type": "string", "minLength": 1}},
        },
    }


# -- the keys' texts, from docs/rules.md -----------------------------------------------------------

_ENTRY = re.compile(r"^#### `([^`]+)`\n(.*?)(?=^#{1,4} |\Z)", re.M | re.S)
_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")


def key_texts(markdown: str) -> dict[str, str]:
    """PATH -> the markdown of its entry, from the "Every key" section."""
    section = markdown.split("\n## Every key\n", 1)
    if len(section) != 2:
        raise SystemExit(f"{DOCS}: no '## Every key' section")
    body = section[1].split("\n## ", 1)[0]
    return {path: text.strip() for path, text in _ENTRY.findall(body)}


def plain(markdown: str) -> str:
    """The first paragraph, without markdown: what editors that show no markdown show."""
    first = markdown.split("\n\n", 1)[0]
    return " ".join(_LINK.sub(r"\1", first).replace("`", "").replace("**", "").split())


def _resolved(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _step(schema: dict[str, Any], node: dict[str, Any], segment: str) -> dict[str, Any] | None:
    """The schema of `segment` inside `node`, looking into each alternative of a oneOf/anyOf."""
    node = _resolved(schema, node)
    for candidate in (node, *(_resolved(schema, n) for n in node.get("oneOf", []) + node.get("anyOf", []))):
        if segment == "[]" and isinstance(candidate.get("items"), dict):
            return candidate["items"]
        if segment.startswith("<") and isinstance(candidate.get("additionalProperties"), dict):
            return candidate["additionalProperties"]
        if segment in candidate.get("properties", {}):
            return candidate["properties"][segment]
    return None


def node_at(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    segments = re.findall(r"<[^>]+>|\[\]|[^.<\[]+", path)
    node: dict[str, Any] | None = schema
    if segments[0] == "templates_map":
        node, segments = schema["$defs"]["templates_map"], segments[1:]
    for segment in segments:
        node = _step(schema, node, segment) if node is not None else None
    return node


def with_texts(schema: dict[str, Any], texts: dict[str, str]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)  # every node its own: a text set on one is set on it alone
    unknown = []
    for path, text in texts.items():
        node = node_at(schema, path)
        if node is None:
            unknown.append(path)
            continue
        node["description"], node["markdownDescription"] = plain(text), text
    missing = _undescribed(schema)
    if unknown or missing:
        raise SystemExit(f"{DOCS}, section 'Every key':\n"
                         + "".join(f"  entry for no key: {p}\n" for p in unknown)
                         + "".join(f"  key without an entry: {p}\n" for p in missing))
    return schema


def _undescribed(node: Any, where: str = "") -> list[str]:
    """Every key (a member of some `properties`) without both texts."""
    found: list[str] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            if not ("description" in sub and "markdownDescription" in sub):
                found.append(f"{where}/properties/{name}")
        for key, sub in node.items():
            found += _undescribed(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            found += _undescribed(sub, f"{where}/{i}")
    return found


def templates_map_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of one templates_map/<env>.yaml, standing alone (the same shape the engine
    checks those files with: schema.json's $defs/templates_map)."""
    entry = schema["$defs"]["templates_map"]
    return {"$schema": SCHEMA_URL, "$id": "https://notification-engine.dev/templates_map.schema.json",
            "title": "Template map", **entry,
            "$defs": {"template_key": schema["$defs"]["template_key"]}}


def generated() -> dict[str, str]:
    """File (relative to the repository) -> its text."""
    schema = with_texts(rule_schema(), key_texts(DOCS.read_text(encoding="utf-8")))
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    files = dict.fromkeys(OUTPUTS, text)
    files[TEMPLATES_MAP_OUTPUT] = json.dumps(templates_map_schema(schema), indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str]) -> int:
    files = generated()
    if "--check" in argv:
        stale = [name for name, text in files.items()
                 if not (ROOT / name).is_file() or (ROOT / name).is_symlink()
                 or (ROOT / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{name} is not what docs/rules.md and tools/make_schema.py make: run `python tools/make_schema.py`")
        return 1 if stale else 0
    for name, text in files.items():
        target = ROOT / name
        if target.is_symlink():
            target.unlink()
        target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
