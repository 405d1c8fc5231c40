"""The `engine` entry point: the command group and the one place errors become exit codes."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..rules.problems import ConfigError
from . import backtest, diff, preview, runtime, test, validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="engine")
def cli() -> None:
    """A declarative notification rules engine."""


for command in (validate.command, preview.command, test.command, diff.command, backtest.command, *runtime.COMMANDS):
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
