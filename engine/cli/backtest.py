"""`engine backtest --since 7d CANDIDATE`: what a candidate configuration would have sent differently."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..diff import markdown
from ..rules.timeparse import parse_duration
from ..clock import utcnow
from .common import ProgressBar, config_option, runtime


@click.command("backtest")
@click.argument("candidate")
@click.option("--since", default="7d", show_default=True, help="How far back to replay recorded events.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@config_option
def command(candidate: str, since: str, fmt: str, config_path: str | None) -> None:
    """Replay recorded events through CANDIDATE (a directory or git ref), sending nothing."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    from ..backtest import backtest

    rt = runtime(config_path)
    try:
        now = utcnow()
        with ProgressBar("replaying recorded events") as progress:
            count, changes = backtest(rt.store, rt.config, candidate, now - window, now, rt.settings.env, progress=progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps({"events": count, "changes": [asdict(c) for c in changes]}, indent=2, default=str))
    else:
        click.echo(f"{count} recorded event(s) since {since} ago replayed.\n")
        click.echo(markdown(changes, "current", candidate), nl=False)
