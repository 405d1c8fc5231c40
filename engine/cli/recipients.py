"""`engine recipients import FILE`: load existing users (JSON Lines or a JSON list of persons);
`engine recipients erase ID`: remove or redact one person's data everywhere."""

from __future__ import annotations

import json
from typing import Any

import click

from ..clock import utcnow
from .common import runtime

SHOWN = 20  # problems printed before "... and N more"


@click.group("recipients")
def command() -> None:
    """Recipients the engine knows."""


@command.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def import_command(path: str) -> None:
    """Import persons ({"id", "email", "name"?, "timezone"?, "phone"?}, as JSON Lines or one JSON
    list); existing ones are updated. Each is checked as the ingest door checks the people in
    events; a file with any problem is refused whole, each problem named by line and JSON path,
    and nothing is imported."""
    people = _read(path)
    problems = _problems(people)
    if problems:
        more = f"\n... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise click.ClickException("\n".join(problems[:SHOWN]) + more + f"\n{path}: {len(problems)} problem(s): "
                                   "nothing imported")
    count = runtime().store.import_recipients([person for _, _, person in people], utcnow())
    click.echo(f"imported {count} recipient(s)")


Located = tuple[str, str, Any]  # where in the file ("FILE:LINE" or "FILE"), the JSON path, the person


def _read(path: str) -> list[Located]:
    """Every person of the file: a JSON list (`$[i]`), or one JSON object per line (blank lines skipped)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text (byte {exc.start}): nothing imported") from None
    if text.lstrip().startswith("["):
        items = _loads(text, path, whole=True)
        if not isinstance(items, list):
            raise click.ClickException(f"{path}: not a JSON list: nothing imported")
        return [(path, f"$[{i}]", item) for i, item in enumerate(items)]
    return [(f"{path}:{n}", "$", _loads(line, f"{path}:{n}", whole=False))
            for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _loads(text: str, where: str, *, whole: bool) -> Any:
    """`text` parsed; `whole`: it is the file (else one line of it, which `where` names)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise click.ClickException(f"{where}: nested too deeply: nothing imported") from None
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}" if whole else f"column {exc.colno}"
        raise click.ClickException(f"{where}: not JSON: {exc.msg} ({at}): nothing imported") from None


def _problems(people: list[Located]) -> list[str]:
    """Each person's problems as the ingest door words them, then the ids given twice."""
    from ..core.people import person_problems

    problems = [f"{where}: {at}: {message}"
                for where, at, person in people for at, message in person_problems(person, at)]
    return problems + _repeated_ids(people)


def _repeated_ids(people: list[Located]) -> list[str]:
    """An id given twice: which of the two would win is a guess, so the file is refused."""
    first: dict[str, str] = {}
    found = []
    for where, at, person in people:
        rid = person.get("id") if isinstance(person, dict) else None
        if not isinstance(rid, str):
            continue
        if rid in first:
            found.append(f"{where}: {at}.id: {rid!r} is given again (first at {first[rid]}): one entry per person")
        else:
            first[rid] = f"{where} {at}" if at != "$" else where
    return found


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
    _say_erased(recipient_id, erase(runtime(migrate=False).store, recipient_id, utcnow()))


def _say_erased(recipient_id: str, counts: dict[str, int]) -> None:
    if not any(counts.values()):
        click.echo(f"nothing is stored about {recipient_id!r}")
        return
    click.echo(f"erased {recipient_id!r}:")
    for table, n in counts.items():
        click.echo(f"  {table}: {n}")
