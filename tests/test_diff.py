"""`engine diff`: what a change to the rules changes in what is sent (directories and git refs)."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli.main import cli, main

ROOT = Path(__file__).resolve().parents[1]
REMINDERS = {"client_booking_reminder_24h", "practitioner_session_reminder_24h"}


def copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in ("notifications.yaml", "rules", "templates_map", "examples.jsonl", "tests/scenarios"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def to_48h(root: Path) -> None:
    for name in ("client.yaml", "practitioner.yaml"):
        path = root / "rules" / name
        path.write_text(path.read_text().replace("before: 24h", "before: 48h"))


def diff(*args: str) -> tuple[int, str]:
    """The exit code and standard output (a slow run's progress bar is on standard error)."""
    result = CliRunner().invoke(cli, ["diff", *args])
    return result.exit_code, result.stdout


def test_a_48h_reminder_moves_exactly_the_reminders(tmp_path: Path) -> None:
    base, head = copy(tmp_path / "base"), copy(tmp_path / "head")
    (head / "tests").mkdir(exist_ok=True)
    to_48h(head)
    code, out = diff(str(base), str(head), "--format", "json")
    assert code == 0
    changes = json.loads(out)
    assert changes and {c["kind"] for c in changes} == {"moved"}
    assert {c["notification"] for c in changes} == REMINDERS
    for c in changes:  # each exactly 24 hours earlier; a few now go out before their booking's cancel
        before, after = (datetime.fromisoformat(c[k]["send_at"].replace("Z", "+00:00")) for k in ("before", "after"))
        assert (before - after).total_seconds() == 24 * 3600
        assert c["details"][1:] in ([], ["status cancelled -> sent"]), c["details"]
    code, md = diff(str(base), str(head), "--format", "markdown")
    rows = [line for line in md.splitlines() if line.startswith("| moved |")]
    assert len(rows) == len(changes) and md.startswith("**Notification changes**")
    assert diff(str(base), str(head), "--exit-code")[0] == 1
    assert diff(str(base), str(base), "--exit-code") == (0, "no change in what is sent\n")


def test_git_refs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repo = copy(tmp_path / "repo")
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "base")
    to_48h(repo)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "48 h reminders")
    monkeypatch.chdir(repo)
    code, md = diff("HEAD~1", "HEAD", "--format", "markdown")
    assert code == 0
    notifications = {line.split("|")[2].strip(" `") for line in md.splitlines() if line.startswith("| ")}
    assert notifications - {"notification", "---"} == REMINDERS
    capsys.readouterr()
    assert main(["diff", "no-such-ref", "HEAD"]) == 1  # one line from the CLI's one error handler
    err = capsys.readouterr().err
    assert err.startswith("error: 'no-such-ref' is neither a directory nor a git ref: fatal: "), err
    assert err.count("\n") == 1, err


def test_a_scenario_whose_preferences_are_not_opt_outs_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = copy(tmp_path / "base"), copy(tmp_path / "head")
    scenario = head / "tests" / "scenarios" / "opt_outs_written_wrong.yaml"
    scenario.write_text("description: x\npreferences:\n  usr_c_maya: false\nevents: []\nexpect: []\n", encoding="utf-8")
    assert main(["diff", str(base), str(head)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"Error: a scenario of {head} cannot be read:",
        f"{scenario}:3:15: preferences of usr_c_maya must be a mapping {{notification, category or "
        "notification:channel: true or false}; got False",
    ]
