"""The client suite: the client imported from its source tree (CI installs only the engine), one
real `engine serve` for the suite, and Django configured once, on SQLite and (when it answers)
PostgreSQL, in a schema of its own.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.support.engine_process import ROOT, Engine, copy_config, engine_env

CLIENT_SRC = ROOT / "clients" / "python" / "src"
if str(CLIENT_SRC) not in sys.path:
    sys.path.insert(0, str(CLIENT_SRC))

TOKEN, SECRET = "client-suite-token", "client-suite-secret"
NO_COURIER = "http://127.0.0.1:9"  # the hooks run with --no-worker: nothing is delivered


def person(pid: str, role: str | None = None) -> dict[str, Any]:
    found = {"id": pid, "email": f"{pid}@example.com", "name": pid.title(), "timezone": "Europe/Berlin"}
    return {**found, "role": role} if role else found


def profile_completed(n: int | str, **extra: Any) -> dict[str, Any]:
    """The lightest event of the catalog: it schedules nothing, it only cancels."""
    return {"type": "practitioner.profile_completed", "data": {"practitioner": person(f"p{n}")}, **extra}


class Hook:
    """A real `engine serve` (no worker) in a scratch directory, and a look into its store."""

    def __init__(self, workdir: Path, **settings: str):
        workdir.mkdir(exist_ok=True)
        copy_config(workdir)
        self.workdir = workdir
        self.process = Engine(workdir, engine_env(workdir, NO_COURIER, ENGINE_INGEST_TOKEN=TOKEN,
                                                  ENGINE_INGEST_SECRET=SECRET, **settings))
        self.process.extra = ["--no-worker"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    def stored(self) -> list[str]:
        """The ids of the events in the engine's store, in the order they arrived."""
        with sqlite3.connect(self.workdir / "engine.db") as db:
            return [row[0] for row in db.execute("SELECT id FROM events ORDER BY received_at, id")]


@pytest.fixture(scope="session")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hook]:
    """One engine for the suite's tests that only post (each uses ids of its own)."""
    found = Hook(tmp_path_factory.mktemp("hook"))
    found.process.start()
    try:
        yield found
    finally:
        found.process.stop()


@pytest.fixture
def own_hook(tmp_path: Path) -> Iterator[Hook]:
    """An engine of this test's own, to kill and restart."""
    found = Hook(tmp_path / "hook")
    found.process.start()
    try:
        yield found
    finally:
        found.process.stop()


# Django: configured once per process, with a SQLite database and a PostgreSQL one.

PG_SCHEMA = "client_" + uuid.uuid4().hex[:12]


def _pg_settings() -> dict[str, Any]:
    from tests.runtime.conftest import pg_base_url

    url = urlsplit(pg_base_url().replace("postgresql+psycopg://", "postgresql://"))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname or "",
        "PORT": str(url.port or ""),
        "OPTIONS": {"options": f"-c search_path={PG_SCHEMA}"},
        "CONN_MAX_AGE": 0,
    }


@pytest.fixture(scope="session")
def django_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["engine_client.django"], USE_TZ=True,
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                   "NAME": str(tmp_path_factory.mktemp("django") / "app.db")},
                       "pg": _pg_settings()},
            LOGGING_CONFIG=None)
        django.setup()
    from django.core.management import call_command

    call_command("migrate", database="default", verbosity=0)
    yield
    _drop_pg_schema()


_pg_ready: list[bool] = []


def _drop_pg_schema() -> None:
    if _pg_ready:
        import psycopg

        from tests.runtime.conftest import _libpq, pg_base_url

        with psycopg.connect(_libpq(pg_base_url()), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')


@pytest.fixture(params=["default", "pg"], ids=["sqlite", "postgresql"])
def outbox_db(request: pytest.FixtureRequest, django_setup: None) -> Iterator[str]:
    """The alias of a migrated database holding an empty outbox: SQLite, then PostgreSQL."""
    from django.core.management import call_command
    from django.db import connections

    alias = request.param
    if alias == "pg" and not _pg_ready:
        _create_pg_schema()
        call_command("migrate", database="pg", verbosity=0)
        _pg_ready.append(True)
    from engine_client.django.models import OutboxEvent

    OutboxEvent.objects.using(alias).all().delete()
    yield alias
    connections.close_all()


def _create_pg_schema() -> None:
    from tests.runtime.conftest import _check_once, _libpq, pg_base_url

    base = pg_base_url()

    def probe() -> None:
        import psycopg

        with psycopg.connect(_libpq(base), connect_timeout=3) as conn:
            conn.execute("SELECT 1")

    _check_once("PostgreSQL at " + base, probe)
    import psycopg

    with psycopg.connect(_libpq(base), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{PG_SCHEMA}"')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the PostgreSQL runs (`-m "not postgres"` runs the rest)."""
    here = Path(__file__).parent
    for item in items:
        callspec = getattr(item, "callspec", None)
        if here in Path(str(item.fspath)).parents and callspec is not None and "postgresql" in callspec.id:
            item.add_marker(pytest.mark.postgres)
