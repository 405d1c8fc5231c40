"""`engine db upgrade`: apply the database migrations; `engine db reencrypt`: rewrite every encrypted
row under the newest key."""

from __future__ import annotations

import click

from .common import runtime, settings


@click.group("db")
def command() -> None:
    """Database maintenance."""


@command.command("upgrade")
def upgrade_command() -> None:
    """Create or upgrade the engine's tables to the newest version."""
    from ..store.db import connect, upgrade

    s = settings()
    upgrade(connect(s.database_url))
    click.echo("database is up to date")


@command.command("reencrypt")
def reencrypt_command() -> None:
    """Rewrite every stored payload under the first key of ENGINE_ENCRYPTION_KEY (plain ones are
    encrypted), a batch per transaction; run it again after an interruption. Afterwards the older
    keys can be removed from ENGINE_ENCRYPTION_KEY."""
    from ..store.duties import reencrypt

    rt = runtime(migrate=False)
    if not rt.settings.encryption_keys:
        raise click.ClickException("ENGINE_ENCRYPTION_KEY is not set: put the new key first (NEW,OLD) "
                                   "and run this again")
    report = reencrypt(rt.store, rt.settings.encryption_keys)
    for table, counts in report.items():
        click.echo(f"{table}: {counts['rewritten']} re-encrypted, {counts['encrypted']} encrypted (were plain), "
                   f"{counts['current']} already under the newest key")
    click.echo("every row is under the newest key: the others can be removed from ENGINE_ENCRYPTION_KEY")
