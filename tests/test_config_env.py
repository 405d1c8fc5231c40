"""`engine validate` and `engine preview` read ENGINE_CONFIG and ENGINE_ENV as every other command does
(the README's Configuration table); --config and --env win over them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.cli.main import cli


def engine(monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str, **env: str) -> Result:
    monkeypatch.chdir(cwd)
    for name in [n for n in os.environ if n.startswith(("ENGINE_", "COURIER_"))]:
        monkeypatch.delenv(name)
    return CliRunner().invoke(cli, list(args), env=env)


def templates(result: Result) -> set[str]:
    return {json.loads(line)["template"] for line in result.stdout.splitlines()}


def test_validate_reads_engine_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_root: Path) -> None:
    root = str(repo_root / "notifications.yaml")
    assert engine(monkeypatch, tmp_path, "validate").exit_code == 1  # no notifications.yaml here
    result = engine(monkeypatch, tmp_path, "validate", ENGINE_CONFIG=root)
    assert result.exit_code == 0, result.output
    result = engine(monkeypatch, tmp_path, "validate", "--config", root, ENGINE_CONFIG=str(tmp_path / "none.yaml"))
    assert result.exit_code == 0, result.output


def test_validate_refuses_an_engine_env_without_its_templates_map(
    monkeypatch: pytest.MonkeyPatch, repo_root: Path
) -> None:
    assert engine(monkeypatch, repo_root, "validate", ENGINE_ENV="staging").exit_code == 0
    result = engine(monkeypatch, repo_root, "validate", ENGINE_ENV="nowhere")
    assert result.exit_code == 1
    assert ("notifications.yaml:1:1: ENGINE_ENV='nowhere': there is no templates_map/nowhere.yaml "
            "(have: production, staging)") in result.stdout


def test_preview_reads_engine_config_and_engine_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, repo_root: Path
) -> None:
    events = str(repo_root / "examples.jsonl")
    root = str(repo_root / "notifications.yaml")
    here = engine(monkeypatch, repo_root, "preview", "--events", events, "--format", "json")
    assert here.exit_code == 0, here.output
    elsewhere = engine(monkeypatch, tmp_path, "preview", "--events", events, "--format", "json", ENGINE_CONFIG=root)
    assert elsewhere.exit_code == 0, elsewhere.output
    assert elsewhere.stdout == here.stdout
    staging = engine(monkeypatch, tmp_path, "preview", "--events", events, "--format", "json",
                     ENGINE_CONFIG=root, ENGINE_ENV="staging")
    assert staging.exit_code == 0, staging.output
    assert templates(staging) - {None} and all(t.endswith("_STAGING") for t in templates(staging) - {None})
    chosen = engine(monkeypatch, tmp_path, "preview", "--events", events, "--format", "json", "--env", "production",
                    ENGINE_CONFIG=root, ENGINE_ENV="staging")
    assert templates(chosen) == templates(here)


def test_preview_names_engine_env_when_it_is_wrong(monkeypatch: pytest.MonkeyPatch, repo_root: Path) -> None:
    result = engine(monkeypatch, repo_root, "preview", "--events", "examples.jsonl", ENGINE_ENV="nowhere")
    assert result.exit_code == 2
    assert "Invalid value for ENGINE_ENV: no templates_map/nowhere.yaml (have: production, staging)" in result.output
    result = engine(monkeypatch, repo_root, "preview", "--events", "examples.jsonl", "--env", "nowhere")
    assert "Invalid value for --env" in result.output
