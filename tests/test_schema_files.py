"""schema.json and templates_map.schema.json are valid Draft 2020-12 schemas, the shipped files
name them and pass them with an independent validator (check-jsonschema, as editors and CI would
use it), every key carries its text from docs/rules.md, and the committed files are exactly what
tools/make_schema.py generates."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMA = Path("engine/rules/schema.json")
TEMPLATES_MAP_SCHEMA = Path("engine/rules/templates_map.schema.json")


def check_jsonschema(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).with_name("check-jsonschema")
    command = [str(beside)] if beside.exists() else [sys.executable, "-m", "check_jsonschema"]
    if not beside.exists() and shutil.which("check-jsonschema") is None:
        pytest.importorskip("check_jsonschema")
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_schema_is_a_valid_2020_12_schema(repo_root: Path) -> None:
    done = check_jsonschema("--check-metaschema", str(SCHEMA), cwd=repo_root)
    assert done.returncode == 0, done.stdout + done.stderr


def test_shipped_rule_files_match_the_schema(repo_root: Path) -> None:
    files = ["notifications.yaml", *sorted(str(p.relative_to(repo_root)) for p in (repo_root / "rules").glob("*.yaml"))]
    assert len(files) >= 4
    done = check_jsonschema("--schemafile", str(SCHEMA), *files, cwd=repo_root)
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_declares_draft_2020_12(repo_root: Path) -> None:
    schema = json.loads((repo_root / SCHEMA).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_make_schema_regenerates_the_committed_files(repo_root: Path) -> None:
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "make_schema.py"), "--check"], cwd=repo_root,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_root_schema_is_a_real_file_identical_to_the_engine_s(repo_root: Path) -> None:
    """A symbolic link becomes a text file holding its target's path in a Windows checkout."""
    root = repo_root / "schema.json"
    assert root.is_file() and not root.is_symlink()
    assert root.read_bytes() == (repo_root / SCHEMA).read_bytes()


