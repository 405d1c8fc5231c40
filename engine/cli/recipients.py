"""`engine recipients import FILE`: load existing users (JSON Lines or a JSON list of persons);
`engine recipients erase ID`: remove or redact one person's data everywhere."""

from __future__ import annotations

import json

import click

from ..clock import utcnow
from .common import runtime

REQUIRED = ("id", "email")


@click.group("recipients")
def command() -> None:
    """Recipients the engine knows."""


@command.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def import_command(path: str) -> None:
    """Import persons ({"id", "email", "name", "timezone", "phone"?}); existing ones are updated."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        people = json.loads(text) if text.lstrip().startswith("[") else [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path}: not JSON: {exc.msg} (line {exc.lineno})") from None
    problems = [f"{path}: person {i + 1}: needs {', '.join(k for k in REQUIRED if not isinstance(p, dict) or not p.get(k))}"
                for i, p in enumerate(people) if not isinstance(p, dict) or not all(p.get(k) for k in REQUIRED)]
    if problems:
        raise click.ClickException("\n".join(problems[:20]) + ("\n..." if len(problems) > 20 else "") + "\nnothing imported")
    count = runtime().store.import_recipients(people, utcnow())
    click.echo(f"imported {count} recipient(s)")


@command.command("erase")
@click.argument("recipient_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_command(recipient_id: str, yes: bool) -> None:
    """Remove or redact everything stored about one person (profile, preferences, events, sends,
    their history, digests, delivery receipts); their pending sends are cancelled. Prints what
    changed, per table."""
    from ..store.duties import erase

    if not recipient_id.strip():
        raise click.BadParameter("give the recipient's id", param_hint="ID")
    if not yes:
        click.confirm(f"Erase everything stored about {recipient_id!r}? This cannot be undone", abort=True)
    counts = erase(runtime(migrate=False).store, recipient_id, utcnow())
    if not any(counts.values()):
        click.echo(f"nothing is stored about {recipient_id!r}")
        return
    click.echo(f"erased {recipient_id!r}:")
    for table, n in counts.items():
        click.echo(f"  {table}: {n}")
