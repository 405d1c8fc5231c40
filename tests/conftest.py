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

    return load(str(ROOT / "notifications.yaml"), environ={})
