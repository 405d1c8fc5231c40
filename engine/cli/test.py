"""`engine test`: run scenario files through the rules and report each, pass or fail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from ..rules.loader import load
from ..rules.model import Config
from ..scenarios import Outcome, ScenarioError, load_scenario, report, run_scenario, scenario_files
from .common import config_option, settings

PASSED, FAILED, MALFORMED = 0, 1, 2


class NoScenarios(click.ClickException):
    exit_code = MALFORMED


def default_folder(config_path: str) -> Path:
    return Path(config_path).parent / "tests" / "scenarios"


def one(config: Config, path: Path, env: str) -> tuple[int, str]:
    """The verdict on one file and its report."""
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        lines = [f"ERROR {path.stem}: the file is malformed"] + [f"  {line}" for line in str(exc).splitlines()]
        return MALFORMED, "\n".join(lines)
    outcome: Outcome = run_scenario(config, scenario, env)
    verdict = MALFORMED if outcome.problems else PASSED if outcome.passed else FAILED
    return verdict, report(outcome)


def summary(verdicts: list[int]) -> str:
    counts = [(verdicts.count(PASSED), "passed"), (verdicts.count(FAILED), "failed"),
              (verdicts.count(MALFORMED), "malformed")]
    return ", ".join(f"{n} {what}" for n, what in counts if n or what == "passed")


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@config_option
@click.option("--env", "env", default="production", show_default=True,
              help="Which templates_map/ the sends take their template ids from.")
def command(paths: tuple[str, ...], config_path: str | None, env: str) -> None:
    """Run scenario files (default: tests/scenarios/*.yaml beside the configuration) and say, for
    each, whether the rules send what it expects. Exit 0 when all pass, 1 when any fails, 2 when
    a file is malformed. The format: docs/scenarios.md."""
    config_path = settings(config_path).config_path
    config = load(config_path)
    if env not in config.templates:
        raise click.BadParameter(f"no templates_map/{env}.yaml (have: {', '.join(sorted(config.templates))})",
                                 param_hint="--env")
    verdicts = run_all(config, _files(paths or (default_folder(config_path),)), env)
    click.echo(summary(verdicts))
    raise click.exceptions.Exit(max(verdicts))


def _files(paths: Sequence[str | Path]) -> list[Path]:
    """The scenario files `paths` name (folders read for their files); NoScenarios when one is
    missing or there are none."""
    files = scenario_files(paths)
    absent = [str(p) for p in files if not p.is_file()]
    if absent or not files:
        raise NoScenarios(f"no such scenario file: {', '.join(absent)}" if absent else
                          f"no scenario files in {', '.join(map(str, paths))}")
    return files


def run_all(config: Config, files: list[Path], env: str) -> list[int]:
    """Each file's verdict, its report said as it comes."""
    verdicts: list[int] = []
    for path in files:
        verdict, text = one(config, path, env)
        if verdict != PASSED and verdicts and verdicts[-1] == PASSED:
            click.echo()  # a failure's report stands apart from the one-line passes around it
        verdicts.append(verdict)
        click.echo(text + ("\n" if verdict != PASSED else ""))
    return verdicts
