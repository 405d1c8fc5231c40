"""Shared fixtures: where the repository is, and the shipped configuration loaded once."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (where notifications.yaml is)."""
    return ROOT


@pytest.fixture(scope="session")
def shipped_config():
    """The configuration the repository ships (notifications.yaml + rules/ + templates_map/)."""
    from engine.rules.loader import load

    return load(str(ROOT / "notifications.yaml"))


@pytest.fixture
def live_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """live_runtime(config_dir): the engine as its CLI commands see it there (a SQLite store in
    tmp_path, the outbox, production templates), for tests that run commands against a live store."""
    from engine.runtime import Runtime
    from engine.settings import Settings

    def start(config_dir: Path):
        monkeypatch.chdir(config_dir)
        monkeypatch.setenv("ENGINE_DATABASE_URL", f"sqlite:///{tmp_path}/engine.db")
        for name in ("COURIER_AUTH_TOKEN", "COURIER_API_KEY", "ENGINE_ENV", "ENGINE_CONFIG"):
            monkeypatch.delenv(name, raising=False)
        return Runtime.create(Settings.from_environ())

    return start
