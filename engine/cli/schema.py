"""`engine schema`: the JSON Schema of this project's rule files (or templates_map files) for
editors, with the names the configuration declares as enums, so an editor completes them and
flags a name that is not declared: events, categories, windows and template keys."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ..rules.loader import SCHEMA_PATH, load
from ..rules.model import Config
from ..rules.yaml_source import load_file
from .common import config_option, settings

TEMPLATES_MAP_SCHEMA_PATH = SCHEMA_PATH.with_name("templates_map.schema.json")


def _generic(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def _enum(definition: dict[str, Any], texts: Mapping[str, str]) -> dict[str, Any]:
    """`definition` limited to the names in `texts`, each with its text for the completion list."""
    names = sorted(texts)
    return {**definition, "enum": names, "markdownEnumDescriptions": [texts[n] for n in names],
            "enumDescriptions": [texts[n].replace("`", "") for n in names]}


def _template_users(config: Config) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for notification in config.notifications.values():
        keys = notification.template.keys()
        for key in keys:
            users.setdefault(key, []).append(notification.id)
    return users


def _template_texts(config: Config) -> dict[str, str]:
    users = _template_users(config)
    keys = set(users).union(*(set(m) for m in config.templates.values())) if config.templates else set(users)
    texts = {}
    for key in keys:
        ids = ", ".join(f"`{env}`: `{m[key]}`" for env, m in sorted(config.templates.items()) if key in m)
        used = ", ".join(f"`{n}`" for n in users.get(key, [])) or "no notification yet"
        texts[key] = f"Courier template {ids or '(not mapped)'}; used by {used}"
    return texts


def _root_data(config: Config) -> dict[str, Any]:
    """notifications.yaml as read: the model keeps no window names or category descriptions."""
    doc, _ = load_file(config.root, config.root)
    return doc.data if isinstance(doc.data, dict) else {}


def _category_texts(config: Config, root: Mapping[str, Any]) -> dict[str, str]:
    """Each category's description, or whether users may switch it off."""
    described = root.get("categories") or {}
    return {name: (described.get(name) or {}).get("description")
            or ("transactional: users cannot switch it off" if not category.opt_out else "users may switch it off")
            for name, category in config.categories.items()}


def _window_texts(root: Mapping[str, Any]) -> dict[str, str]:
    return {name: f"{w.get('from')}–{w.get('to')} in the recipient's zone"
            for name, w in (root.get("windows") or {}).items() if isinstance(w, dict)}


def rules_schema(config: Config) -> dict[str, Any]:
    """schema.json with enums of the events, categories, windows and template keys of `config`."""
    schema = copy.deepcopy(_generic(SCHEMA_PATH))
    defs = schema["$defs"]
    root = _root_data(config)
    events = {name: event.description or name for name, event in config.events.items()}
    defs["event_type"] = _enum(defs["event_type"], events)
    defs["category_name"] = _enum(defs["category_name"], _category_texts(config, root))
    defs["window_name"] = _enum(defs["window_name"], _window_texts(root))
    defs["template_key"] = _enum(defs["template_key"], _template_texts(config))
    del schema["$id"]  # not the engine's generic schema: an editor must not take one for the other
    schema["description"] = (f"{schema['description']} Made by `engine schema` from {config.root}: "
                             "run it again after adding an event, category, window or template key.")
    return schema


def templates_map_schema(config: Config) -> dict[str, Any]:
    """templates_map.schema.json with every template key the rules use as a required key."""
    schema = copy.deepcopy(_generic(TEMPLATES_MAP_SCHEMA_PATH))
    entry = schema["additionalProperties"]
    users = _template_users(config)
    schema["properties"] = {
        key: {**entry,
              "markdownDescription": f"{entry['markdownDescription']}\n\nUsed by {', '.join(f'`{n}`' for n in ids)}.",
              "description": f"{entry['description']} Used by {', '.join(ids)}."}
        for key, ids in sorted(users.items())
    }
    schema["required"] = sorted(users)
    del schema["$id"]
    return schema


@click.command("schema")
@config_option
@click.option("--for", "kind", type=click.Choice(["rules", "templates_map"]), default="rules", show_default=True,
              help="The schema of the rule files (notifications.yaml, rules/*.yaml) or of templates_map/*.yaml.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="The file to write (default: stdout).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 when --output is not what would be written (for CI).")
def command(config_path: str | None, kind: str, output: str | None, check: bool) -> None:
    """Write a JSON Schema for editors that completes this project's events, categories, windows and
    template keys."""
    chosen = settings(config_path)
    config = load(chosen.config_path)
    schema = rules_schema(config) if kind == "rules" else templates_map_schema(config)
    text = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    if check:
        _check_current(text, output, kind)
        return
    if output is None:
        click.echo(text, nl=False)
        return
    Path(output).write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


def _check_current(text: str, output: str | None, kind: str) -> None:
    """Exit 1 when the file `output` is not `text`."""
    if output is None:
        raise click.UsageError("--check needs --output, the file to compare")
    current = Path(output).read_text(encoding="utf-8") if Path(output).is_file() else None
    if current != text:
        which = " --for templates_map" if kind != "rules" else ""
        click.echo(f"{output} is out of date: run `engine schema{which} -o {output}`", err=True)
        raise click.exceptions.Exit(1)
