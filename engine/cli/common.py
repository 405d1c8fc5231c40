"""What the commands share: settings from the environment, logging, the runtime, a progress bar,
and the types of their duration and time options."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from ..clock import utcnow
from ..rules.timeparse import parse_duration, parse_instant
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
    return Settings.from_environ(None, **overrides)


def runtime(config_path: str | None = None, *, migrate: bool = True) -> Runtime:
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

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


config_option = click.option("--config", "config_path", default=None,
                             help="The root configuration (default $ENGINE_CONFIG or notifications.yaml).")


class Span(NamedTuple):
    """A duration given as an option: as it was written (for titles) and how long it is."""

    text: str
    length: timedelta


class Duration(click.ParamType[Span]):
    """An option's duration, written as rules write them (30m, 24h, 7d, 1h30m)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Span:
        if isinstance(value, Span):
            return value
        try:
            return Span(value, parse_duration(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Instant(click.ParamType[datetime]):
    """An option's time: RFC 3339 with its offset (2026-03-01T10:00:00Z), or with `ago=True` also a
    duration back from now (1d, 90m); an aware datetime in UTC."""

    name = "time"

    def __init__(self, *, ago: bool = False):
        self.ago = ago

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        if self.ago:
            try:
                return utcnow() - parse_duration(value)
            except ValueError:
                pass
        try:
            return parse_instant(value).astimezone(UTC)
        except ValueError as exc:
            self.fail(f"{value!r} is neither a duration (1d, 90m) nor a time with its offset (2026-03-01T10:00:00Z)"
                      if self.ago else str(exc), param, ctx)
