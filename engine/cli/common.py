"""What the runtime commands share: settings from the environment, logging, the runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING

import logging
import os
import sys

import click

from ..settings import Settings, SettingsError

if TYPE_CHECKING:
    from ..runtime import Runtime


def setup_logging() -> None:
    level = os.environ.get("ENGINE_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Courier SDK logs whole requests (addresses, names, template data) at DEBUG: never let it.
    logging.getLogger("courier").setLevel(max(logging.INFO, logging.getLogger().level))


def settings(config_path: str | None = None) -> Settings:
    try:
        overrides = {"config_path": config_path} if config_path else {}
        return Settings.from_environ(os.environ, **overrides)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def runtime(config_path: str | None = None, *, migrate: bool = True) -> "Runtime":
    from ..runtime import Runtime  # the store, queue and Courier SDK load only for commands that use them

    try:
        return Runtime.create(settings(config_path), dict(os.environ), migrate=migrate)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


config_option = click.option("--config", "config_path", default=None, help="The root configuration (default $ENGINE_CONFIG or notifications.yaml).")
