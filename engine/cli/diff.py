"""`engine diff BASE HEAD`: every send a change to the rules adds, removes, moves or changes."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from ..diff import Change, cell, diff, markdown
from ..preview import Progress
from ..scenarios import ScenarioError
from .common import ProgressBar

if TYPE_CHECKING:
    from rich.table import Table

COLUMNS = ("change", "notification", "recipient", "before", "after", "events")


@click.command("diff")
@click.argument("base")
@click.argument("head")
@click.option("--config", "config_name", default="notifications.yaml", show_default=True,
              help="The root file, relative to each version.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
@click.option("--env", default="production", show_default=True, help="Which templates_map/ to render with.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when anything changes (for CI).")
def command(base: str, head: str, config_name: str, fmt: str, env: str, exit_code: bool) -> None:
    """Compare what two versions of the rules send (git refs or directories)."""
    with ProgressBar(f"previewing {base} and {head}") as progress:
        changes = _diff(base, head, config_name, env, progress)
    _show(changes, fmt, base, head)
    if exit_code and changes:
        raise click.exceptions.Exit(1)


def _diff(base: str, head: str, config_name: str, env: str, progress: Progress) -> list[Change]:
    try:
        return diff(base, head, config_name, env, progress=progress)
    except ScenarioError as exc:
        raise click.ClickException(f"a scenario of {head} cannot be read:\n{exc}") from None


def _show(changes: list[Change], fmt: str, base: str, head: str) -> None:
    if fmt == "markdown":
        click.echo(markdown(changes, base, head), nl=False)
    elif fmt == "json":
        click.echo(json.dumps([asdict(c) for c in changes], indent=2, default=str))
    else:
        print_table(changes, base, head)


def print_table(changes: list[Change], base: str, head: str) -> None:
    from rich.console import Console

    if changes:
        Console().print(_table(changes, f"What {head} sends differently from {base}"))
    else:
        click.echo("no change in what is sent")


def _table(changes: list[Change], title: str) -> Table:
    from rich.table import Column, Table

    table = Table(*(Column(name, overflow="fold") for name in COLUMNS), title=title)
    for c in changes:
        after = "\n".join([cell(c.after, "-"), *c.others])
        table.add_row(c.kind, c.notification, c.recipient, cell(c.before, "-"), after, c.source)
    return table
