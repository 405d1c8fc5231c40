"""`engine validate`: every problem in the configuration, in text, GitHub or JSON form."""

from __future__ import annotations

import json

import click

from ..lint import check_all
from ..rules.loader import collector_paused
from ..rules.model import Config
from ..rules.problems import Problem
from .common import config_option, settings
from .ending import keep_until_exit
from .github import annotation, append_step_summary, problems_summary


def render(problems: list[Problem], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([
            {"file": p.file, "line": p.line, "col": p.col, "message": p.message, "severity": p.severity}
            for p in problems
        ], indent=2)
    if fmt == "github":
        return "\n".join(annotation(p) for p in problems)
    return "\n".join(map(_text_line, problems))


def _text_line(p: Problem) -> str:
    return f"{p.file}:{p.line}:{p.col}: {'warning: ' if p.severity == 'warning' else ''}{p.message}"


def environment_problems(config: Config | None, env: str) -> list[Problem]:
    """ENGINE_ENV must name a templates_map/ file: the engine refuses to start otherwise."""
    if config is None or env in config.templates:
        return []
    have = ", ".join(sorted(config.templates))
    return [Problem(config.root, 1, 1, f"ENGINE_ENV={env!r}: there is no templates_map/{env}.yaml (have: {have})")]


@click.command("validate")
@config_option
@click.option("--format", "fmt", type=click.Choice(["text", "github", "json"]), default="text", show_default=True)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def command(config_path: str | None, fmt: str, strict: bool) -> None:
    """Check the rules: shape, meaning and every example. Exit 1 on any error."""
    # The collector stays paused until the configuration is freed or, when the process ends with
    # the command, put out of its reach: re-enabled while the configuration lives, its first pass
    # walks all of it (slow on thousands of rules) and frees nothing.
    chosen = settings(config_path)
    with collector_paused():
        config, problems = check_all(chosen.config_path)
        keep_until_exit()
    problems += environment_problems(config, chosen.env)
    errors = [p for p in problems if p.severity == "error" or strict]
    _summarize(problems, chosen.config_path, bool(errors))
    out = render(problems, fmt)
    if out and (fmt == "json" or problems):
        click.echo(out)
    if fmt == "text":
        click.echo(_verdict(problems, bool(errors)), err=True)
    raise click.exceptions.Exit(1 if errors else 0)


def _verdict(problems: list[Problem], failed: bool) -> str:
    warnings = len(problems) - len([p for p in problems if p.severity == "error"])
    return ("invalid: " if failed else "valid: ") + f"{len(problems) - warnings} error(s), {warnings} warning(s)"


def _summarize(problems: list[Problem], config_path: str, failed: bool) -> None:
    """Every problem in the job's step summary, in GitHub Actions: annotations show only ten."""
    try:
        append_step_summary(problems_summary(problems, config_path, failed))
    except OSError as exc:
        click.echo(f"warning: could not write GITHUB_STEP_SUMMARY: {exc}", err=True)
