"""`engine db upgrade`: apply the database migrations."""

from __future__ import annotations

import click

from .common import settings


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
