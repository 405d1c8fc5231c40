"""A product manager's journey: the README's "add a notification" section, followed as written
in a scratch copy of the project, ends with every check passing, and no Python touched.

What the test does, it reads from the README: the rule to add and the file it goes in, the
template ids, the scenario and its file name, the commands. When the README changes so that its
walk-through no longer works, this test fails.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from tests.conftest import ROOT

COPIED = ("notifications.yaml", "rules", "templates_map", "examples.jsonl", "tests/scenarios",
          # what the snapshot step needs
          "tests/__init__.py", "tests/conftest.py", "tests/test_snapshots.py", "tests/__snapshots__")
HEADING = "## For product managers: add a notification"


def pm_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(HEADING)
    return text[start:text.index("\n## ", start + len(HEADING))]


def steps(section: str) -> dict[int, str]:
    """The numbered steps of the section, by number."""
    found = re.split(r"^(\d)\. ", section, flags=re.MULTILINE)
    return {int(found[i]): found[i + 1] for i in range(1, len(found) - 1, 2)}


def yaml_block(step: str) -> str:
    """The step's ```yaml block, without the indentation of the list it sits in."""
    fence = re.search(r"^( *)```yaml\n(.*?)^\1```", step, flags=re.MULTILINE | re.DOTALL)
    assert fence, "the step shows no ```yaml block"
    indent = len(fence.group(1))
    return "".join(line[indent:] if line.strip() else "\n" for line in fence.group(2).splitlines(keepends=True))


def one(pattern: str, text: str) -> str:
    found = re.search(pattern, text, flags=re.DOTALL)
    assert found, f"the README no longer says {pattern!r}"
    return found.group(1)


def python_files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.py")}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in COPIED:
        source, target = ROOT / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    monkeypatch.chdir(tmp_path)
    for name in ("ENGINE_CONFIG", "ENGINE_ENV"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def engine(capsys: pytest.CaptureFixture[str], command: str) -> tuple[int, str]:
    """A command as the README writes it (`engine validate`), run by the `engine` entry point."""
    words = command.split()
    assert words[0] == "engine", command
    code = main(words[1:])
    return code, capsys.readouterr().out


def pytest_command(project: Path, command: str) -> subprocess.CompletedProcess[str]:
    words = command.split()
    assert words[:3] == ["python", "-m", "pytest"], command
    return subprocess.run([sys.executable, *words[1:], "-q", "-p", "no:cacheprovider"], cwd=project,
                          capture_output=True, text=True, timeout=300)


def paste_suggested_lines(project: Path, report: str) -> list[str]:
    """Step 5's advice for a failing `match: all` scenario: paste the lines `engine test` offers
    under that file's `expect:`. Returns the names of the scenarios changed."""
    changed = []
    for block in report.split("\n\n"):
        lines = list(itertools.dropwhile(lambda line: not line.startswith("FAIL  "), block.splitlines()))
        if not lines:
            continue
        path = project / lines[1].split(" (match:")[0].strip()
        offered = lines[lines.index("  if these are right, add them under `expect:`:") + 1:]
        paste = list(itertools.takewhile(lambda line: line.startswith("  - {"), offered))
        assert paste, block
        text = path.read_text(encoding="utf-8")
        assert "\nexpect:\n" in text, path
        path.write_text(text.replace("\nexpect:\n", "\nexpect:\n" + "\n".join(paste) + "\n", 1), encoding="utf-8")
        changed.append(path.stem)
    return changed


def test_the_readme_walk_through_passes_without_touching_python(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step = steps(pm_section())
    python_before = python_files(project)

    # 1. Declare it, in the file the README names, under `notifications:`.
    rule_file = project / one(r"in `(rules/[\w.]+\.yaml)` under `notifications:`", step[1])
    rule = yaml_block(step[1])
    notification = one(r"^  (\w+):", rule)
    rule_file.write_text(rule_file.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + rule, encoding="utf-8")

    # 2. Map the template in every templates_map/<env>.yaml (with the staging suffix in staging).
    key, template_id = re.search(r"`(\w+): (\w+)`", step[2]).groups()  # type: ignore[union-attr]
    suffix, suffixed_env = re.search(r"`\.\.\.(_\w+)` in (\w+)", step[2]).groups()  # type: ignore[union-attr]
    maps = sorted((project / "templates_map").glob("*.yaml"))
    assert [m.stem for m in maps] == ["production", "staging"]
    for mapping in maps:
        value = template_id + (suffix if mapping.stem == suffixed_env else "")
        mapping.write_text(mapping.read_text(encoding="utf-8").rstrip("\n") + f"\n{key}: {value}\n", encoding="utf-8")

    # 3. Validate.
    code, out = engine(capsys, one(r"\*\*Validate\*\*: `(engine validate)`", step[3]))
    assert code == 0, out

    # 4. Preview: the new notification is among what the fortnight of examples sends.
    preview = one(r"`(engine preview --events examples\.jsonl)`", step[4])
    code, out = engine(capsys, preview + " --format json")
    assert code == 0
    assert notification in {json.loads(line)["notification"] for line in out.splitlines()}

    # 5. Pin the behaviour: the scenario, then `engine test`.
    scenario = project / one(r"Save this as `(tests/scenarios/[\w.]+\.yaml)`", step[5])
    scenario.write_text(yaml_block(step[5]), encoding="utf-8")
    command = one(r"Then run `(engine test)`", step[5])
    code, out = engine(capsys, command)
    assert f"PASS  {scenario.stem}: " in out, out
    # ...the strict scenarios the README names fail, offering the new sends as lines to paste.
    named = {n for n in re.findall(r"`(\w+)`", step[5]) if (project / "tests" / "scenarios" / f"{n}.yaml").is_file()}
    assert (code, set(paste_suggested_lines(project, out))) == (1, named - {scenario.stem}), out
    code, out = engine(capsys, command)
    assert code == 0, out
    assert out.splitlines()[-1] == f"{len(list(scenario.parent.glob('*.yaml')))} passed"

    # ...and the snapshot of the new notification, written once, then checked.
    update = one(r"`(python -m pytest tests/test_snapshots\.py --snapshot-update)`", step[5])
    written = pytest_command(project, update)
    assert written.returncode == 0, written.stdout + written.stderr
    assert (
        project / "tests" / "__snapshots__" / "test_snapshots" / f"test_courier_body[{notification}].json"
    ).is_file()
    checked = pytest_command(project, update.replace(" --snapshot-update", ""))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    assert python_files(project) == python_before


def test_the_scenario_format_page_starts_with_the_readme_scenario() -> None:
    docs = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    assert "(docs/scenarios.md)" in steps(pm_section())[5]
    assert yaml_block(docs[docs.index("## A first scenario"):]) == yaml_block(steps(pm_section())[5])
