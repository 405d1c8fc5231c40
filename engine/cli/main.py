"""The `engine` entry point: the command group and the one place errors become exit codes."""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import NoReturn

import click

from .. import __version__
from ..rules.problems import ConfigError
from ..settings import Settings, SettingsError
from . import ending

# Each command's module, imported when the command is looked up: `engine validate` needs neither
# the store, the queue nor the Courier SDK, which the runtime commands import (about 1 s).
COMMANDS = {"validate": "validate", "preview": "preview", "test": "test", "diff": "diff", "backtest": "backtest",
            "serve": "serve", "worker": "worker", "upcoming": "upcoming", "send-test": "send_test", "stats": "stats",
            "db": "db", "recipients": "recipients", "retry": "retry", "schema": "schema"}


class _Commands(click.Group):
    """The `engine` group, loading a command's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"{__package__}.{module}").command
        return command


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="engine")
def cli() -> None:
    """A declarative notification rules engine."""


def run() -> NoReturn:
    """The `engine` console script: the command, then the end of the process (see ending)."""
    ending.from_console()
    ending.end(main())


def main(argv: list[str] | None = None) -> int:
    """Run the command; every error a user can cause becomes a message and an exit code here."""
    try:
        code = cli.main(args=argv, prog_name="engine", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt) as exc:
        return _ended(exc)
    except ConfigError as exc:
        _say_config_errors(exc)
        return 1
    except Exception as exc:  # a setting, or a dependency that is missing or does not answer: no traceback
        message = explained(exc)
        if message is None:
            raise  # a bug: its traceback is wanted
        click.echo(message, err=True)
        return 1


def _ended(exc: BaseException) -> int:
    """The exit code of a command that click ended: its exit, a usage error (said), an abort or Ctrl-C (130)."""
    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code)
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    if isinstance(exc, click.Abort):
        click.echo("aborted", err=True)
    return 130


def _say_config_errors(exc: ConfigError) -> None:
    for problem in exc.problems:
        click.echo(f"{problem.file}:{problem.line}:{problem.col}: {problem.message}", err=True)
    click.echo(f"{len(exc.problems)} error(s) in the configuration: run `engine validate` for details", err=True)


DATABASE_HELP = "set it to sqlite:///path/engine.db or postgresql+psycopg://user:password@host:5432/db"
DATABASE_DOWN = "check that it runs and that the URL (host, port, user, password, database) is right"
QUEUE_DOWN = "check that Redis runs (or the queue file's folder is writable) and that the URL is right"


def explained(exc: BaseException) -> str | None:
    """One line for a bad setting, what a command was asked that the engine refuses, or a store or
    queue the engine cannot use, naming the variable and what to do; None for any other error."""
    if isinstance(exc, SettingsError) or refused(exc):
        return f"error: {exc}"
    return unreachable(exc)


def refused(exc: BaseException) -> bool:
    """Whether `exc` refuses what a command was asked (a version of the rules that is not there, a
    send that cannot be planned, event data its type refuses): its message says what and why."""
    # imported here: the runtime loads the store, the queue and the Courier SDK, which most commands never need
    from ..core.events import EventRejected
    from ..diff import RefError
    from ..runtime import SendRefused

    return isinstance(exc, (RefError, SendRefused, EventRejected))


def unreachable(exc: BaseException) -> str | None:
    """One line for an error of the store or the queue, naming the variable and what to do; None
    for any other error."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    urls = _urls()
    if isinstance(exc, (NoSuchModuleError, ArgumentError)) or (
            isinstance(exc, ModuleNotFoundError) and _raised_in(exc, "sqlalchemy")):
        return f"error: ENGINE_DATABASE_URL={urls.database_url} is not a database the engine can use: {DATABASE_HELP}"
    if isinstance(exc, DBAPIError):
        return (f"error: ENGINE_DATABASE_URL={urls.database_url}: the database does not answer "
                f"({_first_line(exc.orig or exc)}): {DATABASE_DOWN}")
    if _from_queue(exc):
        return f"error: ENGINE_QUEUE_URL={urls.queue_url}: the queue does not answer ({_first_line(exc)}): {QUEUE_DOWN}"
    return None


def _from_queue(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("redis", "huey")) or (
        (isinstance(exc, OSError) or module == "sqlite3") and _raised_in(exc, "huey"))


def _urls() -> Settings:
    """The store's and queue's URLs as the command read them, without their passwords."""
    try:
        chosen = Settings.from_environ()
    except SettingsError:
        chosen = Settings()
    return replace(chosen, database_url=_shown(chosen.database_url), queue_url=_shown(chosen.queue_url))


def _raised_in(exc: BaseException, package: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if f"/{package}/" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _shown(url: str) -> str:
    """The URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even a URL: show what comes after any credentials
        return url.rsplit("@", 1)[-1]


if __name__ == "__main__":  # pragma: no cover
    run()
