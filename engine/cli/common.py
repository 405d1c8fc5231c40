"""What the runtime commands share: settings from the environment, logging, the runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import time

import click

from ..settings import Settings

if TYPE_CHECKING:
    from ..runtime import Runtime


def setup_logging(config: Settings | None = None) -> None:
    """The log of a long-running command: ENGINE_LOG_LEVEL, ENGINE_LOG_FORMAT (engine/logs.py)."""
    from ..logs import setup

    setup(config or settings())


def settings(config_path: str | None = None, env: str | None = None) -> Settings:
    """The settings from the environment, with the command line's --config and --env over
    ENGINE_CONFIG and ENGINE_ENV."""
    overrides = {k: v for k, v in (("config_path", config_path), ("env", env)) if v}
    return Settings.from_environ(**overrides)


def runtime(config_path: str | None = None, *, migrate: bool = True) -> "Runtime":
    from ..runtime import Runtime  # the store, queue and Courier SDK load only for commands that use them

    chosen = settings(config_path)
    return Runtime.create(chosen, chosen.template_overrides, migrate=migrate)


class ProgressBar:
    """A progress bar on stderr for a long run (`engine preview`, `diff`, `backtest`): it appears
    once the run has taken more than a couple of seconds, and is gone when the run ends."""

    DELAY_S = 2.0

    def __init__(self, label: str):
        self.label, self.started = label, time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if done >= total or time.monotonic() - self.started < self.DELAY_S:
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total)
        self._bar.update(self._task, completed=done, total=total)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


config_option = click.option("--config", "config_path", default=None, help="The root configuration (default $ENGINE_CONFIG or notifications.yaml).")