def _properties(node: object, where: str = "") -> list[tuple[str, dict]]:
    found: list[tuple[str, dict]] = []
    if isinstance(node, dict):
        found += [(f"{where}/properties/{name}", sub) for name, sub in node.get("properties", {}).items()]
        for key, sub in node.items():
            found += _properties(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            found += _properties(sub, f"{where}/{i}")
    return found


@pytest.mark.parametrize("name", [str(SCHEMA), str(TEMPLATES_MAP_SCHEMA)])
def test_every_key_is_described_from_docs_rules_md(repo_root: Path, name: str) -> None:
    schema = json.loads((repo_root / name).read_text(encoding="utf-8"))
    docs = (repo_root / "docs" / "rules.md").read_text(encoding="utf-8")
    keys = _properties(schema)
    assert len(keys) >= (70 if name == str(SCHEMA) else 0)
    for where, sub in keys:
        assert sub.get("description") and sub.get("markdownDescription"), f"{where} has no description"
        assert sub["markdownDescription"] in docs, f"{where}: its text is not docs/rules.md's"
    if name == str(SCHEMA):
        assert len(schema["$defs"]["notification"]["properties"]) == 20


def test_durations_times_and_crons_explain_their_pattern(repo_root: Path) -> None:
    defs = json.loads((repo_root / SCHEMA).read_text(encoding="utf-8"))["$defs"]
    for name, example in (("duration", "1h30m"), ("local_time", "09:00"), ("cron", "0 9 * * MON")):
        assert example in defs[name]["patternErrorMessage"], name
        assert re.search(defs[name]["pattern"], example), name
    assert defs["duration"]["patternErrorMessage"] != defs["duration"]["pattern"]


def _filled(snippet: object) -> object:
    """A snippet body with each ${n:default} replaced by its default, as an editor inserts it."""
    if isinstance(snippet, dict):
        return {_filled(k): _filled(v) for k, v in snippet.items()}
    if isinstance(snippet, list):
        return [_filled(v) for v in snippet]
    return re.sub(r"\$\{\d+:([^}]*)\}", r"\1", snippet) if isinstance(snippet, str) else snippet


def test_the_new_notification_snippet_is_a_valid_notification(repo_root: Path, tmp_path: Path) -> None:
    import yaml

    schema = json.loads((repo_root / SCHEMA).read_text(encoding="utf-8"))
    (snippet,) = schema["properties"]["notifications"]["defaultSnippets"]
    body = _filled(snippet["body"])
    (tmp_path / "new.yaml").write_text(yaml.safe_dump({"notifications": body}), encoding="utf-8")
    done = check_jsonschema("--schemafile", str(repo_root / SCHEMA), "new.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    (notification,) = body.values()
    assert set(schema["$defs"]["notification"]["required"]) <= set(notification)


def test_every_file_names_its_schema_and_passes_it(repo_root: Path) -> None:
    modeline = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
    files = ["notifications.yaml", *sorted(str(p.relative_to(repo_root)) for p in (repo_root / "rules").glob("*.yaml")),
             *sorted(str(p.relative_to(repo_root)) for p in (repo_root / "templates_map").glob("*.yaml"))]
    by_schema: dict[Path, list[str]] = {}
    for name in files:
        first = (repo_root / name).read_text(encoding="utf-8").splitlines()[0]
        found = modeline.match(first)
        assert found, f"{name}: its first line does not name its schema"
        schema = ((repo_root / name).parent / found.group(1)).resolve()
        by_schema.setdefault(schema, []).append(name)
    assert by_schema == {
        (repo_root / "schema.json").resolve(): [f for f in files if not f.startswith("templates_map/")],
        (repo_root / TEMPLATES_MAP_SCHEMA).resolve(): [f for f in files if f.startswith("templates_map/")],
    }
    for schema, names in by_schema.items():
        done = check_jsonschema("--schemafile", str(schema), *names, cwd=repo_root)
        assert done.returncode == 0, done.stdout + done.stderr


def test_a_bad_templates_map_is_refused_by_its_schema(tmp_path: Path, repo_root: Path) -> None:
    (tmp_path / "staging.yaml").write_text("Client-Welcome: CLIENT_WELCOME_V1\nclient_review: ''\n", encoding="utf-8")
    done = check_jsonschema("--schemafile", str(repo_root / TEMPLATES_MAP_SCHEMA), "staging.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert "Client-Welcome" in done.stdout and "client_review" in done.stdout


def _engine_schema(where: Path, monkeypatch: pytest.MonkeyPatch, *args: str):
    from click.testing import CliRunner

    from engine.cli.main import cli

    monkeypatch.chdir(where)
    monkeypatch.delenv("ENGINE_CONFIG", raising=False)
    return CliRunner().invoke(cli, ["schema", *args])


def test_engine_schema_enumerates_the_project_s_names(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _engine_schema(repo_root, monkeypatch)
    assert result.exit_code == 0, result.output
    defs = json.loads(result.stdout)["$defs"]
    assert "booking.confirmed" in defs["event_type"]["enum"] and "user.registered" in defs["event_type"]["enum"]
    assert set(defs["category_name"]["enum"]) >= {"transactional", "engagement"}
    assert defs["window_name"]["enum"] == ["daytime"]
    assert "client_welcome" in defs["template_key"]["enum"]
    assert len(defs["event_type"]["markdownEnumDescriptions"]) == len(defs["event_type"]["enum"])
    (tmp_path / "schema.json").write_text(result.stdout)
    files = ["notifications.yaml", *sorted(str(p.relative_to(repo_root)) for p in (repo_root / "rules").glob("*.yaml"))]
    done = check_jsonschema("--schemafile", str(tmp_path / "schema.json"), *files, cwd=repo_root)
    assert done.returncode == 0, done.stdout + done.stderr


def test_engine_schema_check_says_when_the_file_is_stale(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "project.schema.json"
    assert _engine_schema(repo_root, monkeypatch, "--for", "templates_map", "-o", str(out)).exit_code == 0
    assert _engine_schema(repo_root, monkeypatch, "--for", "templates_map", "-o", str(out), "--check").exit_code == 0
    required = json.loads(out.read_text())["required"]
    assert "client_welcome" in required
    out.write_text(out.read_text().replace('"client_welcome",', ""))
    result = _engine_schema(repo_root, monkeypatch, "--for", "templates_map", "-o", str(out), "--check")
    assert result.exit_code == 1
    assert "is out of date: run `engine schema --for templates_map -o " in result.stderr


def test_engine_schema_of_a_broken_configuration_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from engine.cli.main import main

    broken = Path(__file__).parent / "fixtures" / "bad_configs" / "several_problems"
    monkeypatch.chdir(broken)
    monkeypatch.delenv("ENGINE_CONFIG", raising=False)
    assert main(["schema", "-o", str(tmp_path / "schema.json")]) == 1
    assert not (tmp_path / "schema.json").exists()
