"""schema.json is a valid Draft 2020-12 schema, the shipped rule files pass it with an
independent validator (check-jsonschema, as editors and CI would use it), and the committed
file is exactly what tools/make_schema.py generates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMA = Path("engine/rules/schema.json")


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
    import json

    schema = json.loads((repo_root / SCHEMA).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_make_schema_regenerates_the_committed_file(repo_root: Path, tmp_path: Path) -> None:
    (tmp_path / "engine" / "rules").mkdir(parents=True)
    done = subprocess.run([sys.executable, str(repo_root / "tools" / "make_schema.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    generated = (tmp_path / SCHEMA).read_bytes()
    committed = (repo_root / SCHEMA).read_bytes()
    assert generated == committed, "engine/rules/schema.json is stale: run `python tools/make_schema.py`"
