"""`engine preview`: a dry run on a virtual clock of what the rules send, and when."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from ..core.decide import Renderer
from ..preview import Result, read_events, run
from ..rules.loader import load
from ..rules.yaml_source import load_file
from .common import Instant, ProgressBar, config_option, settings
from .tables import local_time, tz_option


def load_preferences(path: str | None) -> dict[str, dict[str, bool]]:
    if not path:
        return {}
    doc, problems = load_file(path)
    if problems:
        raise click.ClickException("; ".join(f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems))
    if not isinstance(doc.data, dict):
        raise click.ClickException(f"{path}: preferences must map recipient ids to "
                                   "{notification, category or notification:channel: true/false}")
    return {str(k): {str(n): bool(v) for n, v in (v or {}).items()} for k, v in doc.data.items()}


def print_table(result: Result, tz: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="What the rules send" + (f" (until {local_time(result.until, tz)})" if result.until else ""))
    for col in (f"send_at ({tz or 'UTC'})", "notification", "recipient", "template", "status", "reason"):
        table.add_column(col, overflow="fold")
    styles = {"sent": "green", "pending": "cyan", "cancelled": "yellow", "skipped": "red"}
    for row in result.rows:
        out = row.as_json()
        table.add_row(local_time(row.send.send_at, tz), out["notification"], out["recipient"], out["template"] or "-",
                      f"[{styles[out['status']]}]{out['status']}[/]", out["reason"] or "")
    Console().print(table)


@click.command("preview")
@click.option("--events", "events_path", required=True, help="Events as JSON Lines; - reads standard input.")
@config_option
@click.option("--until", type=Instant(), default=None,
              help="Stop the clock here (RFC 3339); default: until nothing is pending.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table", show_default=True,
              help="html writes one self-contained timeline page (see --output).")
@click.option("--output", "-o", "output", default=None,
              help="With --format html: the file to write (default preview.html; - for stdout).")
@tz_option
@click.option("--env", "env", default=None, help="Which templates_map/ to use (default $ENGINE_ENV or production).")
@click.option("--preferences", "prefs_path", default=None,
              help="YAML/JSON: recipient id -> {notification|category|notification:channel: false}.")
def command(events_path: str, config_path: str | None, until: datetime | None, fmt: str, output: str | None,
            tz: str | None, env: str | None, prefs_path: str | None) -> None:
    """Dry-run events through the rules and print every send with its fate."""
    chosen = settings(config_path, env)
    config = load(chosen.config_path)
    if events_path == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            with open(events_path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as exc:
            raise click.ClickException(f"{events_path}: {exc.strerror}") from None
    raw, unreadable = read_events(lines)
    env_option, env = env, chosen.env
    if env not in config.templates:
        raise click.BadParameter(f"no templates_map/{env}.yaml (have: {', '.join(sorted(config.templates))})",
                                param_hint="--env" if env_option else "ENGINE_ENV")
    with ProgressBar(f"previewing {len(raw)} events") as progress:
        renderer = Renderer(env=env, environ=chosen.template_overrides)
        result = run(config, raw, until, renderer, load_preferences(prefs_path), progress)
    rejected = unreadable + result.rejected
    if rejected:
        for bad in sorted(rejected, key=lambda r: r.line):
            for path, message in bad.problems:
                click.echo(f"{events_path}:{bad.line}: {path}: {message}", err=True)
        raise click.ClickException(f"{len(rejected)} event(s) refused; nothing previewed")
    for dup in result.duplicates:
        click.echo(f"duplicate event id {dup!r} ignored", err=True)
    if fmt == "html":
        write_html(result, output or "preview.html", tz, events_path)
    elif fmt == "json":
        for row in result.rows:
            click.echo(json.dumps(row.as_json(), ensure_ascii=False, sort_keys=False))
    else:
        print_table(result, tz)


def write_html(result: Result, output: str, tz: str | None, source: str) -> None:
    from ..timeline import render_html

    people = {row.send.recipient_id: row.send.recipient for row in result.rows}
    page = render_html(rows_json(result), people, f"What the rules send: {source}", tz)
    if output == "-":
        click.echo(page, nl=False)
        return
    with open(output, "w", encoding="utf-8") as fh:
        fh.write(page)
    click.echo(f"wrote {output} ({len(result.rows)} sends)", err=True)


def rows_json(result: Result) -> list[dict[str, Any]]:
    return [row.as_json() for row in result.rows]
