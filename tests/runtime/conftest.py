"""Fixtures for the durable runtime: real SQLite files, a real PostgreSQL and Redis, the Courier stand-in.

PostgreSQL and Redis come from ENGINE_TEST_POSTGRES_URL / ENGINE_TEST_REDIS_URL (defaults: the
local services). A test that needs one is skipped, with the reason, when it does not answer;
with ENGINE_TEST_REQUIRE_SERVICES=1 (CI) it fails instead.

Isolation: every PostgreSQL test gets a schema of its own (`search_path` in the URL's options,
so alembic's version table lands there too) that is dropped afterwards; every Redis test
flushes its database first and last.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.support.courier_standin import CourierStandin

ROOT = Path(__file__).resolve().parents[2]
PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_DEFAULT = "redis://127.0.0.1:6379/15"
COURIER_TOKEN = "courier-test-token"

_service_state: dict[str, str | None] = {}


def _require() -> bool:
    return os.environ.get("ENGINE_TEST_REQUIRE_SERVICES", "") == "1"


def _unavailable(name: str, why: str) -> None:
    message = f"{name} is not answering ({why})"
    if _require():
        pytest.fail(message + " and ENGINE_TEST_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message + "; set ENGINE_TEST_REQUIRE_SERVICES=1 to fail instead")


def _check_once(name: str, probe: Callable[[], None]) -> None:
    if name not in _service_state:
        try:
            probe()
            _service_state[name] = None
        except Exception as exc:  # any failure to answer means "not available"
            _service_state[name] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    why = _service_state[name]
    if why is not None:
        _unavailable(name, why)


def pg_base_url() -> str:
    return os.environ.get("ENGINE_TEST_POSTGRES_URL") or PG_DEFAULT


def redis_base_url() -> str:
    return os.environ.get("ENGINE_TEST_REDIS_URL") or REDIS_DEFAULT


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema (dropped after the test)."""
    base = pg_base_url()

    def probe() -> None:
        import psycopg  # missing driver: as good as a missing server

        with psycopg.connect(_libpq(base), connect_timeout=3) as conn:
            conn.execute("SELECT 1")

    _check_once("PostgreSQL at " + base, probe)
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(_libpq(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options={quote('-csearch_path=' + schema)}"
    try:
        yield url
    finally:
        with psycopg.connect(_libpq(base), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The test Redis database, flushed before and after."""
    url = redis_base_url()

    def probe() -> None:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()

    _check_once("Redis at " + url, probe)
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'engine.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both stores: a SQLite file and a PostgreSQL schema."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture(scope="session")
def config() -> Any:
    """The shipped Estuary configuration, loaded once."""
    from engine.rules.loader import load

    return load(str(ROOT / "notifications.yaml"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working directory holding copies of notifications.yaml, rules/ and templates_map/."""
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(ROOT / "notifications.yaml", work / "notifications.yaml")
    for folder in ("rules", "templates_map"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


@pytest.fixture
def cli(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `engine ARGS` in the project directory with a clean ENGINE_*/COURIER_* environment."""
    from engine.cli.main import main

    monkeypatch.chdir(project)
    for name in list(os.environ):
        if name.startswith(("ENGINE_", "COURIER_")):
            monkeypatch.delenv(name)

    def run(*args: str, **env: str) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            capsys.readouterr()
            code = main(list(args))
            out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def standin() -> Iterator[CourierStandin]:
    with CourierStandin(token=COURIER_TOKEN) as s:
        yield s


@pytest.fixture
def make_runtime(config: Any) -> Iterator[Callable[..., Any]]:
    """Build a Runtime on a migrated store without re-reading the rules: make_runtime(url, backend=...)."""
    from engine.delivery import OutboxBackend
    from engine.runtime import Runtime
    from engine.settings import Settings
    from engine.store.codec import Codec
    from engine.store.db import connect, upgrade
    from engine.store.repository import Store

    engines = []

    def build(database_url: str, *, backend: Any = None, environ: dict[str, str] | None = None,
              **settings: Any) -> Runtime:
        s = Settings(config_path=str(ROOT / "notifications.yaml"), database_url=database_url, **settings)
        engine = connect(database_url)
        engines.append(engine)
        upgrade(engine)
        store = Store(engine, Codec(s.encryption_keys))
        return Runtime(s, config, store, backend or OutboxBackend(), dict(environ or {}))

    yield build
    for engine in engines:
        engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need PostgreSQL or Redis (`-m "not postgres and not redis"` runs the rest)."""
    here = Path(__file__).parent
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue
        callspec = getattr(item, "callspec", None)
        params = " ".join(str(v) for v in (callspec.params.values() if callspec else ()))
        if "pg_url" in item.fixturenames or "postgresql" in params:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in item.fixturenames or "redis" in params:
            item.add_marker(pytest.mark.redis)
