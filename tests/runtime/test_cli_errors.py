"""One error handler (engine/cli/main.py): a bad setting, a store the engine cannot use or reach,
a queue it cannot use, each end a command with one line that names the variable and what to do,
exit code 1, and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.engine_process import copy_config, engine_env

UNREACHABLE_PG = "postgresql+psycopg://u:hunter2@127.0.0.1:1/db"

CASES = [  # (command, variable, value, what the line says)
    (["stats"], "ENGINE_DATABASE_URL", UNREACHABLE_PG, "the database does not answer"),
    (["upcoming"], "ENGINE_DATABASE_URL", "mysql://u:hunter2@127.0.0.1/db", "is not a database the engine can use"),
    (["db", "upgrade"], "ENGINE_DATABASE_URL", UNREACHABLE_PG, "the database does not answer"),
    (
        ["retry", "--all"],
        "ENGINE_DATABASE_URL",
        "postgres://u:hunter2@127.0.0.1:1/db",
        "is not a database the engine can use",
    ),
    (["serve", "--port", "0"], "ENGINE_DATABASE_URL", UNREACHABLE_PG, "the database does not answer"),
    (["worker"], "ENGINE_QUEUE_URL", "amqp://u:hunter2@127.0.0.1/", "is not a queue the engine can use"),
    (["stats"], "ENGINE_LOG_LEVEL", "loud", "is not one of DEBUG, INFO"),
    (["upcoming"], "ENGINE_ENCRYPTION_KEY", "not-a-key", "each key must be 32 url-safe base64-encoded bytes"),
    (["stats"], "ENGINE_ENV", "nowhere", "there is no templates_map/nowhere.yaml"),
    (["schema"], "ENGINE_MAX_BODY_BYTES", "lots", "is not a number"),
]


def _logged(line: str) -> bool:
    return line[:4].isdigit() and " engine" in line[:40]  # `2026-03-01 10:00:00,000 WARNING engine: ...`


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_config(tmp_path_factory.mktemp("cli-errors"))


@pytest.mark.parametrize("args, variable, value, says", CASES, ids=[f"{' '.join(c[0])}-{c[1]}" for c in CASES])
def test_a_command_ends_with_one_line_naming_the_variable(project: Path, args: list[str], variable: str, value: str,
                                                          says: str) -> None:
    env = engine_env(project, "http://127.0.0.1:9", **{variable: value})
    done = subprocess.run([sys.executable, "-m", "engine.cli.main", *args], cwd=project, capture_output=True, text=True,
                          env=env, timeout=60)
    # what a long-running command logged before it met the error stays; the error is its last line, alone
    errors = [line for line in done.stderr.splitlines() if not _logged(line)]
    assert done.returncode == 1, done.stderr
    assert len(errors) == 1 and errors[0].startswith(f"error: {variable}") and says in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr + done.stdout
