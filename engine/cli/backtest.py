"""`engine backtest --since 7d CANDIDATE`: what a candidate configuration would have sent differently."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ..clock import utcnow
from ..diff import markdown
from .common import Duration, ProgressBar, Span, config_option, runtime


@click.command("backtest")
@click.argument("candidate")
@click.option("--since", type=Duration(), default="7d", show_default=True,
              help="How far back to replay recorded events.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@config_option
def command(candidate: str, since: Span, fmt: str, config_path: str | None) -> None:
    """Replay recorded events through CANDIDATE (a directory or git ref), sending nothing."""
    from ..backtest import backtest

    rt = runtime(config_path)
    now = utcnow()
    with ProgressBar("replaying recorded events") as progress:
        count, changes = backtest(rt.store, rt.config, candidate, now - since.length, now, rt.settings.env,
                                  progress=progress)
    if fmt == "json":
        click.echo(json.dumps({"events": count, "changes": [asdict(c) for c in changes]}, indent=2, default=str))
    else:
        click.echo(f"{count} recorded event(s) since {since.text} ago replayed.\n")
        click.echo(markdown(changes, "current", candidate), nl=False)
