"""`engine diff BASE HEAD`: every send a change to the rules adds, removes, moves or changes."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..diff import diff, markdown
from .common import ProgressBar


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
        changes = diff(base, head, config_name, env, progress=progress)
    if fmt == "markdown":
        click.echo(markdown(changes, base, head), nl=False)
    elif fmt == "json":
        click.echo(json.dumps([asdict(c) for c in changes], indent=2, default=str))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"What {head} sends differently from {base}")
        for col in ("change", "notification", "recipient", "before", "after", "events"):
            table.add_column(col, overflow="fold")
        for c in changes:
            before = f"{c.before['send_at']} {c.before['status']}" if c.before else "-"
            after = f"{c.after['send_at']} {c.after['status']}" if c.after else "-"
            others = [d for d in c.details if not d.startswith("send_at")]
            if others:
                after += "\n" + "\n".join(others)
            table.add_row(c.kind, c.notification, c.recipient, before, after, c.source)
        if changes:
            Console().print(table)
        else:
            click.echo("no change in what is sent")
    if exit_code and changes:
        raise click.exceptions.Exit(1)
