"""`engine preview`: a dry run on a virtual clock of what the rules send, and when."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..core.decide import Renderer
from ..preferences_file import Preferences, preferences_file
from ..preview import Rejected, Result, Row, read_events, run
from ..rules.loader import load
from ..rules.model import Config
from .common import Instant, ProgressBar, config_option, settings
from .tables import local_time, tz_option

if TYPE_CHECKING:
    from rich.table import Table

STYLES = {"sent": "green", "pending": "cyan", "cancelled": "yellow", "skipped": "red"}


def load_preferences(path: str | None) -> Preferences:
    """The opt-outs of --preferences (see preferences_file); any mistake in the file refuses the preview."""
    found, problems = preferences_file(path) if path else ({}, [])
    if problems:
        raise click.ClickException("\n".join(f"{p.file}:{p.line}:{p.col}: {p.message}" for p in problems))
    return found


def print_table(result: Result, tz: str | None) -> None:
    from rich.console import Console

    Console().print(_table(result, tz))


def _table(result: Result, tz: str | None) -> Table:
    from rich.table import Column, Table

    columns = (f"send_at ({tz or 'UTC'})", "notification", "recipient", "template", "status", "reason")
    until = f" (until {local_time(result.until, tz)})" if result.until else ""
    table = Table(*(Column(name, overflow="fold") for name in columns), title=f"What the rules send{until}")
    for row in result.rows:
        table.add_row(*_cells(row, tz))
    return table


def _cells(row: Row, tz: str | None) -> tuple[str, ...]:
    out = row.as_json()
    return (local_time(row.send.send_at, tz), out["notification"], out["recipient"], out["template"] or "-",
            f"[{STYLES[out['status']]}]{out['status']}[/]", out["reason"] or "")


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
    raw, unreadable = read_events(_lines(events_path))
    _known_env(config, chosen.env, env)
    with ProgressBar(f"previewing {len(raw)} events") as progress:
        renderer = Renderer(env=chosen.env, environ=chosen.template_overrides)
        result = run(config, raw, until, renderer, load_preferences(prefs_path), progress)
    _refuse(events_path, unreadable + result.rejected)
    _show(result, fmt, output, tz, events_path)


def _lines(events_path: str) -> list[str]:
    try:
        return (sys.stdin.read() if events_path == "-" else Path(events_path).read_text(encoding="utf-8")).splitlines()
    except OSError as exc:
        raise click.ClickException(f"{events_path}: {exc.strerror}") from None


def _known_env(config: Config, env: str, given: str | None) -> None:
    if env not in config.templates:
        raise click.BadParameter(f"no templates_map/{env}.yaml (have: {', '.join(sorted(config.templates))})",
                                 param_hint="--env" if given else "ENGINE_ENV")


def _refuse(events_path: str, rejected: list[Rejected]) -> None:
    """Every event refused, at its line: nothing is previewed then."""
    said = [f"{events_path}:{bad.line}: {at}: {message}" for bad in sorted(rejected, key=lambda r: r.line)
            for at, message in bad.problems]
    if rejected:
        click.echo("\n".join(said), err=True)
        raise click.ClickException(f"{len(rejected)} event(s) refused; nothing previewed")


def _show(result: Result, fmt: str, output: str | None, tz: str | None, source: str) -> None:
    click.echo("".join(f"duplicate event id {dup!r} ignored\n" for dup in result.duplicates), err=True, nl=False)
    if fmt == "html":
        write_html(result, output or "preview.html", tz, source)
    elif fmt == "json":
        click.echo("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows_json(result)), nl=False)
    else:
        print_table(result, tz)


def write_html(result: Result, output: str, tz: str | None, source: str) -> None:
    page = _page(result, tz, source)
    if output == "-":
        click.echo(page, nl=False)
    else:
        Path(output).write_text(page, encoding="utf-8")
        click.echo(f"wrote {output} ({len(result.rows)} sends)", err=True)


def _page(result: Result, tz: str | None, source: str) -> str:
    from ..timeline import render_html

    people = {row.send.recipient_id: row.send.recipient for row in result.rows}
    return render_html(rows_json(result), people, f"What the rules send: {source}", tz)


def rows_json(result: Result) -> list[dict[str, Any]]:
    return [row.as_json() for row in result.rows]
