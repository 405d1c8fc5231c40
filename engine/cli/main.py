"""The `engine` entry point: the command group and the one place errors become exit codes."""

from __future__ import annotations

import os
import sys

import click

from .. import __version__
from ..rules.problems import ConfigError
from ..settings import SettingsError
from . import backtest, diff, preview, retry, runtime, schema, test, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="engine")
def cli() -> None:
    """A declarative notification rules engine."""


for command in (validate.command, preview.command, test.command, diff.command, backtest.command, *runtime.COMMANDS,
                retry.command, schema.command):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        code = cli.main(args=argv, prog_name="engine", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"{problem.file}:{problem.line}:{problem.col}: {problem.message}", err=True)
        click.echo(f"{len(exc.problems)} error(s) in the configuration: run `engine validate` for details", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except Exception as exc:  # a dependency that is missing or does not answer: say which setting, not a traceback
        message = unreachable(exc)
        if message is None:
            raise
        click.echo(message, err=True)
        return 1


DATABASE_HELP = "set it to sqlite:///path/engine.db or postgresql+psycopg://user:password@host:5432/db"


def unreachable(exc: BaseException) -> str | None:
    """One or two lines for an error of the store or the queue, naming the variable and what to do;
    None for any other error (a bug: its traceback is wanted)."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

    database = _shown(os.environ.get("ENGINE_DATABASE_URL") or "sqlite:///engine-data/engine.db")
    if isinstance(exc, (NoSuchModuleError, ArgumentError)) or (
            isinstance(exc, ModuleNotFoundError) and _raised_in(exc, "sqlalchemy")):
        return f"error: ENGINE_DATABASE_URL={database} is not a database the engine can use: {DATABASE_HELP}"
    if isinstance(exc, DBAPIError):
        return (f"error: ENGINE_DATABASE_URL={database}: the database does not answer ({_first_line(exc.orig or exc)})\n"
                "check that it runs and that the URL (host, port, user, password, database) is right")
    queue = _shown(os.environ.get("ENGINE_QUEUE_URL") or "sqlite:///engine-data/queue.db")
    if type(exc).__module__.startswith("redis") or (isinstance(exc, OSError) and _raised_in(exc, "huey")) or \
            (type(exc).__module__ == "sqlite3" and _raised_in(exc, "huey")):
        return (f"error: ENGINE_QUEUE_URL={queue}: the queue does not answer ({_first_line(exc)})\n"
                "check that Redis runs (or the queue file's folder is writable) and that the URL is right")
    return None


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
    sys.exit(main())
